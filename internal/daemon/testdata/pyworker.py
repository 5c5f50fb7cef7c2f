#!/usr/bin/python3
# A worker that speaks the node's worker protocol the way the original Python framework
# (cocaine-framework-python 0.12, cocaine/worker/worker.py) does on the wire: 3-element
# frames without headers, old-spec raw strings (use_bin_type=False), the handshake and
# the first heartbeat right after connecting, and it echoes the node's terminate. It
# serves one event, "upper", answering the request's chunks upper-cased in one chunk.
import socket
import sys

import msgpack


def arg(name):
    i = sys.argv.index("--" + name)
    return sys.argv[i + 1]


uuid, endpoint = arg("uuid"), arg("endpoint")
assert arg("protocol") == "1", sys.argv
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(endpoint)


def send(*frame):
    sock.sendall(msgpack.packb(list(frame), use_bin_type=False))


send(1, 0, [uuid])  # handshake
send(1, 0, [])  # first heartbeat
print("python worker", uuid, "up", flush=True)
unpacker = msgpack.Unpacker(raw=True)
requests = {}
while True:
    data = sock.recv(65536)
    if not data:
        sys.exit(0)
    unpacker.feed(data)
    for frame in unpacker:
        channel, typ, args = frame[0], frame[1], frame[2]
        if channel == 1:
            if typ == 1:  # terminate: echo it and stop
                send(1, 1, args)
                sys.exit(0)
            continue  # the heartbeat echo
        if channel not in requests:
            requests[channel] = {"event": args[0], "chunks": []}
            continue
        req = requests[channel]
        if typ == 0:
            req["chunks"].append(args[0])
        elif typ == 2:
            del requests[channel]
            if req["event"] == b"upper":
                send(channel, 0, [b"".join(req["chunks"]).upper()])
                send(channel, 2, [])
            else:
                send(channel, 1, [[42, 1], "no handler for " + req["event"].decode()])
