"""In-process peers for the tests: a fake node for workers, a fake locator and service
for clients. They speak the wire with the framework's own codec, frame by frame."""

import asyncio

from cocaine import wire

P = {0: [b"value", {}], 1: [b"error", {}]}
S = {0: [b"write", None], 1: [b"error", {}], 2: [b"close", {}]}


class Peer:
    """One accepted connection: read frames, send frames."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.decoder = wire.FrameDecoder()
        self.frames = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        try:
            while data := await self.reader.read(65536):
                self.decoder.feed(data)
                for f in self.decoder:
                    await self.frames.put(f)
        finally:
            await self.frames.put(None)

    async def next(self, timeout=5.0):
        return await asyncio.wait_for(self.frames.get(), timeout)

    def send(self, channel, typ, args=(), headers=()):
        self.writer.write(wire.encode_frame(channel, typ, list(args), list(headers)))

    def close(self):
        self.writer.close()


class Server:
    """Accepts connections on a unix socket or TCP; each becomes a Peer in .peers."""

    def __init__(self):
        self.peers = asyncio.Queue()
        self.server = None
        self.all = []

    async def _accept(self, r, w):
        p = Peer(r, w)
        self.all.append(p)
        await self.peers.put(p)

    async def start_unix(self, path):
        self.server = await asyncio.start_unix_server(self._accept, path)
        return self

    async def start_tcp(self):
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    @property
    def port(self):
        return self.server.sockets[0].getsockname()[1]

    async def peer(self, timeout=5.0):
        return await asyncio.wait_for(self.peers.get(), timeout)

    async def close(self):
        for p in self.all:
            p.close()
            p.task.cancel()
        self.server.close()
        await self.server.wait_closed()
