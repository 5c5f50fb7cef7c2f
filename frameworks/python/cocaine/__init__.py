"""The Python framework for Cocaine apps: a client and a worker on asyncio.

The client resolves services through the locator and calls their methods by name, from
the graph the locator returns (no generated code); the worker runs under the node and
serves events with ``async def handler(request, response)``. Both speak the same wire as
the Go framework: old-spec msgpack frames, the header table, trace headers.
"""

from .client import Channel, Locator, Message, Service, ServiceInfo
from .errors import (ClosedUpstream, CocaineError, InvalidMessage, NotConnected, ProtocolError, ServiceError,
                     StreamClosed)
from .logger import Logger
from .wire import Trace
from .worker import Request, Response, Worker, parse_args

__all__ = [
    "Channel", "ClosedUpstream", "CocaineError", "InvalidMessage", "Locator", "Logger", "Message",
    "NotConnected", "ProtocolError", "Request", "Response", "Service", "ServiceError", "ServiceInfo",
    "StreamClosed", "Trace", "Worker", "parse_args",
]
__version__ = "0.1.0"
