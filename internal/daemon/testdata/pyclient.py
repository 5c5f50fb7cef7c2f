#!/usr/bin/python3
"""Talks to a cocaine node the way the original Cocaine 0.12 Python framework and
cocaine-tool do on the wire (shared/spec/clients.md §1-2, protocol.md), so the Go tests can
check the daemon against that client's habits:

* msgpack with the pre-1.0 defaults: strings packed as old-spec raw (use_bin_type=False),
  everything decoded as bytes (raw=True), integer map keys allowed (graphs);
* one connection per service, channel ids from 1 (the logger resolves on channel 999999);
* service calls send 4-element frames whose headers are [23] (authorization "", a static
  index, as cocaine-tool on py2) and stored literals [True, name, value] the first time a
  header is seen, then its dynamic index (83 = newest);
* the logger sends 3-element frames;
* the locator's graph is hard-coded, everything else comes from resolve.

Usage: pyclient.py HOST PORT. Prints one line per check and "N passed, N failed".
"""

import socket
import struct
import sys

import msgpack


def pack(obj):
    return msgpack.packb(obj, use_bin_type=False)


class Conn:
    """One connection: a channel counter, a stream unpacker, a receive header table."""

    def __init__(self, host, port, first_channel=1):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, use_list=True)
        self.next_channel = first_channel
        self.sent_table = []  # (name, value) stored on the peer's receive side, newest first
        self.pending = {}

    def close(self):
        self.sock.close()

    def headers(self, extra):
        # authorization "" matches static entry 23 exactly: sent as a bare index.
        out = [23]
        for name, value in extra:
            key = (name, value)
            if key in self.sent_table:
                out.append(83 + self.sent_table.index(key))
            else:
                out.append([True, name, value])
                self.sent_table.insert(0, key)
        return out

    def send(self, channel, msg_type, args, headers=None, three=False):
        frame = [channel, msg_type, args] if three else [channel, msg_type, args, headers or []]
        self.sock.sendall(pack(frame))

    def call(self, msg_type, args, extra=(), three=False):
        ch = self.next_channel
        self.next_channel += 1
        self.send(ch, msg_type, args, self.headers(extra) if not three else None, three)
        return ch

    def recv(self, channel):
        """The next frame for channel (frames for other channels are queued)."""
        if self.pending.get(channel):
            return self.pending[channel].pop(0)
        while True:
            for frame in self.unpacker:
                ch = frame[0]
                if ch == channel:
                    return frame
                self.pending.setdefault(ch, []).append(frame)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed by the server")
            self.unpacker.feed(data)

    def closed_by_peer(self):
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, socket.timeout):
            return True


LOCATOR_RESOLVE = 0


def resolve(host, port, name, channel=1, three=False):
    c = Conn(host, port, channel)
    ch = c.call(LOCATOR_RESOLVE, [name], three=three)
    frame = c.recv(ch)
    c.close()
    return frame


def method_ids(graph):
    return {entry[0].decode(): mid for mid, entry in graph.items()}


checks = []


def check(name, ok, detail=""):
    checks.append(ok)
    print("%s %s %s" % ("ok  " if ok else "FAIL", name, detail))


def main():
    host, port = sys.argv[1], int(sys.argv[2])

    # resolve: [endpoints, version, graph], every header a trace header as the core sends.
    frame = resolve(host, port, "storage")
    check("resolve storage is a 4-element value", len(frame) == 4 and frame[1] == 0, repr(frame[:2]))
    endpoints, version, graph = frame[2]
    check("storage protocol version 1", version == 1)
    ids = method_ids(graph)
    check("storage graph ids", ids.get("read") == 0 and ids.get("write") == 1 and ids.get("remove") == 2
          and ids.get("find") == 3 and ids.get("revoke") == 65535, repr(ids))
    names = [h[1] for h in frame[3]]
    check("reply carries the three trace headers", names == [b"trace_id", b"span_id", b"parent_id"], repr(names))
    check("graph entries are [name, dispatch, upstream]", all(len(e) == 3 for e in graph.values()))

    frame = resolve(host, port, "no-such-service")
    check("unknown service is error [10, 1]", frame[1] == 1 and frame[2][0] == [10, 1]
          and frame[2][1] == b"service is not available", repr(frame[2]))

    # The logger: resolve logging on channel 999999 with a 3-element frame.
    frame = resolve(host, port, "logging", channel=999999, three=True)
    log_endpoints, log_version, log_graph = frame[2]
    check("resolve on channel 999999", frame[0] == 999999 and log_version == 2)
    log_ids = method_ids(log_graph)
    lh, lp = log_endpoints[0]
    log = Conn(lh.decode(), lp)
    ch = log.call(log_ids["verbosity"], [], three=True)
    frame = log.recv(ch)
    check("logging verbosity", frame[1] == 0 and frame[2] == [0], repr(frame[2]))
    for i in range(3):
        log.call(log_ids["emit"], [1, "app/pyclient", "hello %d" % i, [["uuid", "py-uuid"], ["n", i]]], three=True)
    ch = log.call(log_ids["emit_ack"], [2, "app/pyclient", "acked", [["uuid", "py-uuid"]]], three=True)
    frame = log.recv(ch)
    check("emit_ack after mute emits", frame[1] == 0 and frame[2] == [True], repr(frame))
    log.close()

    # cocaine-tool style storage calls, with the authorization and a custom stored header.
    sh, sp = endpoints[0]
    st = Conn(sh.decode(), sp)
    ids = method_ids(graph)
    manifest = pack({"slave": "echo.py"})
    extra = [("x-request-id", "tool-1")]
    ch = st.call(ids["write"], ["manifests", "pyapp", manifest, ["app"]], extra)
    frame = st.recv(ch)
    check("write manifest", frame[1] == 0 and frame[2] == [], repr(frame[:3]))
    ch = st.call(ids["read"], ["manifests", "pyapp"], extra)  # header now by dynamic index 83
    frame = st.recv(ch)
    check("read manifest back", frame[1] == 0 and msgpack.unpackb(frame[2][0], raw=False) == {"slave": "echo.py"})
    ch = st.call(ids["find"], ["manifests", ["app"]])
    frame = st.recv(ch)
    check("find by tag", b"pyapp" in frame[2][0], repr(frame[2]))
    ch = st.call(ids["read"], ["manifests", "missing"])
    frame = st.recv(ch)
    check("missing key is [12, 2]", frame[1] == 1 and frame[2][0] == [12, 2], repr(frame[2]))
    # Runlist commands send writes without waiting; the server must apply them in order.
    chans = [st.call(ids["write"], ["runlists", "default", pack({"pyapp": "p%d" % i}), ["runlist"]]) for i in range(20)]
    for c in chans:
        st.recv(c)
    ch = st.call(ids["read"], ["runlists", "default"])
    frame = st.recv(ch)
    check("pipelined writes applied in order", msgpack.unpackb(frame[2][0], raw=False) == {"pyapp": "p19"})
    ch = st.call(ids["remove"], ["manifests", "pyapp"])
    check("remove", st.recv(ch)[1] == 0)

    # A traced call as the Python client sends it: stored literals with indexed names.
    trace = struct.pack("<Q", 0x0102030405060708)
    span = struct.pack("<Q", 0x1112131415161718)
    parent = struct.pack("<Q", 0)
    c = st.next_channel
    st.next_channel += 1
    st.send(c, ids["find"], ["manifests", ["app"]], [23, [True, 80, trace], [True, 81, span], [True, 82, parent]])
    frame = st.recv(c)
    got = {h[1]: h[2] for h in frame[3]}
    check("trace echoed", got.get(b"trace_id") == trace and got.get(b"span_id") == span, repr(got))
    c = st.next_channel
    st.next_channel += 1
    st.send(c, ids["find"], ["manifests", ["app"]], [23, 85, 84, 83])  # the same trace by index
    frame = st.recv(c)
    got = {h[1]: h[2] for h in frame[3]}
    check("trace by dynamic index echoed", got.get(b"trace_id") == trace, repr(got))

    # A decreasing channel id is fatal to that connection only.
    st.send(1, ids["find"], ["manifests", ["app"]], [])
    check("decreasing channel id closes the connection", st.closed_by_peer())
    st.close()
    frame = resolve(host, port, "storage")
    check("the node still answers", frame[1] == 0)

    # None for an optional argument kills the connection (surprise #3).
    c = Conn(host, port)
    c.call(LOCATOR_RESOLVE, ["storage", None])
    check("nil optional argument closes the connection", c.closed_by_peer())
    c.close()

    failed = checks.count(False)
    print("%d passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
