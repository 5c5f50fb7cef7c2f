"""One multiplexed connection (protocol.md §2): many channels over one stream.

The side that opens a channel picks its id, and ids only go up on a connection: ours
are ``max_seen + 1``, in the same id space as the peer's. A frame on a channel nobody
listens to is dropped (a late reply), unless it opens a new channel and the connection
accepts peer channels (the worker's connection, on which the node opens invokes).
A frame that breaks the wire closes the connection; every open channel then gets the
error.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, Protocol, Sequence

from .errors import NotConnected, ProtocolError, message_of
from .wire import DEFAULT_MAX_FRAME_SIZE, Frame, FrameDecoder, encode_frame

READ_SIZE = 256 << 10


class Receiver(Protocol):
    def push(self, frame: Frame) -> bool:
        """Takes one frame of the channel; returns True once the channel's incoming
        direction has ended (the connection then forgets the channel)."""

    def discard(self, error: Exception) -> None:
        """The connection ended before the channel did."""


class Connection:
    """A connection over an asyncio stream pair. Use it from one event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 name: str = "", accept: Callable[[Frame], Receiver | None] | None = None,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.name = name
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder(max_frame_size)
        self._channels: dict[int, Receiver] = {}
        self._max_id = 0
        self._accept = accept
        self._error: Exception | None = None
        self._done = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read_loop(), name=f"cocaine read {name}")

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def open_tcp(cls, endpoints: Sequence[tuple[str, int]], *, name: str = "",
                       timeout: float | None = 5.0) -> "Connection":
        """Connects to the first endpoint that answers, in order."""
        errors = []
        for host, port in endpoints:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (OSError, asyncio.TimeoutError) as e:
                errors.append(f"{_hostport(host, port)}: {_describe(e)}")
                continue
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return cls(r, w, name=name)
        what = f" to {name}" if name else ""
        raise NotConnected(f"cannot connect{what}: " + ("; ".join(errors) or "no endpoints"))

    @classmethod
    async def open_unix(cls, path: str, *, name: str = "", accept: Callable[[Frame], Receiver | None] | None = None,
                        timeout: float | None = 5.0) -> "Connection":
        try:
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise NotConnected(f"cannot connect to {path}: {_describe(e)}") from None
        return cls(r, w, name=name, accept=accept)

    # -- channels -----------------------------------------------------------------------

    def open(self, receiver: Receiver | None) -> int:
        """Allocates the next channel id; receiver (None: nothing comes back) gets its frames."""
        self._check()
        self._max_id += 1
        if receiver is not None:
            self._channels[self._max_id] = receiver
        return self._max_id

    def forget(self, channel: int) -> None:
        self._channels.pop(channel, None)

    def send(self, channel: int, typ: int, args: Sequence[Any] = (), headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Writes one frame. It is buffered at once; await drain() to respect backpressure."""
        self._check()
        self._writer.write(encode_frame(channel, typ, args, headers))

    async def drain(self) -> None:
        self._check()
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise NotConnected(f"{self.name or 'connection'}: {_describe(e)}") from None

    # -- life ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._done.done()

    @property
    def error(self) -> Exception | None:
        """Why the connection ended (None while it is open)."""
        return self._error

    async def wait_closed(self) -> None:
        await asyncio.shield(self._done)

    async def close(self) -> None:
        """Closes the connection; open channels get NotConnected."""
        self._shutdown(NotConnected(f"{self.name or 'connection'}: closed"))
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def _check(self) -> None:
        if self._error is not None:
            raise NotConnected(message_of(self._error))

    async def _read_loop(self) -> None:
        err: Exception = NotConnected(f"{self.name or 'connection'}: closed by the peer")
        try:
            while True:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    break
                self._decoder.feed(data)
                while (f := self._decoder.next()) is not None:
                    self._dispatch(f)
        except ProtocolError as e:
            err = e
        except (ConnectionError, OSError) as e:
            err = NotConnected(f"{self.name or 'connection'}: {_describe(e)}")
        finally:
            self._shutdown(err)

    def _dispatch(self, f: Frame) -> None:
        r = self._channels.get(f.channel)
        if r is None:
            if f.channel <= self._max_id or self._accept is None:
                return  # a reply to a channel we forgot, or one we never opened
            self._max_id = f.channel
            r = self._accept(f)
            if r is not None:
                self._channels[f.channel] = r
            return
        if r.push(f):
            self._channels.pop(f.channel, None)

    def _shutdown(self, err: Exception) -> None:
        if self._error is not None:
            return
        self._error = err
        self._writer.close()
        channels, self._channels = self._channels, {}
        for r in channels.values():
            r.discard(err)
        self._done.set_result(None)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def parse_endpoint(s: str | tuple[str, int]) -> tuple[str, int]:
    """Accepts ("host", port), "host:port" or "[v6]:port"."""
    if isinstance(s, tuple):
        return (str(s[0]), int(s[1]))
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"cocaine: bad endpoint {s!r}: want host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host, int(port))
