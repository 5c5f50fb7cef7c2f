#!/usr/bin/env node
'use strict';
// The Node.js echo app: a worker for the node with the Node.js framework.
//
// Events:
//   echo   streams every chunk of the request back as it arrives (request is a Readable,
//          response a Writable; pipeline(request, response) works too, at a higher cost
//          per request);
//   ping   reads the whole request and answers it in one chunk, logging it through the
//          logging service (with the request's trace id, if it has one);
//   fail   reads the request and ends with an application error (category 43, code 1)
//          carrying the request's text: how errors travel back to a client.
//
// The app's archive holds this file and node_modules/ with cocaine-framework and
// @msgpack/msgpack (the repository README shows the commands).

const { once } = require('node:events');
const { Worker, Category } = require('cocaine-framework');

const worker = new Worker();

worker.on('echo', async (request, response) => {
  for await (const chunk of request) {
    if (!response.write(chunk)) await once(response, 'drain');
  }
  response.end();
});

worker.on('ping', async (request, response) => {
  const body = await request.readAll();
  worker.logger.info('ping', { bytes: body.length, trace_id: request.trace ? request.trace.traceId : 0 });
  response.end(body);
});

worker.on('fail', async (request, response) => {
  const body = await request.readAll();
  await response.error(1, `failed on request: ${body.toString()}`, Category.WORKER_USER);
});

worker.run().then((code) => { process.exitCode = code; });
