'use strict';
// The logging service from inside an app (protocol.md §6.2). Each record is
// emit [level, "app/<app>", message, [[key, value], ...]] on a new channel of the
// logging service, resolved through the locator, with the worker's uuid among the
// attributes. emit is mute, so logging never waits on the service; records wait in a
// bounded queue while it is reached, and go to stderr if it cannot be.
//
//   worker.logger.info('started', { port: 8080 });

const { Service } = require('./client');

const Level = Object.freeze({ DEBUG: 0, INFO: 1, WARNING: 2, ERROR: 3 });
const NAMES = ['debug', 'info', 'warning', 'error'];
const QUEUE_LIMIT = 10000; // records waiting for the service; older ones are dropped past it

class Logger {
  constructor(app, uuid = '', locator = undefined, { timeout = 5000 } = {}) {
    this.source = app.startsWith('app/') ? app : `app/${app}`;
    this.uuid = uuid;
    this.locator = locator;
    this.timeout = timeout;
    this.queue = [];
    this.dropped = 0;
    this.sending = null;
    this.service = null;
  }

  // emit queues one record and starts sending it.
  emit(level, message, attributes = {}) {
    const attrs = Object.entries(attributes).map(([k, v]) => [k, attr(v)]);
    if (this.uuid) attrs.push(['uuid', this.uuid]);
    if (this.queue.length >= QUEUE_LIMIT) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push([level, this.source, String(message), attrs]);
    if (!this.sending) this.sending = this._send().finally(() => { this.sending = null; });
  }

  debug(message, attributes) { this.emit(Level.DEBUG, message, attributes); }

  info(message, attributes) { this.emit(Level.INFO, message, attributes); }

  warning(message, attributes) { this.emit(Level.WARNING, message, attributes); }

  error(message, attributes) { this.emit(Level.ERROR, message, attributes); }

  // verbosity is the service's level: records below it are dropped there.
  async verbosity() {
    const svc = await this._connect();
    return Number(await (await svc.call('verbosity')).get());
  }

  // flush waits until the queued records are sent (or given to stderr).
  async flush() {
    while (this.sending) await this.sending;
  }

  async close() {
    let timer;
    await Promise.race([this.flush(), new Promise((resolve) => { timer = setTimeout(resolve, 1000); })]);
    clearTimeout(timer);
    if (this.service) await this.service.close();
    this.service = null;
  }

  async _connect() {
    if (!this.service) this.service = new Service('logging', { locator: this.locator, timeout: this.timeout });
    return this.service.connect();
  }

  async _send() {
    while (this.queue.length) {
      try {
        const svc = await this._connect();
        await svc.call('emit', ...this.queue[0]);
        this.queue.shift();
      } catch (err) {
        for (const [level, source, message, attrs] of this.queue) {
          process.stderr.write(`[${NAMES[level] || level}] ${source}: ${message} ${JSON.stringify(attrs)} (logging unavailable: ${err.message})\n`);
        }
        this.queue = [];
      }
    }
    if (this.dropped) {
      process.stderr.write(`cocaine logger: dropped ${this.dropped} records\n`);
      this.dropped = 0;
    }
  }
}

// attr keeps what emit accepts (raw, integer, float, bool); nil is fatal to the service.
function attr(v) {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || Buffer.isBuffer(v)) return v;
  return v === undefined || v === null ? String(v) : JSON.stringify(v);
}

module.exports = { Logger, Level };
