"""The client against a fake locator and a fake service over TCP: resolve, methods by
name from the graph, primitive and streaming replies, errors, headers, timeouts, a lost
connection, and the logger."""

import asyncio
import unittest

from cocaine import Locator, Logger, Service, Trace
from cocaine.errors import ClosedUpstream, InvalidMessage, NotConnected, ServiceError, StreamClosed
from tests.fakes import P, S, Server

APP_GRAPH = {0: [b"enqueue", S, S], 1: [b"info", {}, P], 2: [b"control", S, {}],
             65533: [b"ping", {}, P]}


class ClientTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.locator = await Server().start_tcp()
        self.service = await Server().start_tcp()
        self.resolves = []
        self.loc_task = asyncio.create_task(self.serve_locator())

    async def asyncTearDown(self):
        self.loc_task.cancel()
        await self.locator.close()
        await self.service.close()

    async def serve_locator(self):
        while True:
            peer = await self.locator.peer(timeout=None)
            asyncio.create_task(self.locator_conn(peer))

    async def locator_conn(self, peer):
        while (f := await peer.next(timeout=None)) is not None:
            self.assertEqual(f.type, 0)
            self.resolves.append(f.args)
            name = f.args[0]
            if name == b"app":
                peer.send(f.channel, 0, [[["127.0.0.1", self.service.port]], 1, APP_GRAPH])
            elif name == b"logging":
                peer.send(f.channel, 0, [[["127.0.0.1", self.service.port]], 2,
                                         {0: [b"emit", {}, {}], 1: [b"verbosity", {}, P]}])
            elif name == b"down":
                peer.send(f.channel, 0, [[["127.0.0.1", 1]], 1, APP_GRAPH])
            else:
                peer.send(f.channel, 1, [[10, 1], "service is not available"])

    def loc(self):
        return [f"127.0.0.1:{self.locator.port}"]

    async def test_streaming_call(self):
        svc = Service("app", self.loc(), timeout=5)
        self.assertEqual(svc.name, "app")
        tr = Trace(0x1122334455667788, 77, 5)
        ch = await svc.enqueue("echo", headers={"x-custom": "v1"}, trace=tr)
        self.assertEqual(svc.methods(), ["enqueue", "info", "control"])
        peer = await self.service.peer()
        f = await peer.next()
        self.assertEqual((f.channel, f.type, f.args), (1, 0, [b"echo"]))
        self.assertEqual(Trace.from_headers(f.headers), tr)
        self.assertIn(("x-custom", b"v1"), f.headers)
        await ch.write(b"hello")
        f = await peer.next()
        self.assertEqual((f.channel, f.type, f.args), (1, 0, [b"hello"]))
        self.assertEqual(Trace.from_headers(f.headers), tr)  # the trace goes on every frame
        await ch.close()
        self.assertEqual((await peer.next()).type, 2)
        with self.assertRaises(ClosedUpstream):
            await ch.write(b"late")
        peer.send(1, 0, [b"hel"])
        peer.send(1, 0, [b"lo"])
        peer.send(1, 2)
        self.assertEqual(await ch.read_all(), b"hello")
        with self.assertRaises(StreamClosed):
            await ch.get()

        # A second channel on the same connection: ids go up.
        ch2 = await svc.call("enqueue", "ping")
        self.assertEqual(ch2.id, 2)
        peer.send(2, 0, [b"a"])
        peer.send(2, 1, [[42, 1], "there is no handler"])
        self.assertEqual(await ch2.get(), b"a")
        with self.assertRaises(ServiceError) as cm:
            await ch2.get()
        self.assertEqual((cm.exception.category, cm.exception.code, cm.exception.service), (42, 1, "app"))
        self.assertIn("there is no handler", str(cm.exception))
        await svc.close()

    async def test_primitive_call_and_async_for(self):
        async with Service("app", self.loc(), timeout=5) as svc:
            ch = await svc.info()
            peer = await self.service.peer()
            f = await peer.next()
            self.assertEqual((f.type, f.args), (1, []))
            peer.send(f.channel, 0, [{b"state": b"running"}])
            self.assertEqual(await ch.get(), {b"state": b"running"})
            with self.assertRaises(StreamClosed):
                await ch.get()
            with self.assertRaises(ClosedUpstream):
                await ch.send("write", b"x")

            ch = await svc.enqueue("x")
            await peer.next()
            for c in (b"1", b"2", b"3"):
                peer.send(ch.id, 0, [c])
            peer.send(ch.id, 2)
            self.assertEqual([c async for c in ch], [b"1", b"2", b"3"])
            with self.assertRaises(InvalidMessage):
                await ch.send("nope")

    async def test_unknown_method_and_service(self):
        svc = Service("app", self.loc(), timeout=5)
        with self.assertRaises(AttributeError) as cm:
            await svc.call("frobnicate")
        self.assertIn("enqueue, info, control", str(cm.exception))
        await svc.close()
        with self.assertRaises(ServiceError) as cm:
            await Service("nope", self.loc(), timeout=5).connect()
        self.assertEqual(cm.exception.kind, (10, 1))
        with self.assertRaises(NotConnected) as cm:
            await Service("down", self.loc(), timeout=5).connect()
        self.assertIn("127.0.0.1:1", str(cm.exception))
        with self.assertRaises(NotConnected):
            await Service("app", ["127.0.0.1:1"], timeout=5).connect()

    async def test_resolve_with_seed(self):
        async with Locator(self.loc(), timeout=5) as loc:
            info = await loc.resolve("app", seed="s")
            self.assertEqual(info.version, 1)
            self.assertEqual(info.endpoints, [("127.0.0.1", self.service.port)])
            await loc.resolve("app")
        self.assertEqual(self.resolves, [[b"app", b"s"], [b"app"]])  # no nil for an absent seed

    async def test_timeouts(self):
        svc = Service("app", self.loc(), timeout=0.2)
        ch = await svc.enqueue("x")
        await self.service.peer()
        with self.assertRaises(TimeoutError) as cm:
            await ch.get()
        self.assertIn("app.enqueue", str(cm.exception))
        with self.assertRaises(TimeoutError):
            await ch.get(timeout=0.05)
        await svc.close()
        # A locator that accepts and never answers.
        silent = await Server().start_tcp()
        try:
            with self.assertRaises(TimeoutError):
                await Service("app", [f"127.0.0.1:{silent.port}"], timeout=0.2).connect()
        finally:
            await silent.close()

    async def test_lost_connection_and_reconnect(self):
        svc = Service("app", self.loc(), timeout=5)
        ch = await svc.enqueue("x")
        peer = await self.service.peer()
        await peer.next()
        peer.close()
        with self.assertRaises(NotConnected):
            await ch.get()
        ch = await svc.enqueue("y")  # resolves and connects again
        peer = await self.service.peer()
        f = await peer.next()
        self.assertEqual((f.channel, f.args), (1, [b"y"]))
        await svc.close()

    async def test_protocol_violation_closes_the_connection(self):
        svc = Service("app", self.loc(), timeout=5)
        ch = await svc.enqueue("x")
        peer = await self.service.peer()
        await peer.next()
        peer.writer.write(b"\x05")  # not a frame
        with self.assertRaises(NotConnected) as cm:
            await ch.get()
        self.assertIn("frame format error", str(cm.exception))
        await svc.close()

    async def test_logger(self):
        log = Logger("echo", "u-1", self.loc(), timeout=5)
        log.info("hello", n=1, obj=[1])
        peer = await self.service.peer()
        f = await peer.next()
        self.assertEqual((f.type, f.args), (0, [1, b"app/echo", b"hello", [[b"n", 1], [b"obj", b"[1]"], [b"uuid", b"u-1"]]]))
        log.error("second")
        f = await peer.next()
        self.assertEqual(f.args[:3], [3, b"app/echo", b"second"])
        v = asyncio.create_task(log.verbosity())
        f = await peer.next()
        peer.send(f.channel, 0, [1])
        self.assertEqual(await v, 1)
        await log.close()


if __name__ == "__main__":
    unittest.main()
