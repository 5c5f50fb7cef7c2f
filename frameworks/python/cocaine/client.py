"""The client: resolve a service through the locator and call its methods by name.

::

    async with Service("echo") as echo:            # the locator on 127.0.0.1:10053
        ch = await echo.enqueue("ping")             # a method of the graph the locator sent
        await ch.write(b"hello")
        await ch.close()
        print(await ch.read_all())                  # b"hello"

    storage = Service("storage")
    keys = await (await storage.find("manifests", ["app"])).get()

Every wait is bounded: ``timeout`` (seconds) of the Service bounds resolving, connecting
and each reply, unless a call or a get says otherwise; ``None`` waits forever. A timeout
raises ``TimeoutError``; an error reply raises ``ServiceError`` with its category and
code; a lost connection raises ``NotConnected`` in every open channel, and the next call
resolves and connects again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from .connection import Connection, parse_endpoint
from .errors import (ClosedUpstream, InvalidMessage, NotConnected, ServiceError, StreamClosed, decode_error,
                     message_of)
from .protocol import LOCATOR_GRAPH, Graph, Method, State
from .wire import Frame, Trace, normalize_headers

DEFAULT_LOCATOR = ("127.0.0.1", 10053)
DEFAULT_TIMEOUT = 30.0
_UNSET: Any = object()


@dataclass(frozen=True)
class Message:
    """One message received on a channel: its name in the graph, args and headers."""

    name: str
    args: list
    headers: list

    @property
    def payload(self) -> Any:
        """The args, unwrapped when there is exactly one (as the original framework)."""
        return self.args[0] if len(self.args) == 1 else self.args


@dataclass(frozen=True)
class ServiceInfo:
    endpoints: list[tuple[str, int]]
    version: int
    graph: Graph


class Channel:
    """One call: send on it by message name, receive the service's replies.

    ``async for payload in channel`` reads until the reply stream closes.
    """

    def __init__(self, service: "Service", conn: Connection, method: Method,
                 headers: list[tuple[str, bytes]], timeout: float | None) -> None:
        self.service = service
        self.method = method
        self._conn = conn
        self._headers = headers
        self._timeout = timeout
        self._tx: State | None = method.dispatch if method.dispatch is not None else _root_state(service.graph)
        self._rx: State = method.upstream
        self._queue: deque[Message | BaseException] = deque()
        self._waiter: asyncio.Future | None = None
        self._ended = self._rx.terminal  # nothing more will arrive
        self.id = 0

    # -- sending --------------------------------------------------------------------------

    async def send(self, name: str, *args: Any, headers: Any = None) -> None:
        """Sends the message ``name`` ("write", "close", "error", ...) of the current state."""
        state = self._tx
        if state is None or state.terminal:
            raise ClosedUpstream(f"{self._what()}: nothing more may be sent (after {name!r})")
        typ = state.by_name.get(name)
        if typ is None:
            raise InvalidMessage(f"{self._what()}: no message {name!r} now (allowed: {', '.join(state.names())})")
        extra = normalize_headers(headers)
        self._conn.send(self.id, typ, args, self._headers + extra)
        nxt = state.by_id[typ][1]
        if nxt is not None:
            self._tx = nxt
        await self._conn.drain()

    async def write(self, *args: Any) -> None:
        """Sends a streaming chunk."""
        await self.send("write", *args)

    async def close(self) -> None:
        """Ends the caller's direction of a stream."""
        await self.send("close")

    async def error(self, category: int, code: int, message: str) -> None:
        """Ends the caller's direction with an error."""
        await self.send("error", [category, code], message)

    @property
    def writable(self) -> bool:
        return self._tx is not None and not self._tx.terminal

    # -- receiving ------------------------------------------------------------------------

    async def recv(self, timeout: float | None = _UNSET) -> Message:
        """The next message, whatever its name. An ``error`` message raises ServiceError;
        after the last message StreamClosed; TimeoutError after ``timeout`` seconds."""
        item = await self._next(timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def get(self, timeout: float | None = _UNSET) -> Any:
        """The payload of the next ``value`` or ``write`` (one arg unwrapped). A stream's
        ``close`` and any get after the last reply raise StreamClosed."""
        m = await self.recv(timeout)
        if m.name == "close":
            raise StreamClosed(f"{self._what()}: the reply stream is closed")
        return m.payload

    async def read_all(self, timeout: float | None = _UNSET) -> bytes:
        """Reads a stream of single-raw writes until close and joins them."""
        out = []
        async for chunk in self._chunks(timeout):
            if not isinstance(chunk, (bytes, bytearray)):
                raise TypeError(f"{self._what()}: a chunk is {type(chunk).__name__}, not a raw")
            out.append(chunk)
        return b"".join(out)

    def __aiter__(self):
        return self._chunks(_UNSET)

    async def _chunks(self, timeout: float | None):
        while True:
            try:
                yield await self.get(timeout)
            except StreamClosed:
                return

    async def _next(self, timeout: float | None) -> Message | BaseException:
        if timeout is _UNSET:
            timeout = self._timeout
        if not self._queue:
            if self._ended:
                return StreamClosed(f"{self._what()}: no more replies")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{self._what()}: no reply within {timeout:g} s") from None
            finally:
                self._waiter = None
        return self._queue.popleft()

    # Receiver, called by the connection.
    def push(self, f: Frame) -> bool:
        tr = self._rx.by_id.get(f.type)
        if tr is None:
            self._put(InvalidMessage(f"{self._what()}: the service sent message {f.type}, "
                                     f"which its graph does not allow now ({', '.join(self._rx.names())})"))
            self._ended = True
            return True
        name, nxt = tr
        if name == "error":
            self._put(decode_error(f.args, self.service.name))
        else:
            self._put(Message(name, f.args, f.headers))
        if nxt is not None:
            self._rx = nxt
        if self._rx.terminal:
            self._ended = True
            return True
        return False

    def discard(self, error: Exception) -> None:
        e = NotConnected(f"{self._what()}: the connection ended: {message_of(error)}")
        e.__cause__ = error
        self._put(e)
        self._ended = True

    def _put(self, item: Message | BaseException) -> None:
        self._queue.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _what(self) -> str:
        return f"{self.service.name}.{self.method.name} (channel {self.id})"


def _root_state(graph: Graph) -> State:
    return State({m.id: (m.name, m.dispatch) for m in graph.by_id.values()})


class Service:
    """A connection to one service, resolved through the locator on first use.

    ``locator``: endpoints of the locator, as "host:port" strings or (host, port) pairs
    (default 127.0.0.1:10053). ``version``: refuse a service whose protocol version
    differs. ``seed``: the routing-group seed for resolve. Any method of the service's
    graph is an attribute: ``await svc.enqueue("ping")`` is ``await svc.call("enqueue",
    "ping")``; ``call`` also works for names that clash with the ones below.
    """

    def __init__(self, name: str, locator: Sequence[str | tuple[str, int]] | str | None = None, *,
                 timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None, seed: str | None = None) -> None:
        self.name = name
        self.timeout = timeout
        self.version = version
        self.seed = seed
        if isinstance(locator, str):
            locator = [p for p in locator.split(",") if p.strip()]
        self.locator_endpoints = [parse_endpoint(e) for e in (locator or [DEFAULT_LOCATOR])]
        self.resolved: ServiceInfo | None = None
        self._conn: Connection | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def graph(self) -> Graph:
        if self.resolved is None:
            raise NotConnected(f"{self.name}: not resolved yet")
        return self.resolved.graph

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def connect(self) -> None:
        """Resolves the service and connects to it (again, if the connection was lost)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.connected:
                return
            info = await self._resolve()
            if self.version is not None and info.version != self.version:
                raise ServiceError(10, 3, f"{self.name} has protocol version {info.version}, want {self.version}",
                                   self.name)
            self._conn = await Connection.open_tcp(info.endpoints, name=self.name, timeout=self.timeout)
            self.resolved = info

    async def _resolve(self) -> ServiceInfo:
        async with Locator(self.locator_endpoints, timeout=self.timeout) as loc:
            return await loc.resolve(self.name, self.seed)

    def methods(self) -> list[str]:
        """The service's method names (control methods left out)."""
        return self.graph.names()

    async def call(self, method: str, *args: Any, headers: Any = None, trace: Trace | None = None,
                   timeout: float | None = _UNSET) -> Channel:
        """Opens a channel with the method named ``method``. ``headers`` (a dict or
        (name, value) pairs) and ``trace`` go with every frame of the channel; ``timeout``
        bounds each reply on it (the Service's by default)."""
        await self.connect()
        m = self.graph.method(method)
        if m is None:
            raise AttributeError(f"{self.name} has no method {method!r} (it has {', '.join(self.methods())})")
        hs = (trace.headers() if trace is not None else []) + normalize_headers(headers)
        ch = Channel(self, self._conn, m, hs, self.timeout if timeout is _UNSET else timeout)
        ch.id = self._conn.open(None if m.upstream.terminal else ch)
        try:
            self._conn.send(ch.id, m.id, args, hs)
        except TypeError:
            self._conn.forget(ch.id)
            raise
        await self._conn.drain()
        return ch

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        async def method(*args: Any, **kw: Any) -> Channel:
            return await self.call(name, *args, **kw)

        method.__name__ = name
        return method

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> "Service":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class Locator(Service):
    """The locator itself, with the graph every client knows (protocol.md §3.5)."""

    def __init__(self, endpoints: Sequence[str | tuple[str, int]] | str | None = None, *,
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        super().__init__("locator", endpoints, timeout=timeout)

    async def connect(self) -> None:
        if self.connected:
            return
        self._conn = await Connection.open_tcp(self.locator_endpoints, name="locator", timeout=self.timeout)
        self.resolved = ServiceInfo(self.locator_endpoints, 3, LOCATOR_GRAPH)

    async def resolve(self, name: str, seed: str | None = None) -> ServiceInfo:
        """Where ``name`` lives and its graph. An unknown service raises ServiceError
        (10, 1) "service is not available"."""
        ch = await self.call("resolve", name, *([seed] if seed else []))  # optional args are omitted, never nil
        endpoints, version, graph = (await ch.recv()).args[:3]
        eps = []
        for ep in endpoints:
            host, port = ep[0], ep[1]
            eps.append((host.decode() if isinstance(host, bytes) else str(host), int(port)))
        return ServiceInfo(eps, int(version), Graph.decode(graph))
