'use strict';
// The connection under backpressure: sends that the socket cannot take wait for it to
// drain, without a listener or a handler per blocked send left behind, and reject with
// NotConnected when the connection ends under them.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { NotConnected } = require('..');
const { Connection } = require('../lib/connection');

// A server that reads nothing until resume() is called.
async function stalledServer(t) {
  const sockets = [];
  const server = net.createServer((s) => { s.pause(); sockets.push(s); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => { for (const s of sockets) s.destroy(); server.close(); });
  const accepted = async () => {
    while (sockets.length === 0) await new Promise((r) => setTimeout(r, 5));
    return sockets[0];
  };
  return { port: server.address().port, accepted };
}

const big = Buffer.alloc(256 << 10, 0x61);

async function blockedSends(conn, n) {
  const sends = [];
  for (let i = 0; i < n; i++) sends.push(conn.send(conn.open(null), 0, [big]));
  // Let the socket fill: some sends must be waiting for a drain.
  for (let i = 0; i < 100 && conn._blocked.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  return sends;
}

test('blocked sends resolve on drain and leave nothing behind', async (t) => {
  const srv = await stalledServer(t);
  const conn = await Connection.connectTCP([['127.0.0.1', srv.port]]);
  t.after(() => conn.close());
  const peer = await srv.accepted();
  for (let round = 0; round < 3; round++) {
    const sends = await blockedSends(conn, 64);
    assert.ok(conn._blocked.length > 0, 'no send was blocked: the test did not fill the socket');
    assert.equal(conn.socket.listenerCount('drain'), 1);
    peer.resume();
    await Promise.all(sends);
    peer.pause();
    assert.equal(conn._blocked.length, 0);
  }
  assert.equal(conn.socket.listenerCount('drain'), 1);
});

test('blocked sends reject with NotConnected when the connection closes', async (t) => {
  const srv = await stalledServer(t);
  const conn = await Connection.connectTCP([['127.0.0.1', srv.port]], { name: 'stalled' });
  await srv.accepted();
  const sends = await blockedSends(conn, 64);
  const blocked = conn._blocked.length;
  assert.ok(blocked > 0, 'no send was blocked: the test did not fill the socket');
  conn.close();
  const results = await Promise.allSettled(sends);
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.ok(rejected.length >= blocked);
  for (const r of rejected) {
    assert.ok(r.reason instanceof NotConnected, String(r.reason));
    assert.match(r.reason.message, /stalled: closed/);
  }
  assert.equal(conn._blocked.length, 0);
});
