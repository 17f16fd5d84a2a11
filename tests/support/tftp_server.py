#!/usr/bin/env python3
"""A read-only TFTP server (RFC 1350, octet mode, 512-byte blocks) for the
tests: serves the files of DIR on 127.0.0.1:PORT (0 picks one; the port is
printed on stdout's first line). Each read request is answered from a new
socket, as the RFC asks. A missing file gets error 1 (file not found).
`--drop-after N` closes the first transfer of each file after N blocks
without a word, so the client times out mid-stream (a dropped download)."""
import argparse
import os
import socket
import struct
import sys
import threading

RRQ, DATA, ACK, ERROR = 1, 3, 4, 5
BLOCK = 512


def error(sock, peer, code, msg):
    sock.sendto(struct.pack("!HH", ERROR, code) + msg.encode() + b"\0", peer)


def serve(root, req, peer, drop_after, dropped):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    try:
        parts = req[2:].split(b"\0")
        name, mode = parts[0].decode(), parts[1].decode().lower()
        if mode != "octet":
            return error(sock, peer, 0, "octet mode only")
        path = os.path.normpath(os.path.join(root, name.lstrip("/")))
        if not path.startswith(root) or not os.path.isfile(path):
            return error(sock, peer, 1, "File not found")
        data = open(path, "rb").read()
        drop = drop_after if name not in dropped else None
        dropped.add(name)
        n = 1
        while True:
            chunk = data[(n - 1) * BLOCK:n * BLOCK]
            if drop is not None and n > drop:
                return  # silence: the client gives up
            for _ in range(5):
                sock.sendto(struct.pack("!HH", DATA, n & 0xFFFF) + chunk, peer)
                try:
                    ack, _ = sock.recvfrom(516)
                except socket.timeout:
                    continue
                op, blk = struct.unpack("!HH", ack[:4])
                if op == ACK and blk == n & 0xFFFF:
                    break
            else:
                return
            if len(chunk) < BLOCK:
                return
            n += 1
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--drop-after", type=int)
    a = ap.parse_args()
    root = os.path.realpath(a.root)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", a.port))
    print(s.getsockname()[1], flush=True)
    dropped = set()
    while True:
        req, peer = s.recvfrom(1024)
        if len(req) >= 4 and struct.unpack("!H", req[:2])[0] == RRQ:
            threading.Thread(target=serve, args=(root, req, peer, a.drop_after, dropped),
                             daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
