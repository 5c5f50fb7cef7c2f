#!/usr/bin/python3
"""Uploads an app through the storage service and starts it, with the Python framework's
client: what cocaine-tool's app upload and app start do.

    examples/upload.py [--locator host:port] NAME ARCHIVE SLAVE [PROFILE_JSON]

The archive (a .tar.gz) goes to apps/NAME, the manifest {"slave": SLAVE} to
manifests/NAME, the profile (default {}) to profiles/NAME; then node.start_app(NAME, NAME).
"""

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "frameworks", "python"))

from cocaine import Service  # noqa: E402
from cocaine.wire import pack  # noqa: E402  (old-spec msgpack, as cocaine-tool writes values)


async def main(a):
    with open(a.archive, "rb") as f:
        archive = f.read()
    profile = json.loads(a.profile) if a.profile else {}
    async with Service("storage", a.locator, timeout=60) as st:
        for coll, value, tags in (("apps", archive, ["app"]), ("manifests", {"slave": a.slave}, ["app"]),
                                  ("profiles", profile, ["profile"])):
            await (await st.write(coll, a.name, pack(value), tags)).get()
    async with Service("node", a.locator, timeout=60) as node:
        await (await node.start_app(a.name, a.name)).get()
    print(f"app {a.name} uploaded and started")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--locator", default="127.0.0.1:10053")
    p.add_argument("name")
    p.add_argument("archive")
    p.add_argument("slave")
    p.add_argument("profile", nargs="?")
    asyncio.run(main(p.parse_args()))
