"""The codec beyond the golden frames: old-spec output, the header table, protocol errors."""

import unittest

from cocaine import wire
from cocaine.errors import ProtocolError
from cocaine.protocol import Graph, TERMINAL
from tests.test_golden import old_spec_only


class Encoding(unittest.TestCase):
    def test_strings_are_old_spec_raws(self):
        for n, head in ((0, "a0"), (31, "bf"), (32, "da0020"), (255, "da00ff"), (65535, "daffff"), (65536, "db00010000")):
            for v in ("x" * n, b"y" * n):
                with self.subTest(n=n, type=type(v).__name__):
                    b = wire.pack(v)
                    self.assertTrue(b.hex().startswith(head), b[:5].hex())
                    self.assertTrue(old_spec_only(b))

    def test_integers_use_the_smallest_width(self):
        for v, want in ((0, "00"), (127, "7f"), (128, "cc80"), (65535, "cdffff"), (2**32, "cf0000000100000000"),
                        (-1, "ff"), (-33, "d0df"), (2**64 - 1, "cfffffffffffffffff")):
            self.assertEqual(wire.pack(v).hex(), want)

    def test_frames_have_four_elements(self):
        self.assertEqual(wire.encode_frame(3, 0, []).hex(), "9403009090")
        self.assertEqual(wire.encode_frame(1, 0, ["storage"]).hex(), "94010091a773746f7261676590")

    def test_unencodable_args_raise_type_error(self):
        with self.assertRaises(TypeError):
            wire.encode_frame(1, 0, [object()])

    def test_trace_headers(self):
        t = wire.Trace(0x0102030405060708, 0x1112131415161718, 0x2122232425262728)
        hs = t.headers()
        self.assertEqual(hs[0], ("trace_id", bytes.fromhex("0807060504030201")))
        self.assertEqual(wire.Trace.from_headers(hs), t)
        self.assertIsNone(wire.Trace.from_headers(hs[:2]))
        self.assertIsNone(wire.Trace.from_headers(wire.Trace(0, 0, 0).headers()))
        c = t.child()
        self.assertEqual((c.trace_id, c.parent_id), (t.trace_id, t.span_id))


class HeaderTable(unittest.TestCase):
    def test_eviction_keeps_the_newest(self):
        t = wire.HeaderTable()
        for i in range(200):
            t.store(f"h{i:03}", b"v" * 10)
        # each entry weighs 4 + 10 + 32 = 46 bytes: 89 fit in 4096
        self.assertEqual(len(t.dynamic), 89)
        self.assertEqual(t.get(83), ("h199", b"v" * 10))
        with self.assertRaises(ProtocolError):
            t.get(83 + 89)

    def test_an_oversized_entry_empties_the_table(self):
        t = wire.HeaderTable()
        t.store("a", b"b")
        t.store("big", b"x" * 5000)
        self.assertEqual(t.dynamic, [])

    def test_bad_entries_are_hpack_errors(self):
        for entries in ([0], [[True, "a"]], [[1, b"a", b"b"]], [[False, b"a", 5]], [[False, 1.5, b"x"]], [b"x"]):
            with self.subTest(entries=entries), self.assertRaises(ProtocolError) as cm:
                wire.HeaderTable().decode(entries)
            self.assertEqual(cm.exception.kind, (6, 2))


class Decoding(unittest.TestCase):
    def decode(self, data):
        d = wire.FrameDecoder()
        d.feed(data)
        return list(d)

    def test_bad_frames_are_protocol_errors(self):
        for data, kind in ((b"\x05", (6, 1)), (b"\x92\x01\x00", (6, 1)), (b"\x93\xff\x00\x90", (6, 1)),
                           (b"\x93\x01\xc3\x90", (6, 1)), (b"\x93\x01\x00\xa1x", (6, 1)),
                           (b"\x94\x01\x00\x90\x05", (6, 1)), (b"\xc1", (6, 4))):
            with self.subTest(data=data.hex()), self.assertRaises(ProtocolError) as cm:
                self.decode(data)
            self.assertEqual(cm.exception.kind, kind, str(cm.exception))

    def test_a_large_frame_in_pieces(self):
        blob = bytes(range(256)) * 4096
        data = wire.encode_frame(5, 0, [blob])
        d = wire.FrameDecoder()
        got = []
        for i in range(0, len(data), 1000):
            d.feed(data[i:i + 1000])
            got.extend(d)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].args, [blob])

    def test_frame_size_limit(self):
        d = wire.FrameDecoder(max_frame_size=1024)
        with self.assertRaises(ProtocolError):
            d.feed(wire.encode_frame(1, 0, [b"x" * 2000]))


class Graphs(unittest.TestCase):
    def test_decode_a_resolved_graph(self):
        P = {0: [b"value", {}], 1: [b"error", {}]}
        S = {0: [b"write", None], 1: [b"error", {}], 2: [b"close", {}]}
        g = Graph.decode({0: [b"enqueue", S, S], 1: [b"info", {}, P], 65535: [b"revoke", {}, P]})
        self.assertEqual(g.names(), ["enqueue", "info"])
        m = g.method("enqueue")
        self.assertIsNone(m.dispatch.by_id[0][1])
        self.assertIs(m.dispatch.by_id[2][1], TERMINAL)
        self.assertTrue(g.method("info").dispatch.terminal)

    def test_bad_graphs(self):
        for v in ([], {0: [b"x"]}, {b"a": [b"x", {}, {}]}, {0: [b"x", [], {}]}):
            with self.subTest(v=v), self.assertRaises(ProtocolError):
                Graph.decode(v)


if __name__ == "__main__":
    unittest.main()
