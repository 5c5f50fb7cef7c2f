'use strict';
// The Node.js framework for Cocaine apps: a client that resolves services through the
// locator and calls their methods by name from the graph it returns (no generated code),
// and a worker that runs under the node and serves events with Readable requests and
// Writable responses. Both speak the same wire as the Go framework.

const client = require('./lib/client');
const errors = require('./lib/errors');
const { Logger, Level } = require('./lib/logger');
const { Trace } = require('./lib/wire');
const worker = require('./lib/worker');

module.exports = {
  Service: client.Service,
  Locator: client.Locator,
  Channel: client.Channel,
  Message: client.Message,
  service: client.service,
  Worker: worker.Worker,
  Request: worker.Request,
  Response: worker.Response,
  parseArgs: worker.parseArgs,
  BadArguments: worker.BadArguments,
  Disowned: worker.Disowned,
  Logger,
  Level,
  Trace,
  Category: errors.Category,
  CocaineError: errors.CocaineError,
  ServiceError: errors.ServiceError,
  ProtocolError: errors.ProtocolError,
  NotConnected: errors.NotConnected,
  InvalidMessage: errors.InvalidMessage,
  ClosedUpstream: errors.ClosedUpstream,
  StreamClosed: errors.StreamClosed,
  TimeoutError: errors.TimeoutError,
};
