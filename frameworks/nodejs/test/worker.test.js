'use strict';
// The worker against a fake node on a unix socket: handshake, heartbeats, events,
// errors, terminate.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');
const { Worker, parseArgs, BadArguments, Disowned, NotConnected, ServiceError, Category } = require('..');
const { Server } = require('./fakes');

function args(endpoint) {
  return ['--app', 'echo', '--endpoint', endpoint, '--locator', '127.0.0.1:1', '--protocol', '1', '--uuid', 'u-1'];
}

test('parseArgs: the standard arguments', () => {
  const a = parseArgs(['--app', 'echo', '--endpoint', '/run/echo.1', '--locator', '127.0.0.1:10053,[::1]:10054',
    '--protocol', '1', '--uuid', 'abc']);
  assert.deepEqual([a.app, a.uuid, a.endpoint, a.protocol], ['echo', 'abc', '/run/echo.1', 1]);
  assert.deepEqual(a.locator, [['127.0.0.1', 10053], ['::1', 10054]]);
  assert.equal(parseArgs(['--uuid=abc', '--protocol=1', '--endpoint=/e']).app, 'app/standalone');
});

test('parseArgs: every problem is named', () => {
  assert.throws(() => parseArgs(['--protocol', '0', '--bogus', 'x', '--locator', 'nope']), (err) => {
    assert.ok(err instanceof BadArguments);
    for (const part of ['--uuid is required', '--endpoint is required', 'unsupported protocol version 0',
      'unknown argument --bogus', '--locator']) assert.ok(err.message.includes(part), part);
    return true;
  });
});

async function setup(t, options = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cocaine-node-'));
  const sock = path.join(dir, 'node.sock');
  const node = await new Server().listen(sock);
  t.after(async () => { await node.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  const w = new Worker(args(sock), { heartbeatInterval: 50, disownTimeout: 1000, ...options });
  w.on('echo', (req, resp) => pipeline(req, resp));
  w.on('ping', async (req, resp) => { resp.end(Buffer.concat([Buffer.from('pong:'), await req.readAll()])); });
  w.on('boom', async () => { throw new Error('kaboom'); });
  w.on('fail', (req, resp) => resp.error(7, 'user says no', Category.WORKER_USER));
  w.on('headers', (req, resp) => { resp.end(`${req.header('x-custom')} ${req.trace.traceId} ${req.trace.spanId}`); });
  w.on('client-error', async (req, resp) => {
    try {
      await req.readAll();
    } catch (err) {
      assert.ok(err instanceof ServiceError);
      resp.end(`${err.category}:${err.code}:${err.reason}`);
    }
  });
  return { node, w, sock };
}

async function handshake(node) {
  const f = await node.next();
  assert.deepEqual([f.channel, f.type, f.args], [1, 0, [Buffer.from('u-1')]]);
  const hb = await node.next();
  assert.deepEqual([hb.channel, hb.type, hb.args], [1, 0, []]);
  node.send(1, 0);
}

// replies collects a channel's frames up to its close or error, echoing heartbeats.
async function replies(node, channel) {
  const out = [];
  for (;;) {
    const f = await node.next();
    if (f.channel === 1) { node.send(1, 0); continue; }
    assert.equal(f.channel, channel);
    out.push([f.type, f.args]);
    if (f.type !== 0) return out;
  }
}

async function one(node) {
  for (;;) {
    const f = await node.next();
    if (f.channel === 1) { node.send(1, 0); continue; }
    return [f.type, f.args];
  }
}

const B = (s) => Buffer.from(s);

test('events and terminate', async (t) => {
  const { node: srv, w } = await setup(t);
  const serving = w.serve();
  const node = await srv.peer();
  await handshake(node);

  node.send(2, 0, ['echo']);
  for (const chunk of ['one', 'two']) {
    node.send(2, 0, [chunk]);
    assert.deepEqual(await one(node), [0, [B(chunk)]]);
  }
  node.send(2, 2);
  assert.deepEqual(await replies(node, 2), [[2, []]]);

  node.send(3, 0, ['ping']);
  node.send(3, 0, ['a']);
  node.send(3, 0, ['b']);
  node.send(3, 2);
  assert.deepEqual(await replies(node, 3), [[0, [B('pong:ab')]], [2, []]]);

  node.send(5, 0, ['nope']);
  assert.deepEqual(await replies(node, 5), [[1, [[42, 1], B("there is no handler for an event 'nope'")]]]);

  node.send(6, 0, ['boom']);
  node.send(6, 2);
  const [[typ, a]] = await replies(node, 6);
  assert.deepEqual([typ, a[0]], [1, [42, 100]]);
  assert.ok(a[1].toString().includes('kaboom'));

  node.send(7, 0, ['fail']);
  assert.deepEqual(await replies(node, 7), [[1, [[43, 7], B('user says no')]]]);

  const le = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
  node.send(8, 0, ['headers'], [['trace_id', le(9)], ['span_id', le(8)], ['parent_id', le(0)], ['x-custom', B('v1')]]);
  assert.deepEqual((await replies(node, 8))[0], [0, [B('v1 9 8')]]);

  node.send(9, 0, ['client-error']);
  node.send(9, 1, [[43, 5], 'client gave up']);
  assert.deepEqual(await replies(node, 9), [[0, [B('43:5:client gave up')]], [2, []]]);

  node.send(1, 1, [14, 'slave is sealing']);
  let f;
  do { f = await node.next(); } while (f.type !== 1);
  assert.deepEqual([f.channel, f.args], [1, [14, B('slave is sealing')]]);
  await serving;
  assert.equal(await node.next(), null); // the worker closed its connection
});

test('terminate waits for running handlers', async (t) => {
  const { node: srv, w } = await setup(t, { terminateGrace: 5000 });
  let release;
  const gate = new Promise((r) => { release = r; });
  w.on('slow', async (req, resp) => { await gate; resp.end('done'); });
  const serving = w.serve();
  const node = await srv.peer();
  await handshake(node);
  node.send(2, 0, ['slow']);
  node.send(2, 2);
  await new Promise((r) => setTimeout(r, 50));
  node.send(1, 1, [11, 'overseer is shutting down']);
  await new Promise((r) => setTimeout(r, 100));
  release();
  const got = [];
  for (let fr = await node.next(); fr !== null; fr = await node.next()) got.push([fr.channel, fr.type, fr.args]);
  await serving;
  assert.ok(got.some(([c, ty, a]) => c === 2 && ty === 0 && a[0].equals(B('done'))));
  assert.deepEqual(got.at(-1), [1, 1, [11, B('overseer is shutting down')]]);
});

test('disowned', async (t) => {
  const { node: srv, w } = await setup(t, { disownTimeout: 200 });
  const serving = w.serve();
  await srv.peer(); // never echoes
  await assert.rejects(serving, Disowned);
});

test('the node goes away', async (t) => {
  const { node: srv, w } = await setup(t);
  const serving = w.serve();
  const node = await srv.peer();
  await handshake(node);
  node.close();
  await assert.rejects(serving, NotConnected);
});

test('stop tells the node', async (t) => {
  const { node: srv, w } = await setup(t);
  const serving = w.serve();
  const node = await srv.peer();
  await handshake(node);
  w.stop();
  let f;
  do { f = await node.next(); } while (f.type !== 1);
  assert.deepEqual([f.channel, f.args], [1, [0, B('worker stopped')]]);
  await serving;
});

test('no socket', async () => {
  const w = new Worker(args('/nonexistent/node.sock'));
  await assert.rejects(w.serve(), (err) => err instanceof NotConnected && err.message.includes('/nonexistent/node.sock'));
});
