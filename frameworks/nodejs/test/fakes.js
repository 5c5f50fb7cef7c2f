'use strict';
// In-process peers for the tests: a fake node for workers, a fake locator and service
// for clients, speaking the wire frame by frame with the framework's own codec.

const net = require('node:net');
const wire = require('../lib/wire');

const P = { 0: ['value', {}], 1: ['error', {}] };
const S = { 0: ['write', null], 1: ['error', {}], 2: ['close', {}] };

class Peer {
  constructor(socket) {
    this.socket = socket;
    this.decoder = new wire.FrameDecoder();
    this.frames = [];
    this.waiters = [];
    this.ended = false;
    socket.on('data', (d) => {
      this.decoder.feed(d);
      for (const f of this.decoder) this._put(f);
    });
    socket.on('close', () => { this.ended = true; this._put(null); });
    socket.on('error', () => {});
  }

  _put(f) {
    const w = this.waiters.shift();
    if (w) w(f); else this.frames.push(f);
  }

  next(timeout = 5000) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no frame in time')), timeout);
      this.waiters.push((f) => { clearTimeout(t); resolve(f); });
    });
  }

  send(channel, type, args = [], headers = []) {
    this.socket.write(wire.encodeFrame(channel, type, args, headers));
  }

  close() { this.socket.destroy(); }
}

class Server {
  constructor() {
    this.peers = [];
    this.all = [];
    this.waiters = [];
    this.server = net.createServer((s) => {
      const p = new Peer(s);
      this.all.push(p);
      const w = this.waiters.shift();
      if (w) w(p); else this.peers.push(p);
    });
  }

  listen(where) {
    return new Promise((resolve) => this.server.listen(where, () => resolve(this)));
  }

  get port() { return this.server.address().port; }

  // peer resolves with the next connection; null once the server is closed.
  peer(timeout = 5000) {
    if (this.peers.length) return Promise.resolve(this.peers.shift());
    return new Promise((resolve, reject) => {
      const t = timeout === null ? null : setTimeout(() => reject(new Error('no connection in time')), timeout);
      this.waiters.push((p) => { clearTimeout(t); resolve(p); });
    });
  }

  close() {
    for (const w of this.waiters.splice(0)) w(null);
    for (const p of this.all) p.close();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

module.exports = { P, S, Peer, Server };
