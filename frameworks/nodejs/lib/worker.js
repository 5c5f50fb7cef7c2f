'use strict';
// The worker: a program the node runs, serving the events of one app (plugins.md §2.9).
//
//   const { Worker } = require('cocaine-framework');
//   const worker = new Worker();                 // parses --app --uuid --endpoint --locator --protocol
//   worker.on('echo', (request, response) => pipeline(request, response));   // streams both ways
//   worker.on('ping', async (request, response) => {
//     response.end(await request.readAll());
//   });
//   worker.run().then((code) => { process.exitCode = code; });   // until the node says terminate
//
// A Request is a Readable of the client's chunks (Buffers); a Response is a Writable of
// the reply's chunks: end() closes it, error(code, message) ends it with an error. When
// the handler's promise settles the response is ended; a rejection becomes an error
// (category 42, code 100); an event without a handler gets (42, 1). The worker heartbeats
// every heartbeatInterval ms and gives up if the node does not echo within disownTimeout.
// On the node's terminate it takes no new events, gives running handlers terminateGrace
// ms, echoes the terminate and resolves run() with 0; SIGTERM/SIGINT do the same after
// telling the node.

const { Readable, Writable } = require('node:stream');
const { Connection, parseEndpoint } = require('./connection');
const { Category, ClosedUpstream, CocaineError, NotConnected, StreamClosed, decodeError } = require('./errors');
const { Logger } = require('./logger');
const { Trace } = require('./wire');

const CODE_EVENT_NOT_FOUND = 1;
const CODE_UNCAUGHT = 100;

class BadArguments extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadArguments';
  }
}

class Disowned extends CocaineError {
  constructor(message) {
    super(Category.SLAVE, 8, message);
    this.name = 'Disowned';
  }
}

// parseArgs reads --app A --uuid U --endpoint E --locator host:port,... --protocol 1 (also
// --name=value), in any order; every problem is named in one BadArguments.
function parseArgs(argv) {
  const known = new Set(['app', 'uuid', 'endpoint', 'locator', 'protocol']);
  const seen = {};
  const problems = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('-')) {
      problems.push(`unexpected argument ${JSON.stringify(arg)}`);
      continue;
    }
    let key = arg.replace(/^-+/, '');
    let value;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else if (i + 1 < argv.length) {
      value = argv[++i];
    } else {
      problems.push(`--${key} needs a value`);
      break;
    }
    if (!known.has(key)) problems.push(`unknown argument --${key}`);
    else seen[key] = value;
  }
  const a = { app: seen.app || 'app/standalone', uuid: seen.uuid || '', endpoint: seen.endpoint || '',
    locator: [['127.0.0.1', 10053]], protocol: Number(seen.protocol || 0) };
  if (!a.uuid) problems.push('--uuid is required');
  if (!a.endpoint) problems.push('--endpoint is required');
  if (a.protocol !== 1) problems.push(`unsupported protocol version ${seen.protocol || 0} (the node passes --protocol 1)`);
  if (seen.locator !== undefined) {
    try {
      a.locator = seen.locator.split(',').filter((s) => s.trim()).map((s) => parseEndpoint(s.trim()));
    } catch (err) {
      problems.push(`--locator: ${err.message}`);
    }
  }
  if (problems.length) throw new BadArguments(`cocaine: bad worker arguments: ${problems.join('; ')}`);
  return a;
}

// Request is the client's side of one event: a Readable of its chunks. A client's error,
// or the node aborting the request, destroys it with a ServiceError / NotConnected.
class Request extends Readable {
  constructor(event, headers, channel) {
    super();
    this.event = event;
    this.headers = headers;
    this.trace = Trace.fromHeaders(headers);
    this.channel = channel;
  }

  _read() {}

  // header is the first header named name, or null.
  header(name) {
    const h = this.headers.find(([n]) => n === name);
    return h ? h[1] : null;
  }

  // readAll reads every chunk until the client closes and joins them.
  async readAll() {
    const out = [];
    for await (const chunk of this) out.push(chunk);
    return Buffer.concat(out);
  }

  // receive takes one frame of the channel (the connection calls it); true once it ended.
  receive(f) {
    if (f.type === 0) {
      if (!Buffer.isBuffer(f.args[0])) {
        this.destroy(new CocaineError(Category.DISPATCH, 2, `event ${this.event}: a chunk must be one raw`));
        return true;
      }
      this.push(f.args[0]);
      return false;
    }
    if (f.type === 1) this.destroy(decodeError(f.args, 'client'));
    else if (f.type === 2) this.push(null);
    else this.destroy(new CocaineError(Category.DISPATCH, 5, `event ${this.event}: unexpected message ${f.type}`));
    return true;
  }
}

// Response is the worker's side: a Writable of chunks (Buffers or strings) back to the
// client; end() closes it, error() ends it with [[category, code], message].
class Response extends Writable {
  constructor(conn, channel, event) {
    super({ decodeStrings: true });
    this._conn = conn;
    this.channel = channel;
    this.event = event;
    this.done = false; // close or error sent
  }

  _write(chunk, encoding, callback) {
    if (this.done) return callback(new ClosedUpstream(`event ${this.event}: the response is already closed`));
    this._conn.send(this.channel, 0, [chunk]).then(() => callback(), callback);
    return undefined;
  }

  _final(callback) {
    if (this.done) return callback();
    this.done = true;
    this._conn.send(this.channel, 2, []).then(() => callback(), callback);
    return undefined;
  }

  // error ends the response with an error; the category is the worker's (42) unless
  // given, e.g. Category.WORKER_USER (43).
  async error(code, message, category = Category.WORKER) {
    if (this.done) throw new ClosedUpstream(`event ${this.event}: the response is already closed`);
    this.done = true;
    await this._conn.send(this.channel, 1, [[category, code], String(message)]);
    this.end();
  }
}

// Receiver adapter between the connection and a Request.
class RequestReceiver {
  constructor(req) { this.req = req; }

  push(f) { return this.req.receive(f); }

  discard(err) {
    if (!this.req.readableEnded) {
      this.req.destroy(new NotConnected(`event ${this.req.event}: the connection to the node ended: ${err.reason || err.message}`, { cause: err }));
    }
  }
}

class Worker {
  constructor(argv = process.argv.slice(2), { heartbeatInterval = 10000, disownTimeout = 5000, terminateGrace = 5000 } = {}) {
    this.args = parseArgs(argv);
    this.heartbeatInterval = heartbeatInterval;
    this.disownTimeout = disownTimeout;
    this.terminateGrace = terminateGrace;
    this.handlers = new Map();
    this.fallbackHandler = null;
    this.running = new Set();
    this.stopping = false;
    this._stop = null;
    this.logger = new Logger(this.args.app, this.args.uuid, this.args.locator);
  }

  get app() { return this.args.app; }

  get uuid() { return this.args.uuid; }

  // on registers handler(request, response) for event.
  on(event, handler) {
    this.handlers.set(event, handler);
    return this;
  }

  // fallback serves the events without a handler of their own.
  fallback(handler) {
    this.fallbackHandler = handler;
    return this;
  }

  // stop asks a serving worker to stop as on SIGTERM (it tells the node first).
  stop() {
    if (this._stop) this._stop();
  }

  // run serves until the node's terminate and resolves with the exit status: 0, or 1
  // (after printing why) when the node disowned or disconnected the worker. SIGTERM and
  // SIGINT stop it cleanly.
  async run() {
    const onSignal = () => this.stop();
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    try {
      await this.serve();
      return 0;
    } catch (err) {
      process.stderr.write(`cocaine worker ${this.uuid}: ${err.message}\n`);
      return 1;
    } finally {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
  }

  // serve handshakes and serves events until the node's terminate (resolves), or the node
  // disowns or disconnects the worker (rejects with Disowned / NotConnected).
  async serve() {
    const conn = await Connection.connectUnix(this.args.endpoint, { name: 'node', accept: (f) => this._invoke(f) });
    this.conn = conn;
    const timers = new Set();
    let echo = null;
    let terminate;
    let beat;
    const outcome = new Promise((resolve, reject) => {
      this._stop = () => resolve({ stop: true });
      terminate = (code, reason) => resolve({ terminate: [code, reason] });
      conn.closed.then(() => {
        const e = conn.error;
        reject(new NotConnected(`lost the node: ${e.reason || e.message}`));
      });
      beat = () => {
        if (conn.error) return;
        conn.send(ch, 0, []).catch(() => {});
        const disown = setTimeout(() => reject(new Disowned(`the node did not echo a heartbeat within ${this.disownTimeout} ms`)), this.disownTimeout);
        timers.add(disown);
        echo = () => {
          clearTimeout(disown);
          timers.delete(disown);
          echo = null;
          const next = setTimeout(() => { timers.delete(next); beat(); }, this.heartbeatInterval);
          timers.add(next);
        };
      };
    });
    outcome.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
    const control = {
      push(f) {
        if (f.type === 0) {
          if (echo) echo();
          return false;
        }
        if (f.type === 1) {
          let [code = 0, reason = ''] = f.args;
          if (Buffer.isBuffer(reason)) reason = reason.toString();
          terminate(code, reason);
          return true;
        }
        return false;
      },
      discard() {},
    };
    const ch = conn.open(control);
    await conn.send(ch, 0, [this.args.uuid]); // handshake
    beat();
    try {
      const r = await outcome;
      this.stopping = true;
      if (r.terminate) {
        await this._drain();
        await quietly(conn.send(ch, 1, r.terminate)); // the echo
      } else {
        await quietly(conn.send(ch, 1, [0, 'worker stopped']));
        await this._drain();
      }
    } finally {
      this.stopping = true;
      this._stop = null;
      for (const t of timers) clearTimeout(t);
      for (const t of this.running) t.abort();
      await this.logger.close();
      await conn.close();
    }
  }

  async _drain() {
    if (!this.running.size) return;
    let timer;
    await Promise.race([
      Promise.allSettled([...this.running].map((t) => t.promise)),
      new Promise((resolve) => { timer = setTimeout(resolve, this.terminateGrace); }),
    ]);
    clearTimeout(timer);
  }

  _invoke(f) {
    if (this.stopping) return null;
    if (f.type !== 0 || !Buffer.isBuffer(f.args[0])) return null; // a new channel must start with an invoke
    const event = f.args[0].toString();
    const req = new Request(event, f.headers, f.channel);
    const resp = new Response(this.conn, f.channel, event);
    const handler = this.handlers.get(event) || this.fallbackHandler;
    const task = { abort: () => {
      if (!resp.done) resp.error(11, 'the worker is stopping', Category.SLAVE).catch(() => {});
    } };
    task.promise = this._handle(handler, req, resp).finally(() => this.running.delete(task));
    this.running.add(task);
    return new RequestReceiver(req);
  }

  async _handle(handler, req, resp) {
    resp.on('error', () => {}); // write failures surface in the handler's awaits
    req.on('error', () => {}); // a client error is the handler's to read
    try {
      if (!handler) {
        await resp.error(CODE_EVENT_NOT_FOUND, `there is no handler for an event '${req.event}'`);
        return;
      }
      await handler(req, resp);
      if (!resp.done && !resp.writableEnded) resp.end();
    } catch (err) {
      if (err instanceof NotConnected || err instanceof ClosedUpstream) return;
      process.stderr.write(`cocaine worker: event ${req.event}: ${err && err.stack ? err.stack : err}\n`);
      if (!resp.done) {
        await quietly(resp.error(CODE_UNCAUGHT, `event '${req.event}': ${err && err.message ? err.message : err}`));
      }
    }
  }
}

async function quietly(p) {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof NotConnected) && !(err instanceof ClosedUpstream) && !(err instanceof StreamClosed)) throw err;
  }
}

module.exports = { Worker, Request, Response, BadArguments, Disowned, parseArgs, CODE_EVENT_NOT_FOUND, CODE_UNCAUGHT };
