"""Dispatch graphs (protocol.md §3): the protocol description a service sends at run time.

::

    graph_root = {method_id: [name, dispatch, upstream]}   3-tuples
    graph_node = {message_id: [name, next]}                2-tuples
    next       = nil   stay in the same state (more write chunks)
               | {}    terminal: nothing more in this direction
               | {..}  move to that state

A :class:`State` is one direction's protocol state; ``None`` as a next state means
"stay", and a state without messages is terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError


class State:
    """One protocol state: the messages allowed in it and where each leads."""

    __slots__ = ("by_id", "by_name")

    def __init__(self, transitions: dict[int, tuple[str, "State | None"]] | None = None) -> None:
        self.by_id: dict[int, tuple[str, State | None]] = dict(transitions or {})
        self.by_name: dict[str, int] = {name: i for i, (name, _) in self.by_id.items()}

    @property
    def terminal(self) -> bool:
        return not self.by_id

    def names(self) -> list[str]:
        return [self.by_id[i][0] for i in sorted(self.by_id)]

    def __repr__(self) -> str:
        return "State({%s})" % ", ".join(f"{i}: {n!r}" for i, (n, _) in sorted(self.by_id.items()))


TERMINAL = State()
PRIMITIVE = State({0: ("value", TERMINAL), 1: ("error", TERMINAL)})
STREAMING = State({0: ("write", None), 1: ("error", TERMINAL), 2: ("close", TERMINAL)})
CONTROL_IDS = range(65532, 65536)  # goaway, ping, settings, revoke (§3.6)


@dataclass(frozen=True)
class Method:
    id: int
    name: str
    dispatch: State | None  # what the caller may send after the call; None: the method's own protocol
    upstream: State  # what the service sends back


class Graph:
    """A service's root protocol: its methods by id and by name."""

    def __init__(self, methods: list[Method]) -> None:
        self.by_id = {m.id: m for m in methods}
        self.by_name = {m.name: m for m in methods}

    def method(self, name: str) -> Method | None:
        return self.by_name.get(name)

    def names(self, control: bool = False) -> list[str]:
        """Method names in id order, without the control methods unless asked."""
        return [self.by_id[i].name for i in sorted(self.by_id) if control or i not in CONTROL_IDS]

    @classmethod
    def decode(cls, value: Any) -> "Graph":
        """Reads a graph_root as msgpack decodes it (int keys, raw names)."""
        if not isinstance(value, dict):
            raise ProtocolError.frame(f"a graph must be a map, got {type(value).__name__}")
        methods = []
        for key, entry in value.items():
            if not isinstance(key, int) or not isinstance(entry, list) or len(entry) < 3:
                raise ProtocolError.frame(f"a root graph entry is id: [name, dispatch, upstream], got {key!r}: {entry!r}")
            upstream = _state(entry[2])
            methods.append(Method(key, _name(entry[0]), _state(entry[1]), upstream if upstream is not None else TERMINAL))
        return cls(methods)


def _name(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, str):
        return v
    raise ProtocolError.frame(f"a message name must be a raw, got {v!r}")


def _state(v: Any, depth: int = 0) -> State | None:
    if v is None:
        return None
    if depth > 32:
        raise ProtocolError.frame("the graph nests too deep")
    if not isinstance(v, dict):
        raise ProtocolError.frame(f"a protocol state must be nil or a map, got {v!r}")
    if not v:
        return TERMINAL
    ts = {}
    for key, entry in v.items():
        if not isinstance(key, int) or not isinstance(entry, list) or len(entry) < 2:
            raise ProtocolError.frame(f"a graph entry is id: [name, next], got {key!r}: {entry!r}")
        ts[key] = (_name(entry[0]), _state(entry[1], depth + 1))
    return State(ts)


# The locator's graph, which clients know without resolving it (protocol.md §3.5).
def _control() -> dict[int, tuple[str, State | None]]:
    return {65532: ("goaway", TERMINAL), 65533: ("ping", TERMINAL), 65534: ("settings", TERMINAL),
            65535: ("revoke", TERMINAL)}


_discard = State({0: ("discard", TERMINAL), **_control()})
LOCATOR_GRAPH = Graph([
    Method(0, "resolve", TERMINAL, PRIMITIVE),
    Method(1, "connect", TERMINAL, STREAMING),
    Method(2, "refresh", TERMINAL, PRIMITIVE),
    Method(3, "cluster", TERMINAL, PRIMITIVE),
    Method(4, "publish", _discard, PRIMITIVE),
    Method(5, "routing", _discard, STREAMING),
    Method(6, "uuid", TERMINAL, PRIMITIVE),
])
