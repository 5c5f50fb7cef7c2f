#!/usr/bin/python3
"""A Python framework client for the cross-language tests (frameworks_test.go).

    client.py LOCATOR exchange APP [fail]   ping, streaming both ways, errors, trace
    client.py LOCATOR kill APP              mid-request, waits for a line on stdin (the
                                            test kills the worker then), expects an error

It prints what it checked and exits 1 with the reason on the first mismatch.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "frameworks", "python"))

from cocaine import Service, ServiceError, StreamClosed, Trace  # noqa: E402
from cocaine.errors import CocaineError  # noqa: E402


def check(cond, what):
    if not cond:
        raise SystemExit(f"client.py: {what}")


async def exchange(loc, app, with_fail):
    # Primitive calls on services of the daemon, from the graphs the locator sends.
    async with Service("node", loc, timeout=20) as node:
        apps = await (await node.list()).get()
        check(app.encode() in apps, f"node.list: {apps}")
        try:
            await (await node.info("no-such-app")).get()
            check(False, "node.info of an unknown app succeeded")
        except ServiceError as e:
            check(e.category == 12, f"node.info of an unknown app: {e!r}")
    async with Service(app, loc, timeout=20) as svc:
        check(svc.methods()[:3] == ["enqueue", "info", "control"], f"methods {svc.methods()}")
        info = await (await svc.info()).get()
        check(isinstance(info, dict) and b"pool" in info, f"{app}.info: {info!r}")
        # One request read whole, with a trace: the reply carries the request's trace.
        tr = Trace(0x0102030405060708, 0x1112, 0)
        ch = await svc.enqueue("ping", trace=tr, headers={"x-test": "1"})
        await ch.write(b"hello, ")
        await ch.write("cocaine")
        await ch.close()
        m = await ch.recv()
        check((m.name, m.payload) == ("write", b"hello, cocaine"), f"ping: {m}")
        check(Trace.from_headers(m.headers) == tr, f"ping reply headers {m.headers}")
        m = await ch.recv()
        check(m.name == "close", f"after ping: {m}")
        print(f"{app}: ping with trace ok", flush=True)

        # Streaming both ways: each chunk comes back before the next is sent.
        ch = await svc.enqueue("echo")
        for chunk in (b"one", b"two", b"three"):
            await ch.write(chunk)
            got = await ch.get()
            check(got == chunk, f"echo: sent {chunk!r}, got {got!r}")
        await ch.close()
        try:
            await ch.get()
            check(False, "echo: no close")
        except StreamClosed:
            pass
        # Many chunks in flight at once, read as they come.
        ch = await svc.enqueue("echo")
        sent = [bytes([i]) * 16384 for i in range(40)]

        async def writer():
            for c in sent:
                await ch.write(c)
            await ch.close()

        w = asyncio.create_task(writer())
        got = await ch.read_all()
        await w
        check(got == b"".join(sent), f"echo stream: {len(got)} bytes back, sent {sum(map(len, sent))}")
        print(f"{app}: streaming both ways ok", flush=True)

        # Errors carried across: the framework's (no handler), and the app's own.
        ch = await svc.enqueue("nope")
        await ch.close()
        try:
            await ch.get()
            check(False, "nope: no error")
        except ServiceError as e:
            check(e.kind == (42, 1), f"nope: {e!r}")
        if with_fail:
            ch = await svc.enqueue("fail")
            await ch.write(b"bad input")
            await ch.close()
            try:
                await ch.get()
                check(False, "fail: no error")
            except ServiceError as e:
                check(e.kind == (43, 1) and e.message == "failed on request: bad input", f"fail: {e!r}")
        print(f"{app}: errors ok", flush=True)


async def kill(loc, app):
    async with Service(app, loc, timeout=20) as svc:
        ch = await svc.enqueue("echo")
        await ch.write(b"x")
        check(await ch.get() == b"x", "kill: no echo")
        print("MIDREQUEST", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        try:
            got = await ch.get()
            check(False, f"kill: got {got!r} after the worker was killed")
        except CocaineError as e:
            print(f"{app}: killed mid-request: {e.category} {e.code} {e.message}", flush=True)


def main():
    loc, scenario, app = sys.argv[1], sys.argv[2], sys.argv[3]
    if scenario == "exchange":
        asyncio.run(exchange(loc, app, "fail" in sys.argv[4:]))
    elif scenario == "kill":
        asyncio.run(kill(loc, app))
    else:
        raise SystemExit(f"client.py: unknown scenario {scenario}")


if __name__ == "__main__":
    main()
