'use strict';
// Errors: every one carries a Cocaine (category, code) pair (protocol.md §4.3).
//
// CocaineError is the base. An error reply from a service is a ServiceError; a broken
// wire is a ProtocolError (the connection is closed); a lost or refused connection is
// NotConnected. A wait that runs out is a TimeoutError (code 'ETIMEDOUT'); the end of a
// stream is StreamClosed.

const Category = Object.freeze({
  SYSTEM: 1, TRANSPORT: 6, DISPATCH: 7, PLUGINS: 8, SECURITY: 9, LOCATOR: 10, UNICORN: 11,
  GENERIC: 12, PROTOCOL: 13, WORKER: 42, WORKER_USER: 43, NODE: 0x51ff, OVERSEER: 0x52ff,
  SLAVE: 0x53ff, UNKNOWN: 255,
});

class CocaineError extends Error {
  constructor(category, code, message, options) {
    super(`${message} [${category}:${code}]`, options);
    this.name = 'CocaineError';
    this.category = category;
    this.code = code;
    this.reason = message;
  }

  // is reports whether the error has this category and code.
  is(category, code) {
    return this.category === category && this.code === code;
  }
}

// An error reply [[category, code], message] from the service named service.
class ServiceError extends CocaineError {
  constructor(category, code, message, service = '') {
    super(category, code, service ? `${service}: ${message}` : message);
    this.name = 'ServiceError';
    this.reason = message;
    this.service = service;
  }
}

class ProtocolError extends CocaineError {
  constructor(code, message) {
    super(Category.TRANSPORT, code, message);
    this.name = 'ProtocolError';
  }

  static frame(message) { return new ProtocolError(1, `frame format error: ${message}`); }
  static hpack(message) { return new ProtocolError(2, `hpack error: ${message}`); }
  static parse(message) { return new ProtocolError(4, `parse error: ${message}`); }
}

class NotConnected extends CocaineError {
  constructor(message = 'not connected', options) {
    super(Category.DISPATCH, 3, message, options);
    this.name = 'NotConnected';
  }
}

// A message the channel's protocol does not allow now; refused locally, nothing sent.
class InvalidMessage extends CocaineError {
  constructor(message) {
    super(Category.DISPATCH, 5, message);
    this.name = 'InvalidMessage';
  }
}

class ClosedUpstream extends CocaineError {
  constructor(message = 'closed upstream') {
    super(Category.PROTOCOL, 1, message);
    this.name = 'ClosedUpstream';
  }
}

class StreamClosed extends Error {
  constructor(message) {
    super(message);
    this.name = 'StreamClosed';
  }
}

class TimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = 'TimeoutError';
    this.code = 'ETIMEDOUT';
  }
}

// decodeError builds the error of an error message's args: [[category, code], message?].
function decodeError(args, service = '') {
  const ec = Array.isArray(args) ? args[0] : undefined;
  if (!Array.isArray(ec) || ec.length < 2 || typeof ec[0] !== 'number' || typeof ec[1] !== 'number') {
    return new ServiceError(Category.UNKNOWN, 0, `malformed error message ${JSON.stringify(args)}`, service);
  }
  let msg = args.length > 1 ? args[1] : '';
  if (msg instanceof Uint8Array) msg = Buffer.from(msg.buffer, msg.byteOffset, msg.length).toString('utf8');
  return new ServiceError(ec[0], ec[1], String(msg), service);
}

module.exports = {
  Category, CocaineError, ServiceError, ProtocolError, NotConnected, InvalidMessage, ClosedUpstream,
  StreamClosed, TimeoutError, decodeError,
};
