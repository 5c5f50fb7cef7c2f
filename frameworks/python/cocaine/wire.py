"""The Cocaine 0.12 wire: msgpack frames, the header table and the trace headers.

A frame is ``[channel, type, args, headers?, ...ignored]`` (protocol.md §1.3). Everything
this module writes is what the core writes: four-element frames and old-spec raw strings
only (fixraw, raw16, raw32; never str8, bin or ext), so the oldest peers can read it.
It reads everything: str8, bin, any integer width, 3- to N-element frames, compressed and
uncompressed headers (§5).

Raws arrive as :class:`bytes` (old-spec msgpack has no separate string type); map keys
may be integers (dispatch graphs are int-keyed).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import msgpack

from .errors import ProtocolError

# Frames larger than this are a protocol error (the Go side's rpc.DefaultMaxFrameSize).
DEFAULT_MAX_FRAME_SIZE = 64 << 20

_packer_options = dict(use_bin_type=False, autoreset=True, use_single_float=False, strict_types=False)


def pack(value: Any) -> bytes:
    """Encodes one value as old-spec msgpack: str and bytes both become raws."""
    return msgpack.packb(value, **_packer_options, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cocaine: cannot encode a {type(value).__name__} as msgpack")


def unpack(data: bytes) -> Any:
    """Decodes one msgpack value; raws (str, bin, str8) come back as bytes."""
    return msgpack.unpackb(data, raw=True, strict_map_key=False, use_list=True)


# ---------------------------------------------------------------------------------------
# Headers (protocol.md §5)

TRACE_ID, SPAN_ID, PARENT_ID = "trace_id", "span_id", "parent_id"
INDEX_TRACE_ID, INDEX_SPAN_ID, INDEX_PARENT_ID = 80, 81, 82

_ZERO8 = bytes(8)
_STATIC_SIZE = 83  # slots 0..82; 0 is reserved
_DYNAMIC_CAPACITY = 4096
_ENTRY_OVERHEAD = 32

_RFC7541 = [
    (":authority", b""), (":method", b"GET"), (":method", b"POST"), (":path", b"/"),
    (":path", b"/index.html"), (":scheme", b"http"), (":scheme", b"https"), (":status", b"200"),
    (":status", b"204"), (":status", b"206"), (":status", b"304"), (":status", b"400"),
    (":status", b"404"), (":status", b"500"), ("accept-charset", b""),
    ("accept-encoding", b"gzip, deflate"), ("accept-language", b""), ("accept-ranges", b""),
    ("accept", b""), ("access-control-allow-origin", b""), ("age", b""), ("allow", b""),
    ("authorization", b""), ("cache-control", b""), ("content-disposition", b""),
    ("content-encoding", b""), ("content-language", b""), ("content-length", b""),
    ("content-location", b""), ("content-range", b""), ("content-type", b""), ("cookie", b""),
    ("date", b""), ("etag", b""), ("expect", b""), ("expires", b""), ("from", b""), ("host", b""),
    ("if-match", b""), ("if-modified-since", b""), ("if-none-match", b""), ("if-range", b""),
    ("if-unmodified-since", b""), ("last-modified", b""), ("link", b""), ("location", b""),
    ("max-forwards", b""), ("proxy-authenticate", b""), ("proxy-authorization", b""),
    ("range", b""), ("referer", b""), ("refresh", b""), ("retry-after", b""), ("server", b""),
    ("set-cookie", b""), ("strict-transport-security", b""), ("transfer-encoding", b""),
    ("user-agent", b""), ("vary", b""), ("via", b""), ("www-authenticate", b""),
]
STATIC_TABLE: list[tuple[str, bytes]] = [("", b"")] + _RFC7541 + [("", b"")] * 18 + [
    (TRACE_ID, _ZERO8), (SPAN_ID, _ZERO8), (PARENT_ID, _ZERO8)]
assert len(STATIC_TABLE) == _STATIC_SIZE


def _entry_size(name: str, value: bytes) -> int:
    return len(name.encode()) + len(value) + _ENTRY_OVERHEAD


class HeaderTable:
    """One direction's header table: the static part and a dynamic part (83 = newest)."""

    def __init__(self) -> None:
        self.dynamic: list[tuple[str, bytes]] = []
        self._size = 0

    def get(self, index: int) -> tuple[str, bytes]:
        if index == 0:
            raise ProtocolError.hpack("header index 0 is reserved")
        if index < _STATIC_SIZE:
            return STATIC_TABLE[index]
        i = index - _STATIC_SIZE
        if i < len(self.dynamic):
            return self.dynamic[i]
        raise ProtocolError.hpack(
            f"header index {index} is beyond the table ({_STATIC_SIZE + len(self.dynamic) - 1} entries)")

    def store(self, name: str, value: bytes) -> None:
        size = _entry_size(name, value)
        if size > _DYNAMIC_CAPACITY:  # RFC 7541 §4.4: empties the table, is not stored
            self.dynamic.clear()
            self._size = 0
            return
        while self._size + size > _DYNAMIC_CAPACITY:
            old = self.dynamic.pop()
            self._size -= _entry_size(*old)
        self.dynamic.insert(0, (name, value))
        self._size += size

    def find(self, name: str, value: bytes) -> tuple[int, int]:
        """Returns (index of an exact match, index of an entry with that name); 0 = none."""
        named = 0
        for i in range(1, _STATIC_SIZE):
            n, v = STATIC_TABLE[i]
            if n == name and n:
                if v == value:
                    return i, i
                if not named:
                    named = i
        for i, (n, v) in enumerate(self.dynamic):
            if n == name:
                if v == value:
                    return _STATIC_SIZE + i, _STATIC_SIZE + i
                if not named:
                    named = _STATIC_SIZE + i
        return 0, named

    def decode(self, entries: Any) -> list[tuple[str, bytes]]:
        """Decodes element 3 of a frame, applying stored literals in order."""
        if not isinstance(entries, list):
            raise ProtocolError.frame(f"headers must be an array, got {_kind(entries)}")
        out = []
        for e in entries:
            if _is_uint(e):
                out.append(self.get(e))
                continue
            if not isinstance(e, list) or len(e) != 3:
                raise ProtocolError.hpack(f"a header entry must be an index or a 3-element array, got {_kind(e)}")
            store, name, value = e
            if not isinstance(store, bool):
                raise ProtocolError.hpack("the store flag of a header must be a boolean")
            if _is_uint(name):
                name = self.get(name)[0]
            elif isinstance(name, bytes):
                name = name.decode("utf-8", "surrogateescape")
            else:
                raise ProtocolError.hpack(f"a header name must be a raw or an index, got {_kind(name)}")
            if not isinstance(value, bytes):
                raise ProtocolError.hpack(f"a header value must be a raw, got {_kind(value)}")
            if store:
                self.store(name, value)
            out.append((name, value))
        return out


class HeaderEncoder:
    """Encodes one direction's headers.

    Uncompressed (the default, what Cocaine >= 0.12.13.1 sends): every header is an
    unstored literal ``[False, name, value]``. Compressed (what the original Python
    framework sends): an exact table match is a bare index, anything else a stored literal,
    with the name by index when the table has it.
    """

    def __init__(self, compress: bool = False) -> None:
        self.compress = compress
        self.table = HeaderTable()

    def encode(self, headers: Sequence[tuple[str, bytes]]) -> bytes:
        out = [_array_header(len(headers))]
        for name, value in headers:
            if not self.compress:
                out.append(b"\x93\xc2" + pack(name) + pack(value))
                continue
            exact, named = self.table.find(name, value)
            if exact:
                out.append(pack(exact))
                continue
            out.append(b"\x93\xc3" + pack(named if named else name) + pack(value))
            self.table.store(name, value)
        return b"".join(out)


def normalize_headers(headers: Any) -> list[tuple[str, bytes]]:
    """Accepts a dict or (name, value) pairs with str or bytes values."""
    if not headers:
        return []
    items = headers.items() if isinstance(headers, dict) else headers
    out = []
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode()
        if isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"cocaine: header {name!r} must be str or bytes, got {type(value).__name__}")
        out.append((str(name), bytes(value)))
    return out


def _random_span() -> int:
    return random.randint(1, (1 << 63) - 2)


@dataclass(frozen=True)
class Trace:
    """A channel's tracing context (protocol.md §5.4): three 64-bit ids, sent as 8 raw
    bytes each, little-endian. trace_id 0 means untraced."""

    trace_id: int
    span_id: int
    parent_id: int = 0

    def headers(self) -> list[tuple[str, bytes]]:
        return [(TRACE_ID, struct.pack("<Q", self.trace_id)), (SPAN_ID, struct.pack("<Q", self.span_id)),
                (PARENT_ID, struct.pack("<Q", self.parent_id))]

    def child(self) -> "Trace":
        """A new span under this one, for the calls a handler makes on its request's behalf."""
        return Trace(self.trace_id, _random_span(), self.span_id)

    @classmethod
    def new(cls) -> "Trace":
        return cls(_random_span(), _random_span(), 0)

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> "Trace | None":
        """The trace of a channel whose first frame had these headers; None if untraced."""
        ids: dict[str, int] = {}
        for name, value in headers:
            if name in (TRACE_ID, SPAN_ID, PARENT_ID) and name not in ids and len(value) == 8:
                ids[name] = struct.unpack("<Q", value)[0]
        if len(ids) != 3 or ids[TRACE_ID] == 0:
            return None
        return cls(ids[TRACE_ID], ids[SPAN_ID], ids[PARENT_ID])


# ---------------------------------------------------------------------------------------
# Frames


@dataclass
class Frame:
    """One message: channel, type, args (decoded values) and headers ((str, bytes) pairs).

    A decoded frame also keeps the bytes it came in (wire), and encoding it writes its
    args back exactly as they came (raw_args), as the Go side does, so a frame passes
    through byte for byte. A frame built in code has no wire bytes: its args are encoded.
    """

    channel: int
    type: int
    args: list = field(default_factory=list)
    headers: list = field(default_factory=list)
    wire: bytes | None = None

    @property
    def raw_args(self) -> bytes | None:
        """The args as they were on the wire (computed on demand: only proxies need it)."""
        return _args_span(self.wire) if self.wire is not None else None

    def encode(self, encoder: HeaderEncoder | None = None) -> bytes:
        enc = encoder if encoder is not None else HeaderEncoder()
        args = self.raw_args  # parses the wire bytes: once
        if args is None:
            args = pack(list(self.args))
        return b"\x94" + pack(self.channel) + pack(self.type) + args + enc.encode(self.headers)


def encode_frame(channel: int, typ: int, args: Sequence[Any], headers: Sequence[tuple[str, bytes]] = (),
                 encoder: HeaderEncoder | None = None) -> bytes:
    """Encodes [channel, type, args, headers] as the core does."""
    try:
        body = pack(list(args))
    except (TypeError, OverflowError, ValueError) as e:
        raise TypeError(f"cocaine: cannot encode the arguments {args!r}: {e}") from None
    if not headers:
        hs = b"\x90"
    else:
        hs = (encoder if encoder is not None else HeaderEncoder()).encode(headers)
    return b"\x94" + pack(channel) + pack(typ) + body + hs


class FrameDecoder:
    """Splits a byte stream into frames; feed it bytes as they arrive.

    It owns the receive-side header table of one connection direction, so frames must be
    decoded in stream order, including frames of channels nobody listens to.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.table = HeaderTable()
        self._unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, use_list=True,
                                          max_buffer_size=max_frame_size)
        self.max_frame_size = max_frame_size
        self._buf = bytearray()  # the bytes after the last frame, to keep each frame's args raw
        self._consumed = 0  # stream offset of _buf[0]

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise ProtocolError.frame(f"a frame exceeds the size limit of {self.max_frame_size} bytes") from None
        self._buf += data

    def __iter__(self) -> Iterator[Frame]:
        while True:
            f = self.next()
            if f is None:
                return
            yield f

    def next(self) -> Frame | None:
        """The next complete frame, or None until more bytes are fed."""
        try:
            obj = self._unpacker.unpack()
        except msgpack.OutOfData:
            return None
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as e:
            raise ProtocolError.parse(f"undecodable msgpack: {e}") from None
        end = self._unpacker.tell()
        raw = bytes(self._buf[: end - self._consumed])
        del self._buf[: end - self._consumed]
        self._consumed = end
        return self._frame(obj, raw)

    def _frame(self, obj: Any, raw: bytes) -> Frame:
        if not isinstance(obj, list):
            raise ProtocolError.frame(f"a frame must be an array, got {_kind(obj)}")
        if len(obj) < 3:
            raise ProtocolError.frame(f"a frame has at least 3 elements, got {len(obj)}")
        channel, typ, args = obj[0], obj[1], obj[2]
        if not _is_uint(channel):
            raise ProtocolError.frame(f"the channel id must be a non-negative integer, got {_kind(channel)}")
        if not _is_uint(typ):
            raise ProtocolError.frame(f"the message type must be a non-negative integer, got {_kind(typ)}")
        if not isinstance(args, list):
            raise ProtocolError.frame(f"args must be an array, got {_kind(args)}")
        headers = self.table.decode(obj[3]) if len(obj) >= 4 else []
        return Frame(channel, typ, args, headers, wire=raw)


def _args_span(frame: bytes) -> bytes:
    """The bytes of element 2 of an encoded frame (which has been parsed already)."""
    u = msgpack.Unpacker(raw=True, strict_map_key=False)
    u.feed(frame)
    u.read_array_header()
    u.skip()
    u.skip()
    start = u.tell()
    u.skip()
    return frame[start: u.tell()]


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _kind(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, bytes):
        return "a raw"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a map"
    return type(v).__name__


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)
