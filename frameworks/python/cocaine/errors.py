"""Errors: every one carries a Cocaine (category, code) pair (protocol.md §4.3).

``CocaineError`` is the base. An ``error`` reply from a service is a ``ServiceError``;
a broken wire is a ``ProtocolError`` (the connection is closed); a lost or refused
connection is ``NotConnected``. Timeouts are the builtin ``TimeoutError``; the end of a
stream is ``StreamClosed`` (an ``EOFError``).
"""

from __future__ import annotations

# Category ids: Cocaine's own registry (protocol.md §4.3, plugins.md §0).
SYSTEM = 1
TRANSPORT = 6
DISPATCH = 7
PLUGINS = 8
SECURITY = 9
LOCATOR = 10
UNICORN = 11
GENERIC = 12
PROTOCOL = 13
WORKER = 42  # node plugin: worker (1 = event not found)
WORKER_USER = 43  # node plugin: application-defined codes
NODE = 0x51FF
OVERSEER = 0x52FF
SLAVE = 0x53FF
UNKNOWN = 255

CATEGORY_NAMES = {
    SYSTEM: "system", TRANSPORT: "cocaine.rpc.transport", DISPATCH: "cocaine.rpc.dispatch",
    PLUGINS: "cocaine.plugins", SECURITY: "cocaine security", LOCATOR: "cocaine.service.locator",
    UNICORN: "cocaine.plugins.unicorn", GENERIC: "generic", PROTOCOL: "cocaine.rpc.protocol",
    WORKER: "worker", WORKER_USER: "worker user", NODE: "node", OVERSEER: "node.overseer",
    SLAVE: "node.slave", UNKNOWN: "unknown",
}


class CocaineError(Exception):
    """An error with a Cocaine category and code. ``(category, code)`` is ``err.kind``."""

    def __init__(self, category: int, code: int, message: str = "") -> None:
        super().__init__(message)
        self.category = category
        self.code = code
        self.message = message

    @property
    def kind(self) -> tuple[int, int]:
        return (self.category, self.code)

    def __str__(self) -> str:
        return f"{self.message} [{self.category}:{self.code}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category}, {self.code}, {self.message!r})"


class ServiceError(CocaineError):
    """An ``error`` reply: ``[[category, code], message]`` sent by the service ``service``."""

    def __init__(self, category: int, code: int, message: str = "", service: str = "") -> None:
        super().__init__(category, code, message)
        self.service = service

    def __str__(self) -> str:
        where = f"{self.service}: " if self.service else ""
        return f"{where}{self.message} [{self.category}:{self.code}]"


class ProtocolError(CocaineError):
    """The peer broke the wire protocol; the connection it came on is closed."""

    @classmethod
    def frame(cls, message: str) -> "ProtocolError":
        return cls(TRANSPORT, 1, f"frame format error: {message}")

    @classmethod
    def hpack(cls, message: str) -> "ProtocolError":
        return cls(TRANSPORT, 2, f"hpack error: {message}")

    @classmethod
    def parse(cls, message: str) -> "ProtocolError":
        return cls(TRANSPORT, 4, f"parse error: {message}")


class NotConnected(CocaineError):
    """No connection: it could not be made, or it was lost (dispatch not_connected)."""

    def __init__(self, message: str = "not connected") -> None:
        super().__init__(DISPATCH, 3, message)


class InvalidMessage(CocaineError, ValueError):
    """A message the channel's protocol does not allow now (dispatch slot_not_found),
    refused locally: nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(DISPATCH, 5, message)


class ClosedUpstream(CocaineError):
    """Sending on a direction that is already closed (protocol closed_upstream)."""

    def __init__(self, message: str = "closed upstream") -> None:
        super().__init__(PROTOCOL, 1, message)


class StreamClosed(EOFError):
    """The stream has ended: the peer sent close, or a terminal message was received."""


def message_of(e: BaseException) -> str:
    """An error's text: a CocaineError's message without its [category:code], else str(e)."""
    return e.message if isinstance(e, CocaineError) else str(e)


def decode_error(args: list, service: str = "") -> ServiceError:
    """Builds the error of an ``error`` message's args: ``[[category, code], message?]``."""
    try:
        (category, code), *rest = args
        category, code = int(category), int(code)
    except (TypeError, ValueError):
        return ServiceError(UNKNOWN, 0, f"malformed error message {args!r}", service)
    message = rest[0] if rest else b""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return ServiceError(category, code, str(message), service)
