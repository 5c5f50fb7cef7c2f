'use strict';
// One multiplexed connection (protocol.md §2): many channels over one socket.
//
// The side that opens a channel picks its id, and ids only go up on a connection: ours
// are maxSeen + 1, in the same id space as the peer's. A frame on a channel nobody
// listens to is dropped (a late reply), unless it opens a new channel and the
// connection accepts peer channels (the worker's, on which the node opens invokes). A
// frame that breaks the wire closes the connection; every open channel gets the error.

const net = require('node:net');
const { CocaineError, NotConnected, ProtocolError } = require('./errors');
const { FrameDecoder, encodeFrame } = require('./wire');

class Connection {
  constructor(socket, { name = '', accept = null } = {}) {
    this.name = name;
    this.socket = socket;
    this.accept = accept;
    this.channels = new Map();
    this.maxId = 0;
    this.error = null;
    this.decoder = new FrameDecoder();
    this.closed = new Promise((resolve) => { this._resolveClosed = resolve; });
    // Sends waiting for the socket to take more: one drain listener for all of them,
    // emptied on every drain and on shutdown, so nothing piles up on a long connection.
    this._blocked = [];
    socket.on('drain', () => this._unblock());
    socket.on('data', (data) => this._data(data));
    socket.on('error', (err) => this._shutdown(new NotConnected(`${this._what()}: ${err.message}`)));
    socket.on('close', () => this._shutdown(new NotConnected(`${this._what()}: closed by the peer`)));
  }

  // connectTCP connects to the first endpoint that answers, in order.
  static async connectTCP(endpoints, { name = '', timeout = 5000 } = {}) {
    const errors = [];
    for (const [host, port] of endpoints) {
      try {
        const socket = await dial({ host, port, noDelay: true, keepAlive: true }, timeout);
        return new Connection(socket, { name });
      } catch (err) {
        errors.push(`${host.includes(':') ? `[${host}]` : host}:${port}: ${err.message}`);
      }
    }
    throw new NotConnected(`cannot connect${name ? ` to ${name}` : ''}: ${errors.join('; ') || 'no endpoints'}`);
  }

  static async connectUnix(path, { name = '', accept = null, timeout = 5000 } = {}) {
    try {
      return new Connection(await dial({ path }, timeout), { name, accept });
    } catch (err) {
      throw new NotConnected(`cannot connect to ${path}: ${err.message}`);
    }
  }

  // open allocates the next channel id; receiver (null: nothing comes back) gets its frames.
  open(receiver) {
    this._check();
    this.maxId += 1;
    if (receiver) this.channels.set(this.maxId, receiver);
    return this.maxId;
  }

  forget(channel) { this.channels.delete(channel); }

  // send writes one frame; it resolves once the socket can take more (backpressure). It
  // rejects, never throws: with NotConnected once the connection ended, TypeError for args
  // that cannot be encoded.
  send(channel, type, args = [], headers = []) {
    let frame;
    try {
      this._check();
      frame = encodeFrame(channel, type, args, headers);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.socket.write(frame)) return Promise.resolve();
    return new Promise((resolve, reject) => this._blocked.push({ resolve, reject }));
  }

  _unblock() {
    const blocked = this._blocked;
    this._blocked = [];
    for (const b of blocked) {
      if (this.error) b.reject(new NotConnected(`${this._what()}: ${this.error.reason || this.error.message}`));
      else b.resolve();
    }
  }

  close() {
    this._shutdown(new NotConnected(`${this._what()}: closed`));
    return this.closed;
  }

  _check() {
    if (this.error) throw new NotConnected(this.error instanceof CocaineError ? this.error.reason : this.error.message);
  }

  _what() { return this.name || 'connection'; }

  _data(data) {
    if (this.error) return;
    try {
      this.decoder.feed(data);
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) this._dispatch(f);
    } catch (err) {
      this._shutdown(err instanceof ProtocolError ? err : new NotConnected(`${this._what()}: ${err.message}`));
    }
  }

  _dispatch(f) {
    const r = this.channels.get(f.channel);
    if (r === undefined) {
      if (f.channel <= this.maxId || !this.accept) return; // a late reply, or not ours to open
      this.maxId = f.channel;
      const nr = this.accept(f);
      if (nr) this.channels.set(f.channel, nr);
      return;
    }
    if (r.push(f)) this.channels.delete(f.channel);
  }

  _shutdown(err) {
    if (this.error) return;
    this.error = err;
    this.socket.destroy();
    const channels = this.channels;
    this.channels = new Map();
    for (const r of channels.values()) r.discard(err);
    this._unblock();
    this._resolveClosed();
  }
}

function dial(options, timeout) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(options);
    const timer = timeout == null ? null : setTimeout(() => {
      socket.destroy();
      reject(new Error(`timed out after ${timeout} ms`));
    }, timeout);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

// parseEndpoint accepts [host, port], "host:port" or "[v6]:port".
function parseEndpoint(s) {
  if (Array.isArray(s)) return [String(s[0]), Number(s[1])];
  const i = String(s).lastIndexOf(':');
  const host = i > 0 ? s.slice(0, i) : '';
  const port = i > 0 ? s.slice(i + 1) : '';
  if (!host || !/^[0-9]+$/.test(port)) throw new TypeError(`cocaine: bad endpoint ${JSON.stringify(s)}: want host:port`);
  return [host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, Number(port)];
}

module.exports = { Connection, parseEndpoint };
