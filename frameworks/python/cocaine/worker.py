"""The worker: a program the node runs, serving the events of one app (plugins.md §2.9).

::

    from cocaine.worker import Worker

    worker = Worker()                     # parses --app --uuid --endpoint --locator --protocol

    @worker.on("echo")
    async def echo(request, response):
        async for chunk in request:       # chunk by chunk, until the client closes
            await response.write(chunk)

    @worker.on("ping")
    async def ping(request, response):
        await response.write(await request.read_all())

    if __name__ == "__main__":
        raise SystemExit(worker.run())    # until the node says terminate

The worker connects to the node's unix socket, sends the handshake and a heartbeat every
``heartbeat_interval`` seconds; if the node does not echo one within ``disown_timeout``
the worker gives up (exit status 1). Each event runs its handler as a task; when the
handler returns the response is closed; an exception becomes an error (category 42, code
100); an event without a handler gets (42, 1). On the node's terminate the worker stops
taking events, gives running handlers ``terminate_grace`` seconds, echoes the terminate
and exits with status 0; SIGTERM and SIGINT do the same, telling the node first.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import errors
from .connection import Connection, parse_endpoint
from .errors import ClosedUpstream, CocaineError, NotConnected, StreamClosed, decode_error, message_of
from .logger import Logger
from .wire import Frame, Trace

Handler = Callable[["Request", "Response"], Awaitable[None]]

CODE_EVENT_NOT_FOUND = 1  # worker category 42 (plugins.md §2.9)
CODE_UNCAUGHT = 100  # an exception in a handler, as the original framework


class BadArguments(ValueError):
    """The command line is not the node's standard worker arguments."""


class Disowned(CocaineError):
    """The node stopped echoing heartbeats."""

    def __init__(self, message: str) -> None:
        super().__init__(errors.SLAVE, 8, message)


@dataclass
class WorkerArgs:
    app: str = "app/standalone"
    uuid: str = ""
    endpoint: str = ""
    locator: list = field(default_factory=lambda: [("127.0.0.1", 10053)])
    protocol: int = 0


def parse_args(argv: list[str]) -> WorkerArgs:
    """Parses ``--app A --uuid U --endpoint E --locator host:port,... --protocol 1`` (also
    ``--name=value``), in any order. Unknown arguments and a missing uuid, endpoint or
    protocol 1 raise BadArguments naming every problem."""
    a = WorkerArgs()
    problems = []
    seen: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            problems.append(f"unexpected argument {arg!r}")
            i += 1
            continue
        key, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            if i + 1 >= len(argv):
                problems.append(f"--{key} needs a value")
                break
            value = argv[i + 1]
            i += 1
        i += 1
        if key not in ("app", "uuid", "endpoint", "locator", "protocol"):
            problems.append(f"unknown argument --{key}")
            continue
        seen[key] = value
    a.app = seen.get("app", a.app)
    a.uuid = seen.get("uuid", "")
    a.endpoint = seen.get("endpoint", "")
    if not a.uuid:
        problems.append("--uuid is required")
    if not a.endpoint:
        problems.append("--endpoint is required")
    try:
        a.protocol = int(seen.get("protocol", "0"))
        if a.protocol != 1:
            problems.append(f"unsupported protocol version {a.protocol} (the node passes --protocol 1)")
    except ValueError:
        problems.append(f"--protocol must be a number, got {seen['protocol']!r}")
    if "locator" in seen:
        try:
            a.locator = [parse_endpoint(p.strip()) for p in seen["locator"].split(",") if p.strip()]
        except ValueError as e:
            problems.append(f"--locator: {e}")
    if problems:
        raise BadArguments("cocaine: bad worker arguments: " + "; ".join(problems))
    return a


class Request:
    """The client's side of one event: the chunks it streams.

    ``async for chunk in request`` reads chunk by chunk until the client closes;
    ``await request.read()`` returns one chunk (StreamClosed after the close);
    ``await request.read_all()`` joins them. A client's error, or the node aborting the
    request (a timeout, the client leaving), raises ServiceError / NotConnected.
    """

    def __init__(self, event: str, headers: list, channel: int) -> None:
        self.event = event
        self.headers = headers
        self.trace = Trace.from_headers(headers)
        self.channel = channel
        self._chunks: deque[Any] = deque()
        self._end: BaseException | None = None
        self._waiter: asyncio.Future | None = None

    def header(self, name: str) -> bytes | None:
        """The first header named ``name``, or None."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    async def read(self, timeout: float | None = None) -> bytes:
        while not self._chunks:
            if self._end is not None:
                raise self._end
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"event {self.event!r}: no chunk within {timeout:g} s") from None
            finally:
                self._waiter = None
        return self._chunks.popleft()

    async def read_all(self, timeout: float | None = None) -> bytes:
        out = []
        async for chunk in self._iter(timeout):
            out.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
        return b"".join(out)

    def __aiter__(self):
        return self._iter(None)

    async def _iter(self, timeout: float | None):
        while True:
            try:
                yield await self.read(timeout)
            except StreamClosed:
                return

    # Receiver, called by the connection.
    def push(self, f: Frame) -> bool:
        if f.type == 0:
            if not f.args or not isinstance(f.args[0], (bytes, bytearray)):
                self._finish(CocaineError(errors.DISPATCH, 2, f"event {self.event!r}: a chunk must be one raw, got {f.args!r}"))
                return True
            self._chunks.append(f.args[0])
            self._wake()
            return False
        if f.type == 1:
            self._finish(decode_error(f.args, "client"))
        elif f.type == 2:
            self._finish(StreamClosed(f"event {self.event!r}: the client closed its stream"))
        else:
            self._finish(CocaineError(errors.DISPATCH, 5, f"event {self.event!r}: unexpected message {f.type}"))
        return True

    def discard(self, error: Exception) -> None:
        e = NotConnected(f"event {self.event!r}: the connection to the node ended: {message_of(error)}")
        e.__cause__ = error
        self._finish(e)

    def _finish(self, end: BaseException) -> None:
        if self._end is None:
            self._end = end
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Response:
    """The worker's side of one event: chunks back to the client, then close or error."""

    def __init__(self, conn: Connection, channel: int, event: str) -> None:
        self._conn = conn
        self.channel = channel
        self.event = event
        self.closed = False

    async def write(self, data: bytes | str) -> None:
        """Sends one chunk (str is sent as UTF-8)."""
        if isinstance(data, str):
            data = data.encode()
        self._check()
        self._conn.send(self.channel, 0, [bytes(data)])
        await self._conn.drain()

    async def close(self) -> None:
        """Ends the response; the handler's return does it too."""
        self._check()
        self.closed = True
        self._conn.send(self.channel, 2, [])
        await self._conn.drain()

    async def error(self, code: int, message: str, category: int = errors.WORKER) -> None:
        """Ends the response with an error ``[[category, code], message]``; the category is
        the worker's (42) unless given, e.g. errors.WORKER_USER (43)."""
        self._check()
        self.closed = True
        self._conn.send(self.channel, 1, [[category, code], message])
        await self._conn.drain()

    def _check(self) -> None:
        if self.closed:
            raise ClosedUpstream(f"event {self.event!r}: the response is already closed")

    async def __aenter__(self) -> "Response":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.closed:
            if exc is None:
                await self.close()
            else:
                await self.error(CODE_UNCAUGHT, str(exc))


class _Control:
    """Channel 1 after the handshake: heartbeat echoes and the node's terminate."""

    def __init__(self) -> None:
        self.echo = asyncio.Event()
        self.terminate: asyncio.Future = asyncio.get_running_loop().create_future()

    def push(self, f: Frame) -> bool:
        if f.type == 0:
            self.echo.set()
            return False
        if f.type == 1:
            code, reason = (f.args + [0, b""])[:2]
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            if not self.terminate.done():
                self.terminate.set_result((code, reason))
            return True
        return False

    def discard(self, error: Exception) -> None:
        pass  # the connection's end is watched directly


class Worker:
    """Serves one app's events under the node. Register handlers with ``on`` before
    ``run``/``serve``."""

    def __init__(self, argv: list[str] | None = None, *, heartbeat_interval: float = 10.0,
                 disown_timeout: float = 5.0, terminate_grace: float = 5.0) -> None:
        self.args = parse_args(sys.argv[1:] if argv is None else argv)
        self.heartbeat_interval = heartbeat_interval
        self.disown_timeout = disown_timeout
        self.terminate_grace = terminate_grace
        self._handlers: dict[str, Handler] = {}
        self._fallback: Handler | None = None
        self._tasks: set[asyncio.Task] = set()
        self._conn: Connection | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self.logger = Logger(self.args.app, self.args.uuid, self.args.locator)

    @property
    def app(self) -> str:
        return self.args.app

    @property
    def uuid(self) -> str:
        return self.args.uuid

    def on(self, event: str, handler: Handler | None = None):
        """Registers ``handler(request, response)`` for ``event``; usable as a decorator."""
        def register(h: Handler) -> Handler:
            self._handlers[event] = h
            return h
        return register(handler) if handler is not None else register

    def fallback(self, handler: Handler) -> Handler:
        """Serves events without a handler of their own."""
        self._fallback = handler
        return handler

    def run(self) -> int:
        """Runs the worker in a new event loop; returns the process's exit status."""
        try:
            asyncio.run(self._main())
        except CocaineError as e:
            print(f"cocaine worker {self.uuid}: {e}", file=sys.stderr, flush=True)
            return 1
        return 0

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.serve()

    def stop(self) -> None:
        """Asks a serving worker to stop as on SIGTERM (it tells the node first)."""
        if self._stop is not None:
            self._stop.set()

    async def serve(self) -> None:
        """Handshakes and serves events until the node sends terminate (returns), or the
        node disowns or disconnects the worker (raises Disowned / NotConnected)."""
        if self._stop is None:
            self._stop = asyncio.Event()
        conn = await Connection.open_unix(self.args.endpoint, name="node", accept=self._invoke)
        self._conn = conn
        ctl = _Control()
        ch = conn.open(ctl)
        conn.send(ch, 0, [self.args.uuid])  # handshake
        beats = asyncio.create_task(self._heartbeats(conn, ch, ctl))
        closed = asyncio.create_task(conn.wait_closed())
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([beats, closed, stop, ctl.terminate], return_when=asyncio.FIRST_COMPLETED)
            self._stopping = True  # no new events from here on
            if ctl.terminate.done():
                code, reason = ctl.terminate.result()
                await self._drain()
                await self._send_quietly(conn, ch, 1, [code, reason])  # the echo
                return
            if stop in done:
                await self._send_quietly(conn, ch, 1, [0, "worker stopped"])
                await self._drain()
                return
            if beats in done and beats.exception() is not None:
                raise beats.exception()
            raise NotConnected(f"lost the node: {message_of(conn.error)}")
        finally:
            for t in (beats, closed, stop):
                t.cancel()
            for t in list(self._tasks):
                t.cancel()
            await self.logger.close()
            await conn.close()

    async def _heartbeats(self, conn: Connection, ch: int, ctl: _Control) -> None:
        while True:
            ctl.echo.clear()
            sent = time.monotonic()
            conn.send(ch, 0, [])
            try:
                await asyncio.wait_for(ctl.echo.wait(), self.disown_timeout)
            except asyncio.TimeoutError:
                raise Disowned(f"the node did not echo a heartbeat within {self.disown_timeout:g} s") from None
            await asyncio.sleep(max(0.0, self.heartbeat_interval - (time.monotonic() - sent)))

    async def _send_quietly(self, conn: Connection, ch: int, typ: int, args: list) -> None:
        try:
            conn.send(ch, typ, args)
            await asyncio.wait_for(conn.drain(), 1.0)
        except (NotConnected, asyncio.TimeoutError):
            pass

    async def _drain(self) -> None:
        """Waits for running handlers, at most terminate_grace seconds, then cancels them."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.terminate_grace)
        for t in list(self._tasks):
            t.cancel()

    def _invoke(self, f: Frame) -> Request | None:
        """A channel the node opened: invoke [event], then the request's stream."""
        if self._stopping:
            return None
        if f.type != 0 or not f.args or not isinstance(f.args[0], (bytes, str)):
            return None  # a new channel must start with an invoke; anything else is dropped
        event = f.args[0].decode("utf-8", "replace") if isinstance(f.args[0], bytes) else f.args[0]
        req = Request(event, f.headers, f.channel)
        resp = Response(self._conn, f.channel, event)
        handler = self._handlers.get(event, self._fallback)
        t = asyncio.get_running_loop().create_task(self._handle(handler, req, resp), name=f"event {event}")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return req

    async def _handle(self, handler: Handler | None, req: Request, resp: Response) -> None:
        try:
            if handler is None:
                await resp.error(CODE_EVENT_NOT_FOUND, f"there is no handler for an event {req.event!r}")
                return
            result = handler(req, resp)
            if inspect.isawaitable(result):
                await result
            if not resp.closed:
                await resp.close()
        except asyncio.CancelledError:
            await self._fail(resp, errors.SLAVE, 11, "the worker is stopping")
        except (NotConnected, ClosedUpstream):
            pass
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            await self._fail(resp, errors.WORKER, CODE_UNCAUGHT, f"event {req.event!r}: {type(e).__name__}: {e}")

    async def _fail(self, resp: Response, category: int, code: int, message: str) -> None:
        if resp.closed:
            return
        try:
            await resp.error(code, message, category)
        except (NotConnected, ClosedUpstream):
            pass
