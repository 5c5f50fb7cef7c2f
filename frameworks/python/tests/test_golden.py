"""The cross-language conformance suite: every golden frame in rpc/testdata/frames is
decoded and re-encoded byte for byte (plain and compressed headers), and its args are
decoded to values and encoded again, as old-spec msgpack."""

import json
import os
import unittest

from cocaine import wire

FRAMES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "rpc", "testdata", "frames")


def load_index():
    with open(os.path.join(FRAMES, "index.json")) as f:
        return json.load(f)


def from_json(v):
    """index.json's rendering of a value back to what the decoder gives: raws as bytes."""
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, list):
        return [from_json(e) for e in v]
    if isinstance(v, dict):
        if set(v) == {"hex"}:
            return bytes.fromhex(v["hex"])
        return {int(k) if k.isdigit() else k.encode(): from_json(e) for k, e in v.items()}
    return v


def decode_all(data, chunk=None):
    d = wire.FrameDecoder()
    out = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        d.feed(data[i:i + step])
        out.extend(d)
    return out


# The type bytes msgpack uses for new-spec strings, binaries and extensions.
NEW_SPEC = {0xd9, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8}


def heads(b):
    """The type byte of every object in the msgpack encoding b, in order."""
    out, i, pending = [], 0, 1
    while pending and i < len(b):
        c = b[i]
        out.append(c)
        pending -= 1
        if c <= 0x7f or c >= 0xe0 or c in (0xc0, 0xc2, 0xc3):
            i += 1
        elif c <= 0x8f:
            pending += 2 * (c & 0x0f); i += 1
        elif c <= 0x9f:
            pending += c & 0x0f; i += 1
        elif c <= 0xbf:
            i += 1 + (c & 0x1f)
        elif c in (0xcc, 0xd0):
            i += 2
        elif c in (0xcd, 0xd1):
            i += 3
        elif c in (0xce, 0xd2, 0xca):
            i += 5
        elif c in (0xcf, 0xd3, 0xcb):
            i += 9
        elif c in (0xd9, 0xc4):
            i += 2 + b[i + 1]
        elif c in (0xda, 0xc5):
            i += 3 + int.from_bytes(b[i + 1:i + 3], "big")
        elif c in (0xdb, 0xc6):
            i += 5 + int.from_bytes(b[i + 1:i + 5], "big")
        elif c in (0xdc, 0xde):
            pending += (2 if c == 0xde else 1) * int.from_bytes(b[i + 1:i + 3], "big"); i += 3
        elif c in (0xdd, 0xdf):
            pending += (2 if c == 0xdf else 1) * int.from_bytes(b[i + 1:i + 5], "big"); i += 5
        else:
            break  # ext: its head byte is recorded, which is what the check looks at
    return out


def old_spec_only(b):
    return not NEW_SPEC.intersection(heads(b))


class GoldenFrames(unittest.TestCase):
    def test_index_is_complete(self):
        index = load_index()
        self.assertGreaterEqual(len(index), 20)
        for g in index:
            self.assertTrue(os.path.exists(os.path.join(FRAMES, g["file"])), g["file"])

    def test_decode_and_reencode(self):
        for g in load_index():
            with self.subTest(g["name"]):
                with open(os.path.join(FRAMES, g["file"]), "rb") as f:
                    data = f.read()
                for chunk in (None, 1, 7):  # whole, byte by byte, in odd pieces
                    frames = decode_all(data, chunk)
                    self.assertEqual(len(frames), len(g["frames"]))
                    for f, w in zip(frames, g["frames"]):
                        self.assertEqual((f.channel, f.type), (w["channel"], w["type"]))
                        self.assertEqual(f.raw_args.hex(), w["args_hex"])
                        self.assertEqual(f.args, from_json(w["args"]))
                        self.assertEqual([(n, v.hex()) for n, v in f.headers],
                                         [(h["name"], h["value_hex"]) for h in w["headers"]])
                for compress, want in ((False, g["canonical"]), (True, g["canonical_compressed"])):
                    enc = wire.HeaderEncoder(compress=compress)
                    out = b"".join(f.encode(enc) for f in frames)
                    self.assertEqual(out.hex(), want, f"compress={compress}")

    def test_checker_sees_new_spec(self):
        self.assertFalse(old_spec_only(bytes.fromhex("92d903616263c4020102")))
        self.assertTrue(old_spec_only(bytes.fromhex("92a3616263a20102")))

    def test_values_reencode_as_old_spec(self):
        """Args decoded to values and packed again: the same bytes, except that str8 and
        bin come out as old-spec raws."""
        for g in load_index():
            for w in g["frames"]:
                with self.subTest(g["name"]):
                    args = wire.unpack(bytes.fromhex(w["args_hex"]))
                    packed = wire.pack(args)
                    self.assertTrue(old_spec_only(packed), packed.hex())
                    if g["name"] == "str8-bin":
                        self.assertEqual(packed.hex(), "92a3616263a20102")
                    else:
                        self.assertEqual(packed.hex(), w["args_hex"])
                    # A frame built from values encodes as the canonical frame does.
                    if len(g["frames"]) == 1 and g["name"] != "str8-bin":
                        hs = [(h["name"], bytes.fromhex(h["value_hex"])) for h in w["headers"]]
                        f = wire.Frame(w["channel"], w["type"], args, hs)
                        self.assertEqual(f.encode().hex(), g["canonical"])
                        self.assertEqual(wire.encode_frame(w["channel"], w["type"], args, hs).hex(), g["canonical"])


if __name__ == "__main__":
    unittest.main()
