"""The logging service from inside an app (protocol.md §6.2).

Each record is ``emit [level, "app/<app>", message, [[key, value], ...]]`` on a new
channel of the ``logging`` service, resolved through the locator, with the worker's uuid
among the attributes, as the original framework sends it. ``emit`` is mute: nothing comes
back, so logging never waits on the service. Records wait in a bounded queue while the
service is being reached; if it cannot be reached they go to stderr instead.

::

    worker.logger.info("started", port=8080)
    logging.getLogger().addHandler(worker.logger.handler())   # the stdlib's logging too
"""

from __future__ import annotations

import asyncio
import logging as stdlog
import sys
from collections import deque
from typing import Any, Sequence

from .client import Service

DEBUG, INFO, WARNING, ERROR = 0, 1, 2, 3
_NAMES = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error"}
QUEUE_LIMIT = 10000  # records waiting for the service; older ones are dropped past it


class Logger:
    def __init__(self, app: str, uuid: str = "", locator: Sequence[Any] | None = None, *,
                 timeout: float = 5.0) -> None:
        self.source = app if app.startswith("app/") else f"app/{app}"
        self.uuid = uuid
        self._locator = locator
        self._timeout = timeout
        self._queue: deque[list] = deque()
        self._dropped = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._service: Service | None = None

    def emit(self, level: int, message: str, **attributes: Any) -> None:
        """Queues one record; it is sent from the running event loop."""
        attrs = [[k, _attr(v)] for k, v in attributes.items()]
        if self.uuid:
            attrs.append(["uuid", self.uuid])
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append([int(level), self.source, str(message), attrs])
        self._kick()

    def debug(self, message: str, **attributes: Any) -> None:
        self.emit(DEBUG, message, **attributes)

    def info(self, message: str, **attributes: Any) -> None:
        self.emit(INFO, message, **attributes)

    def warning(self, message: str, **attributes: Any) -> None:
        self.emit(WARNING, message, **attributes)

    def error(self, message: str, **attributes: Any) -> None:
        self.emit(ERROR, message, **attributes)

    async def verbosity(self) -> int:
        """The service's verbosity: records below it are dropped by the service."""
        ch = await (await self._connect()).call("verbosity")
        return int(await ch.get())

    async def flush(self, timeout: float = 5.0) -> None:
        """Waits until the queued records are sent (or given to stderr)."""
        self._kick()
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queue and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Sends what is queued (for up to a second) and disconnects."""
        if self._queue:
            await self.flush(1.0)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._service is not None:
            await self._service.close()
            self._service = None

    def handler(self, level: int = stdlog.NOTSET) -> stdlog.Handler:
        """A handler for the stdlib's logging that sends records here."""
        return _Handler(self, level)

    def _kick(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the records wait for the first call made from one
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._send(), name="cocaine logger")

    async def _connect(self) -> Service:
        if self._service is None:
            self._service = Service("logging", self._locator, timeout=self._timeout)
        await self._service.connect()
        return self._service

    async def _send(self) -> None:
        while True:
            while self._queue:
                rec = self._queue[0]
                try:
                    svc = await self._connect()
                    await svc.call("emit", *rec)
                except Exception as e:  # the service is unreachable: stderr keeps the record
                    for r in self._queue:
                        print(f"[{_NAMES.get(r[0], r[0])}] {r[1]}: {r[2]} {r[3]} (logging unavailable: {e})",
                              file=sys.stderr, flush=True)
                    self._queue.clear()
                    break
                self._queue.popleft()
            if self._dropped:
                n, self._dropped = self._dropped, 0
                print(f"cocaine logger: dropped {n} records", file=sys.stderr, flush=True)
            self._wake.clear()
            await self._wake.wait()


def _attr(v: Any) -> Any:
    """Attribute values must be raw, integer, float or bool: nil is fatal to the service."""
    if isinstance(v, (bool, int, float, str, bytes)):
        return v
    return str(v)


class _Handler(stdlog.Handler):
    def __init__(self, logger: Logger, level: int) -> None:
        super().__init__(level)
        self._logger = logger

    def emit(self, record: stdlog.LogRecord) -> None:
        lvl = ERROR if record.levelno >= stdlog.ERROR else WARNING if record.levelno >= stdlog.WARNING else \
            INFO if record.levelno >= stdlog.INFO else DEBUG
        try:
            self._logger.emit(lvl, self.format(record), logger=record.name)
        except Exception:
            self.handleError(record)
