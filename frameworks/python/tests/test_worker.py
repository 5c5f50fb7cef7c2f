"""The worker against a fake node on a unix socket: handshake, heartbeats, events,
errors, terminate."""

import asyncio
import os
import tempfile
import unittest

from cocaine import errors
from cocaine.errors import NotConnected, ServiceError
from cocaine.worker import BadArguments, Disowned, Worker, parse_args
from tests.fakes import Server


def args(endpoint, **over):
    a = {"app": "echo", "endpoint": endpoint, "locator": "127.0.0.1:1", "protocol": "1", "uuid": "u-1"}
    a.update(over)
    out = []
    for k, v in a.items():
        out += [f"--{k}", v]
    return out


class ParseArgs(unittest.TestCase):
    def test_standard_arguments(self):
        a = parse_args(["--app", "echo", "--endpoint", "/run/echo.1", "--locator", "127.0.0.1:10053,[::1]:10054",
                        "--protocol", "1", "--uuid", "abc"])
        self.assertEqual((a.app, a.uuid, a.endpoint, a.protocol), ("echo", "abc", "/run/echo.1", 1))
        self.assertEqual(a.locator, [("127.0.0.1", 10053), ("::1", 10054)])
        b = parse_args(["--uuid=abc", "--protocol=1", "--endpoint=/e"])
        self.assertEqual((b.app, b.locator), ("app/standalone", [("127.0.0.1", 10053)]))

    def test_every_problem_is_named(self):
        with self.assertRaises(BadArguments) as cm:
            parse_args(["--protocol", "0", "--bogus", "x", "--locator", "nope"])
        msg = str(cm.exception)
        for part in ("--uuid is required", "--endpoint is required", "unsupported protocol version 0",
                     "unknown argument --bogus", "--locator"):
            self.assertIn(part, msg)


class WorkerTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "node.sock")
        self.node = await Server().start_unix(self.path)

    async def asyncTearDown(self):
        await self.node.close()
        self.dir.cleanup()

    def worker(self, **kw):
        kw.setdefault("heartbeat_interval", 0.05)
        kw.setdefault("disown_timeout", 1.0)
        w = Worker(args(self.path), **kw)

        @w.on("echo")
        async def echo(req, resp):
            async for chunk in req:
                await resp.write(chunk)

        @w.on("ping")
        async def ping(req, resp):
            body = await req.read_all()
            await resp.write(b"pong:" + body)

        @w.on("boom")
        async def boom(req, resp):
            raise RuntimeError("kaboom")

        @w.on("fail")
        async def fail(req, resp):
            await resp.error(7, "user says no", errors.WORKER_USER)

        @w.on("headers")
        async def headers(req, resp):
            await resp.write(repr((req.header("x-custom"), req.trace)).encode())

        @w.on("client-error")
        async def client_error(req, resp):
            try:
                await req.read()
            except ServiceError as e:
                await resp.write(f"{e.category}:{e.code}:{e.message}".encode())

        return w

    async def handshake(self, node):
        f = await node.next()
        self.assertEqual((f.channel, f.type, f.args), (1, 0, [b"u-1"]))
        f = await node.next()
        self.assertEqual((f.channel, f.type, f.args), (1, 0, []))  # the first heartbeat
        node.send(1, 0)

    async def replies(self, node, channel):
        out = []
        while True:
            f = await node.next()
            if f.channel == 1:
                node.send(1, 0)  # echo heartbeats while waiting
                continue
            self.assertEqual(f.channel, channel)
            out.append((f.type, f.args))
            if f.type != 0:
                return out

    async def test_events_and_terminate(self):
        w = self.worker()
        serving = asyncio.create_task(w.serve())
        node = await self.node.peer()
        await self.handshake(node)

        node.send(2, 0, ["echo"])
        for chunk in (b"one", b"two"):
            node.send(2, 0, [chunk])
            self.assertEqual((await self.replies_one(node)), (0, [chunk]))
        node.send(2, 2)
        self.assertEqual(await self.replies(node, 2), [(2, [])])

        node.send(3, 0, ["ping"])
        node.send(3, 0, [b"a"])
        node.send(3, 0, [b"b"])
        node.send(3, 2)
        self.assertEqual(await self.replies(node, 3), [(0, [b"pong:ab"]), (2, [])])

        node.send(5, 0, ["nope"])  # ids may skip
        self.assertEqual(await self.replies(node, 5), [(1, [[42, 1], b"there is no handler for an event 'nope'"])])

        node.send(6, 0, ["boom"])
        node.send(6, 2)
        (typ, a), = await self.replies(node, 6)
        self.assertEqual((typ, a[0]), (1, [42, 100]))
        self.assertIn(b"kaboom", a[1])

        node.send(7, 0, ["fail"])
        self.assertEqual(await self.replies(node, 7), [(1, [[43, 7], b"user says no"])])

        tr = [("trace_id", (9).to_bytes(8, "little")), ("span_id", (8).to_bytes(8, "little")),
              ("parent_id", bytes(8)), ("x-custom", b"v1")]
        node.send(8, 0, ["headers"], tr)
        r = await self.replies(node, 8)
        self.assertEqual(r[0][1], [b"(b'v1', Trace(trace_id=9, span_id=8, parent_id=0))"])

        node.send(9, 0, ["client-error"])
        node.send(9, 1, [[43, 5], "client gave up"])
        self.assertEqual(await self.replies(node, 9), [(0, [b"43:5:client gave up"]), (2, [])])

        node.send(1, 1, [14, "slave is sealing"])
        while True:
            f = await node.next()
            if f.type == 1:
                break
        self.assertEqual((f.channel, f.args), (1, [14, b"slave is sealing"]))  # the echo
        await asyncio.wait_for(serving, 5)
        self.assertIsNone(await node.next())  # and the worker closed its connection

    async def replies_one(self, node):
        while True:
            f = await node.next()
            if f.channel == 1:
                node.send(1, 0)
                continue
            return (f.type, f.args)

    async def test_terminate_waits_for_running_handlers(self):
        w = self.worker(terminate_grace=5.0)
        release = asyncio.Event()

        @w.on("slow")
        async def slow(req, resp):
            await release.wait()
            await resp.write(b"done")

        serving = asyncio.create_task(w.serve())
        node = await self.node.peer()
        await self.handshake(node)
        node.send(2, 0, ["slow"])
        node.send(2, 2)
        await asyncio.sleep(0.05)
        node.send(1, 1, [11, "overseer is shutting down"])
        await asyncio.sleep(0.1)
        self.assertFalse(serving.done())
        release.set()
        got = []
        while (f := await node.next()) is not None:
            got.append((f.channel, f.type, f.args))
        await asyncio.wait_for(serving, 5)
        self.assertIn((2, 0, [b"done"]), got)
        self.assertEqual(got[-1], (1, 1, [11, b"overseer is shutting down"]))

    async def test_disowned(self):
        w = self.worker(disown_timeout=0.2)
        serving = asyncio.create_task(w.serve())
        await self.node.peer()  # never echoes
        with self.assertRaises(Disowned):
            await asyncio.wait_for(serving, 5)

    async def test_node_gone(self):
        w = self.worker()
        serving = asyncio.create_task(w.serve())
        node = await self.node.peer()
        await self.handshake(node)
        node.close()
        with self.assertRaises(NotConnected):
            await asyncio.wait_for(serving, 5)

    async def test_stop_tells_the_node(self):
        w = self.worker()
        serving = asyncio.create_task(w.serve())
        node = await self.node.peer()
        await self.handshake(node)
        w.stop()
        while True:
            f = await node.next()
            if f.type == 1:
                break
        self.assertEqual((f.channel, f.args), (1, [0, b"worker stopped"]))
        await asyncio.wait_for(serving, 5)

    async def test_no_socket(self):
        w = Worker(args(os.path.join(self.dir.name, "missing.sock")))
        with self.assertRaises(NotConnected) as cm:
            await w.serve()
        self.assertIn("missing.sock", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
