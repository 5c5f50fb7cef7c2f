#!/usr/bin/env python3
"""Independent reference for routing-group rings (protocol.md section 7.5).

Written from the protocol description and the original continuum_t
(cocaine-core src/service/locator/routing.cpp), not from the Go code. Standard
library only. Run it from this directory to regenerate ring_vectors.json:

    python3 ring_vectors.py > ring_vectors.json

The Go test TestRingVectorsRegenerate reruns it and compares byte for byte when
python3 is on PATH.
"""

import hashlib
import json
import math
import struct
import sys


def f32(x):
    """Round a double to the nearest float32, as a C++ float variable holds it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def lround(x):
    """C lround: round half away from zero (x >= 0 here)."""
    f = math.floor(x)
    return int(f) + 1 if x - f >= 0.5 else int(f)


def build(members):
    """Return (ring, steps): ring is [(point, name)] sorted by point then name."""
    names = sorted(members, key=lambda s: s.encode("utf-8"))
    n = len(names)
    total = 0.0
    for name in names:  # boost::accumulate(..., 0.0f): a float accumulator
        total = f32(total + f32(float(members[name])))
    if n == 0 or total < sys.float_info.epsilon:
        raise ValueError("empty group or zero total weight")
    ring = []
    steps = {}
    for name in names:
        slice_ = members[name] / total  # unsigned / double
        k = lround(slice_ * (64 * n))
        steps[name] = k
        for step in range(k):
            digest = hashlib.md5(name.encode("utf-8") + struct.pack("<Q", step)).digest()
            for point in struct.unpack("<4I", digest):
                ring.append((point, name))
    ring.sort(key=lambda e: (e[0], e[1].encode("utf-8")))
    return ring, steps


def seed_point(seed):
    words = struct.unpack("<4I", hashlib.md5(seed.encode("utf-8")).digest())
    return words[0] ^ words[1] ^ words[2] ^ words[3]


def lookup(ring, point):
    """The first element strictly above point, wrapping to the first element."""
    lo, hi = 0, len(ring)
    while lo < hi:
        mid = (lo + hi) // 2
        if ring[mid][0] > point:
            hi = mid
        else:
            lo = mid + 1
    return ring[lo % len(ring)][1] if lo < len(ring) else ring[0][1]


def ring_sha256(ring):
    h = hashlib.sha256()
    for point, name in ring:
        h.update(b"%d " % point + name.encode("utf-8") + b"\n")
    return h.hexdigest()


SEEDS = (
    ["", "a", "b", "0", "user@example.com", "127.0.0.1", "Ünïcødé-ключ", "\u0000",
     "x" * 1000, "seed with spaces", "ECHO", "echo"]
    + ["seed-%d" % i for i in range(38)]
)

GROUPS = [
    # (group name, members, include the full ring)
    ("single", {"echo": 1}, True),
    ("pair-equal", {"echo-v1": 5, "echo-v2": 5}, True),
    ("weights-1-2-7", {"svc-a": 1, "svc-b": 2, "svc-c": 7}, True),
    # w/total*64n lands exactly on .5: lround goes away from zero (1 and 128; 3, 1, 189),
    # where round-half-even would give 0 and 2.
    ("half-2", {"heavy": 255, "light": 1}, False),
    ("half-3", {"a": 5, "b": 1, "c": 378}, False),
    ("ten", {"node-%02d" % i: 1 for i in range(10)}, False),
    ("ten-weighted", {"node-%02d" % i: i + 1 for i in range(10)}, False),
    # The float32 total changes a step count: b gets 115 points, not 116 as a double sum gives.
    ("float32-total", {"a": 136518892, "b": 1261434722}, False),
    # A member too light for a single point, and a member of weight 0: neither is on the ring.
    ("too-light", {"big": 1000000, "tiny": 1}, False),
    ("zero-member", {"live": 3, "zero": 0}, False),
]


def group_vectors(name, members, full):
    ring, steps = build(members)
    g = {
        "name": name,
        "members": members,
        "steps": steps,
        "points": len(ring),
        "ring_sha256": ring_sha256(ring),
        "seeds": [],
        "at": [],
    }
    if full:
        g["ring"] = [[p, m] for p, m in ring]
    for seed in SEEDS:
        p = seed_point(seed)
        # An empty seed picks at random; only its point is fixed.
        g["seeds"].append({"seed": seed, "point": p, "member": None if seed == "" else lookup(ring, p)})
    probes = {0, 2**32 - 1, ring[0][0], ring[-1][0]}
    for p, _ in ring[:8] + ring[-8:]:
        probes.update({p, max(p - 1, 0), min(p + 1, 2**32 - 1)})
    for p in sorted(probes):
        g["at"].append({"point": p, "member": lookup(ring, p)})
    return g


def dump(v, indent=0):
    """JSON with every object or list of scalars on one line, so the file diffs well."""
    def flat(x):
        if isinstance(x, dict):
            return all(not isinstance(y, (dict, list)) for y in x.values())
        if isinstance(x, list):
            return all(not isinstance(y, (dict, list)) for y in x)
        return True

    if flat(v):
        return json.dumps(v, sort_keys=True, ensure_ascii=True)
    pad = " " * indent
    if isinstance(v, dict):
        items = [pad + " " + json.dumps(k) + ": " + dump(v[k], indent + 1) for k in sorted(v)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [pad + " " + dump(x, indent + 1) for x in v]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def main():
    out = {
        "comment": "generated by ring_vectors.py from protocol.md section 7.5; do not edit",
        "groups": [group_vectors(n, m, f) for n, m, f in GROUPS],
    }
    sys.stdout.write(dump(out) + "\n")


if __name__ == "__main__":
    main()
