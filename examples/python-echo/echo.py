#!/usr/bin/python3
"""The Python echo app: a worker for the node with the Python framework.

Events:
  echo   streams every chunk of the request back as it arrives;
  ping   reads the whole request and answers it in one chunk, logging it through the
         logging service (with the request's trace id, if it has one);
  fail   reads the request and ends with an application error (category 43, code 1)
         carrying the request's text: how errors travel back to a client.

The app's archive holds this file and the framework's package, cocaine/, beside it
(examples/README or the repository README shows the commands).
"""

from cocaine import errors
from cocaine.worker import Worker

worker = Worker()


@worker.on("echo")
async def echo(request, response):
    async for chunk in request:
        await response.write(chunk)


@worker.on("ping")
async def ping(request, response):
    body = await request.read_all()
    trace = request.trace
    worker.logger.info("ping", bytes=len(body), trace_id=trace.trace_id if trace else 0)
    await response.write(body)


@worker.on("fail")
async def fail(request, response):
    body = await request.read_all()
    await response.error(1, f"failed on request: {body.decode('utf-8', 'replace')}", errors.WORKER_USER)


if __name__ == "__main__":
    raise SystemExit(worker.run())
