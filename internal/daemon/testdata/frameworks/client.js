#!/usr/bin/env node
'use strict';
// A Node.js framework client for the cross-language tests (frameworks_test.go).
//
//   client.js LOCATOR exchange APP [fail]   ping, streaming both ways, errors, trace
//   client.js LOCATOR kill APP              mid-request, waits for a line on stdin (the
//                                           test kills the worker then), expects an error
//
// It prints what it checked and exits 1 with the reason on the first mismatch.

const path = require('node:path');
const { once } = require('node:events');

const cocaine = require(path.join(__dirname, '..', '..', '..', '..', 'frameworks', 'nodejs'));

const { service, Trace, ServiceError, StreamClosed, CocaineError } = cocaine;

function check(cond, what) {
  if (!cond) {
    process.stderr.write(`client.js: ${what}\n`);
    process.exit(1);
  }
}

async function exchange(locator, app, withFail) {
  // Primitive calls on services of the daemon, from the graphs the locator sends.
  const node = await service('node', { locator, timeout: 20000 });
  const apps = await (await node.list()).get();
  check(apps.some((a) => a.toString() === app), `node.list: ${apps}`);
  try {
    await (await node.info('no-such-app')).get();
    check(false, 'node.info of an unknown app succeeded');
  } catch (err) {
    check(err instanceof ServiceError && err.category === 12, `node.info of an unknown app: ${err}`);
  }
  await node.close();
  const svc = await service(app, { locator, timeout: 20000 });
  check(svc.methods().slice(0, 3).join() === 'enqueue,info,control', `methods ${svc.methods()}`);
  const info = await (await svc.info()).get();
  check(info && typeof info === 'object' && 'pool' in info, `${app}.info: ${JSON.stringify(info)}`);
  const tr = new Trace(0x0102030405060708n, 0x1112n, 0n);
  let ch = await svc.request('enqueue', ['ping'], { trace: tr, headers: { 'x-test': '1' } });
  await ch.write('hello, ');
  await ch.write(Buffer.from('cocaine'));
  await ch.close();
  let m = await ch.recv();
  check(m.name === 'write' && m.payload.toString() === 'hello, cocaine', `ping: ${m.name} ${m.payload}`);
  const back = Trace.fromHeaders(m.headers);
  check(back && back.traceId === tr.traceId && back.spanId === tr.spanId, `ping reply headers ${m.headers}`);
  m = await ch.recv();
  check(m.name === 'close', `after ping: ${m.name}`);
  console.log(`${app}: ping with trace ok`);

  ch = await svc.enqueue('echo');
  for (const chunk of ['one', 'two', 'three']) {
    await ch.write(chunk);
    const got = await ch.get();
    check(got.toString() === chunk, `echo: sent ${chunk}, got ${got}`);
  }
  await ch.close();
  try {
    await ch.get();
    check(false, 'echo: no close');
  } catch (err) {
    check(err instanceof StreamClosed, `echo: ${err}`);
  }
  ch = await svc.enqueue('echo');
  const sent = Array.from({ length: 40 }, (_, i) => Buffer.alloc(16384, i));
  const writer = (async () => {
    for (const c of sent) await ch.write(c);
    await ch.close();
  })();
  const got = await ch.readAll();
  await writer;
  check(got.equals(Buffer.concat(sent)), `echo stream: ${got.length} bytes back`);
  console.log(`${app}: streaming both ways ok`);

  ch = await svc.enqueue('nope');
  await ch.close();
  try {
    await ch.get();
    check(false, 'nope: no error');
  } catch (err) {
    check(err instanceof ServiceError && err.is(42, 1), `nope: ${err}`);
  }
  if (withFail) {
    ch = await svc.enqueue('fail');
    await ch.write('bad input');
    await ch.close();
    try {
      await ch.get();
      check(false, 'fail: no error');
    } catch (err) {
      check(err instanceof ServiceError && err.is(43, 1) && err.reason === 'failed on request: bad input', `fail: ${err}`);
    }
  }
  console.log(`${app}: errors ok`);
  await svc.close();
}

async function kill(locator, app) {
  const svc = await service(app, { locator, timeout: 20000 });
  const ch = await svc.enqueue('echo');
  await ch.write('x');
  check((await ch.get()).toString() === 'x', 'kill: no echo');
  console.log('MIDREQUEST');
  process.stdin.resume();
  await once(process.stdin, 'data');
  process.stdin.pause();
  try {
    const got = await ch.get();
    check(false, `kill: got ${got} after the worker was killed`);
  } catch (err) {
    check(err instanceof CocaineError, `kill: ${err}`);
    console.log(`${app}: killed mid-request: ${err.category} ${err.code} ${err.reason}`);
  }
  await svc.close();
}

const [locator, scenario, app, ...rest] = process.argv.slice(2);
const run = scenario === 'exchange' ? exchange(locator, app, rest.includes('fail'))
  : scenario === 'kill' ? kill(locator, app) : Promise.reject(new Error(`unknown scenario ${scenario}`));
run.catch((err) => {
  process.stderr.write(`client.js: ${err.stack || err}\n`);
  process.exit(1);
});
