'use strict';
// The client against a fake locator and a fake service over TCP: resolve, methods by
// name from the graph, primitive and streaming replies, errors, headers, timeouts, a lost
// connection, and the logger.

const test = require('node:test');
const assert = require('node:assert/strict');
const {
  Service, Locator, Logger, Trace, ServiceError, NotConnected, StreamClosed, ClosedUpstream, InvalidMessage,
  TimeoutError, service,
} = require('..');
const { P, S, Server } = require('./fakes');

const APP_GRAPH = new Map([[0, ['enqueue', S, S]], [1, ['info', {}, P]], [2, ['control', S, {}]], [65533, ['ping', {}, P]]]);
const B = (s) => Buffer.from(s);
const intKeys = (o) => new Map(Object.entries(o).map(([k, v]) => [Number(k), v]));

async function setup(t) {
  const loc = await new Server().listen(0);
  const svc = await new Server().listen(0);
  const resolves = [];
  const serve = async () => {
    for (;;) {
      const peer = await loc.peer(null);
      if (peer === null) return;
      (async () => {
        for (let f = await peer.next(60000); f !== null; f = await peer.next(60000)) {
          resolves.push(f.args.map(String));
          const name = f.args[0].toString();
          const graph = new Map([...APP_GRAPH].map(([k, [n, d, u]]) => [k, [n, intKeys(d), intKeys(u)]]));
          if (name === 'app') peer.send(f.channel, 0, [[['127.0.0.1', svc.port]], 1, graph]);
          else if (name === 'logging') peer.send(f.channel, 0, [[['127.0.0.1', svc.port]], 2, new Map([[0, ['emit', {}, {}]], [1, ['verbosity', {}, intKeys(P)]]])]);
          else if (name === 'down') peer.send(f.channel, 0, [[['127.0.0.1', 1]], 1, graph]);
          else peer.send(f.channel, 1, [[10, 1], 'service is not available']);
        }
      })().catch(() => {});
    }
  };
  serve();
  t.after(async () => { await loc.close(); await svc.close(); });
  return { loc, svc, resolves, locator: `127.0.0.1:${loc.port}` };
}

test('a streaming call', async (t) => {
  const { svc: srv, locator } = await setup(t);
  const app = await service('app', { locator, timeout: 5000 });
  assert.deepEqual(app.methods(), ['enqueue', 'info', 'control']);
  const tr = new Trace(0x1122334455667788n, 77n, 5n);
  const ch = await app.request('enqueue', ['echo'], { headers: { 'x-custom': 'v1' }, trace: tr });
  const peer = await srv.peer();
  let f = await peer.next();
  assert.deepEqual([f.channel, f.type, f.args], [1, 0, [B('echo')]]);
  assert.deepEqual(Trace.fromHeaders(f.headers), tr);
  assert.ok(f.headers.some(([n, v]) => n === 'x-custom' && v.equals(B('v1'))));
  await ch.write('hello');
  f = await peer.next();
  assert.deepEqual([f.type, f.args], [0, [B('hello')]]);
  assert.deepEqual(Trace.fromHeaders(f.headers), tr); // the trace goes on every frame
  await ch.close();
  assert.equal((await peer.next()).type, 2);
  await assert.rejects(ch.write('late'), ClosedUpstream);
  peer.send(1, 0, ['hel']);
  peer.send(1, 0, ['lo']);
  peer.send(1, 2);
  assert.equal((await ch.readAll()).toString(), 'hello');
  await assert.rejects(ch.get(), StreamClosed);

  const ch2 = await app.enqueue('ping');
  assert.equal(ch2.id, 2);
  peer.send(2, 0, ['a']);
  peer.send(2, 1, [[42, 1], 'there is no handler']);
  assert.deepEqual(await ch2.get(), B('a'));
  await assert.rejects(ch2.get(), (err) => err instanceof ServiceError && err.is(42, 1) && err.service === 'app' &&
    err.message.includes('there is no handler'));
  await app.close();
});

test('a primitive call and for await', async (t) => {
  const { svc: srv, locator } = await setup(t);
  const app = new Service('app', { locator, timeout: 5000 });
  const ch = await app.call('info');
  const peer = await srv.peer();
  const f = await peer.next();
  assert.deepEqual([f.type, f.args], [1, []]);
  peer.send(f.channel, 0, [{ state: 'running' }]);
  assert.deepEqual(await ch.get(), { state: B('running') });
  await assert.rejects(ch.get(), StreamClosed);
  await assert.rejects(ch.send('write', 'x'), ClosedUpstream);

  const s = await app.enqueue('x');
  await peer.next();
  for (const c of ['1', '2', '3']) peer.send(s.id, 0, [c]);
  peer.send(s.id, 2);
  const got = [];
  for await (const c of s) got.push(c.toString());
  assert.deepEqual(got, ['1', '2', '3']);
  await assert.rejects(s.send('nope'), InvalidMessage);
  await app.close();
});

test('unknown methods and services', async (t) => {
  const { locator } = await setup(t);
  const app = new Service('app', { locator, timeout: 5000 });
  await assert.rejects(app.call('frobnicate'), (err) => err instanceof TypeError && err.message.includes('enqueue, info, control'));
  await app.close();
  await assert.rejects(new Service('nope', { locator, timeout: 5000 }).connect(), (err) => err instanceof ServiceError && err.is(10, 1));
  await assert.rejects(new Service('down', { locator, timeout: 5000 }).connect(), (err) => err instanceof NotConnected && err.message.includes('127.0.0.1:1'));
  await assert.rejects(new Service('app', { locator: '127.0.0.1:1', timeout: 5000 }).connect(), NotConnected);
});

test('resolve with a seed', async (t) => {
  const { locator, svc, resolves } = await setup(t);
  const loc = new Locator({ locator, timeout: 5000 });
  const info = await loc.resolve('app', 's');
  assert.equal(info.version, 1);
  assert.deepEqual(info.endpoints, [['127.0.0.1', svc.port]]);
  await loc.resolve('app');
  await loc.close();
  assert.deepEqual(resolves, [['app', 's'], ['app']]); // no nil for an absent seed
});

test('timeouts', async (t) => {
  const { svc: srv, locator } = await setup(t);
  const app = new Service('app', { locator, timeout: 200 });
  const ch = await app.call('enqueue', 'x');
  await srv.peer();
  await assert.rejects(ch.get(), (err) => err instanceof TimeoutError && err.message.includes('app.enqueue'));
  await assert.rejects(ch.get({ timeout: 50 }), TimeoutError);
  await app.close();
  const silent = await new Server().listen(0);
  try {
    await assert.rejects(new Service('app', { locator: `127.0.0.1:${silent.port}`, timeout: 200 }).connect(), TimeoutError);
  } finally {
    await silent.close();
  }
});

test('a lost connection, and the next call reconnects', async (t) => {
  const { svc: srv, locator } = await setup(t);
  const app = new Service('app', { locator, timeout: 5000 });
  const ch = await app.call('enqueue', 'x');
  let peer = await srv.peer();
  await peer.next();
  peer.close();
  await assert.rejects(ch.get(), NotConnected);
  await app.enqueue('y');
  peer = await srv.peer();
  const f = await peer.next();
  assert.deepEqual([f.channel, f.args], [1, [B('y')]]);
  await app.close();
});

test('a protocol violation closes the connection', async (t) => {
  const { svc: srv, locator } = await setup(t);
  const app = new Service('app', { locator, timeout: 5000 });
  const ch = await app.call('enqueue', 'x');
  const peer = await srv.peer();
  await peer.next();
  peer.socket.write(Buffer.from([0x05]));
  await assert.rejects(ch.get(), (err) => err instanceof NotConnected && err.message.includes('frame format error'));
  await app.close();
});

test('the logger', async (t) => {
  const { svc: srv, locator } = await setup(t);
  const log = new Logger('echo', 'u-1', locator, { timeout: 5000 });
  log.info('hello', { n: 1, obj: [1] });
  const peer = await srv.peer();
  let f = await peer.next();
  assert.deepEqual([f.type, f.args], [0, [1, B('app/echo'), B('hello'), [[B('n'), 1], [B('obj'), B('[1]')], [B('uuid'), B('u-1')]]]]);
  log.error('second');
  f = await peer.next();
  assert.deepEqual(f.args.slice(0, 3), [3, B('app/echo'), B('second')]);
  const v = log.verbosity();
  f = await peer.next();
  peer.send(f.channel, 0, [1]);
  assert.equal(await v, 1);
  await log.close();
});
