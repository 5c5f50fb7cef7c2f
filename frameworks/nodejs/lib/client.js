'use strict';
// The client: resolve a service through the locator and call its methods by name, from
// the graph the locator sends (no generated code).
//
//   const echo = await service('echo');            // the locator on 127.0.0.1:10053
//   const ch = await echo.enqueue('ping');          // a method of the resolved graph
//   await ch.write('hello');
//   await ch.close();
//   console.log((await ch.readAll()).toString());   // 'hello'
//
// Every wait is bounded: the Service's timeout (ms) bounds resolving, connecting and each
// reply unless a call says otherwise; null waits forever. A timeout rejects with
// TimeoutError; an error reply with ServiceError (category, code); a lost connection with
// NotConnected in every open channel, and the next call resolves and connects again.

const { Connection, parseEndpoint } = require('./connection');
const {
  ClosedUpstream, InvalidMessage, NotConnected, ServiceError, StreamClosed, TimeoutError, decodeError,
} = require('./errors');
const { Graph, LOCATOR_GRAPH, State } = require('./protocol');
const { normalizeHeaders } = require('./wire');

const DEFAULT_LOCATOR = ['127.0.0.1', 10053];
const DEFAULT_TIMEOUT = 30000;

// Message is one message received on a channel.
class Message {
  constructor(name, args, headers) {
    this.name = name;
    this.args = args;
    this.headers = headers;
  }

  // payload is the args, unwrapped when there is exactly one (as the original frameworks).
  get payload() { return this.args.length === 1 ? this.args[0] : this.args; }
}

// Channel is one call: send on it by message name, receive the replies.
// `for await (const payload of channel)` reads until the reply stream closes.
class Channel {
  constructor(service, conn, method, headers, timeout) {
    this.service = service;
    this.method = method;
    this.id = 0;
    this._conn = conn;
    this._headers = headers;
    this._timeout = timeout;
    this._tx = method.dispatch !== null ? method.dispatch : rootState(service.graph);
    this._rx = method.upstream;
    this._queue = [];
    this._waiter = null;
    this._ended = this._rx.terminal;
  }

  // send sends the message named name ("write", "close", "error", ...) of the current state.
  async send(name, ...args) {
    const state = this._tx;
    if (state.terminal) throw new ClosedUpstream(`${this._what()}: nothing more may be sent (${name})`);
    const type = state.byName.get(name);
    if (type === undefined) {
      throw new InvalidMessage(`${this._what()}: no message ${JSON.stringify(name)} now (allowed: ${state.names().join(', ')})`);
    }
    const next = state.byId.get(type)[1];
    if (next !== null) this._tx = next;
    await this._conn.send(this.id, type, args, this._headers);
  }

  write(...args) { return this.send('write', ...args); }

  close() { return this.send('close'); }

  error(category, code, message) { return this.send('error', [category, code], message); }

  get writable() { return !this._tx.terminal; }

  // recv resolves with the next Message, whatever its name; an error message rejects with
  // ServiceError, the end of the replies with StreamClosed.
  async recv({ timeout } = {}) {
    const item = await this._next(timeout === undefined ? this._timeout : timeout);
    if (item instanceof Error) throw item;
    return item;
  }

  // get resolves with the payload of the next value or write; a stream's close and any get
  // after the last reply reject with StreamClosed.
  async get(options) {
    const m = await this.recv(options);
    if (m.name === 'close') throw new StreamClosed(`${this._what()}: the reply stream is closed`);
    return m.payload;
  }

  // readAll reads a stream of single-raw writes until close and joins them.
  async readAll(options) {
    const out = [];
    for await (const chunk of this._chunks(options)) {
      if (!Buffer.isBuffer(chunk)) throw new TypeError(`${this._what()}: a chunk is not a raw`);
      out.push(chunk);
    }
    return Buffer.concat(out);
  }

  [Symbol.asyncIterator]() { return this._chunks(); }

  async* _chunks(options) {
    for (;;) {
      try {
        yield await this.get(options);
      } catch (err) {
        if (err instanceof StreamClosed) return;
        throw err;
      }
    }
  }

  _next(timeout) {
    if (this._queue.length) return Promise.resolve(this._queue.shift());
    if (this._ended) return Promise.resolve(new StreamClosed(`${this._what()}: no more replies`));
    return new Promise((resolve) => {
      const timer = timeout == null ? null : setTimeout(() => {
        this._waiter = null;
        resolve(new TimeoutError(`${this._what()}: no reply within ${timeout} ms`));
      }, timeout);
      this._waiter = () => {
        clearTimeout(timer);
        this._waiter = null;
        resolve(this._queue.shift());
      };
    });
  }

  // push takes one frame of the channel (the connection calls it); true once it ended.
  push(f) {
    const tr = this._rx.byId.get(f.type);
    if (tr === undefined) {
      this._put(new InvalidMessage(`${this._what()}: the service sent message ${f.type}, which its graph does not allow now (${this._rx.names().join(', ')})`));
      this._ended = true;
      return true;
    }
    const [name, next] = tr;
    this._put(name === 'error' ? decodeError(f.args, this.service.name) : new Message(name, f.args, f.headers));
    if (next !== null) this._rx = next;
    if (this._rx.terminal) this._ended = true;
    return this._ended;
  }

  discard(err) {
    this._put(new NotConnected(`${this._what()}: the connection ended: ${err.reason || err.message}`, { cause: err }));
    this._ended = true;
  }

  _put(item) {
    this._queue.push(item);
    if (this._waiter) this._waiter();
  }

  _what() { return `${this.service.name}.${this.method.name} (channel ${this.id})`; }
}

function rootState(graph) {
  return new State(new Map([...graph.byId.values()].map((m) => [m.id, [m.name, m.dispatch]])));
}

function parseLocator(locator) {
  if (locator == null) return [DEFAULT_LOCATOR];
  if (typeof locator === 'string') locator = locator.split(',').filter((s) => s.trim());
  if (Array.isArray(locator) && locator.length === 2 && typeof locator[1] === 'number') locator = [locator];
  return locator.map(parseEndpoint);
}

// Service is a connection to one service, resolved through the locator on first use.
// Options: locator ("host:port[,...]", or [[host, port], ...]; 127.0.0.1:10053 by default),
// timeout (ms, 30000; null: none), version (refuse another protocol version), seed (the
// routing-group seed). After connect() every method of the graph is also a method of the
// object (unless the name is taken): svc.enqueue('ping') is svc.call('enqueue', 'ping').
class Service {
  constructor(name, { locator, timeout = DEFAULT_TIMEOUT, version = null, seed = null } = {}) {
    this.name = name;
    this.timeout = timeout;
    this.version = version;
    this.seed = seed;
    this.locatorEndpoints = parseLocator(locator);
    this.resolved = null;
    this._conn = null;
    this._connecting = null;
  }

  get graph() {
    if (!this.resolved) throw new NotConnected(`${this.name}: not resolved yet`);
    return this.resolved.graph;
  }

  get connected() { return this._conn !== null && !this._conn.error; }

  // connect resolves the service and connects (again, if the connection was lost).
  connect() {
    if (this.connected) return Promise.resolve(this);
    if (!this._connecting) {
      this._connecting = this._connect().finally(() => { this._connecting = null; });
    }
    return this._connecting;
  }

  async _connect() {
    const info = await this._resolve();
    if (this.version !== null && info.version !== this.version) {
      throw new ServiceError(10, 3, `protocol version ${info.version}, want ${this.version}`, this.name);
    }
    this._conn = await Connection.connectTCP(info.endpoints, { name: this.name, timeout: this.timeout });
    this.resolved = info;
    this._defineMethods();
    return this;
  }

  async _resolve() {
    const loc = new Locator({ locator: this.locatorEndpoints, timeout: this.timeout });
    try {
      return await loc.resolve(this.name, this.seed);
    } finally {
      loc.close();
    }
  }

  _defineMethods() {
    for (const name of this.graph.names()) {
      if (!(name in this)) {
        Object.defineProperty(this, name, { value: (...args) => this.call(name, ...args), configurable: true });
      }
    }
  }

  // methods lists the service's method names (control methods left out).
  methods() { return this.graph.names(); }

  // call opens a channel with the method named method.
  call(method, ...args) { return this.request(method, args); }

  // request is call with options: headers (an object or [name, value] pairs) and trace go
  // with every frame of the channel; timeout (ms) bounds each reply on it.
  async request(method, args = [], { headers, trace, timeout } = {}) {
    await this.connect();
    const m = this.graph.method(method);
    if (!m) throw new TypeError(`${this.name} has no method ${JSON.stringify(method)} (it has ${this.methods().join(', ')})`);
    const hs = [...(trace ? trace.headers() : []), ...normalizeHeaders(headers)];
    const ch = new Channel(this, this._conn, m, hs, timeout === undefined ? this.timeout : timeout);
    ch.id = this._conn.open(m.upstream.terminal ? null : ch);
    try {
      await this._conn.send(ch.id, m.id, args, hs);
    } catch (err) {
      this._conn.forget(ch.id);
      throw err;
    }
    return ch;
  }

  close() {
    const c = this._conn;
    this._conn = null;
    return c ? c.close() : Promise.resolve();
  }
}

// Locator is the locator itself, with the graph every client knows.
class Locator extends Service {
  constructor({ locator, timeout = DEFAULT_TIMEOUT } = {}) {
    super('locator', { locator, timeout });
  }

  async _connect() {
    this._conn = await Connection.connectTCP(this.locatorEndpoints, { name: 'locator', timeout: this.timeout });
    this.resolved = { endpoints: this.locatorEndpoints, version: 3, graph: LOCATOR_GRAPH };
    return this;
  }

  // resolve says where name lives and gives its graph; an unknown service rejects with
  // ServiceError (10, 1) "service is not available".
  async resolve(name, seed = null) {
    const ch = await this.request('resolve', seed ? [name, seed] : [name]); // an absent optional is omitted, never nil
    const [endpoints, version, graph] = (await ch.recv()).args;
    return {
      endpoints: endpoints.map(([host, port]) => [Buffer.isBuffer(host) ? host.toString() : String(host), Number(port)]),
      version: Number(version),
      graph: Graph.decode(graph),
    };
  }
}

// service resolves and connects to name; the Service has the graph's methods.
async function service(name, options) {
  return new Service(name, options).connect();
}

module.exports = { Channel, Locator, Message, Service, service, DEFAULT_TIMEOUT };
