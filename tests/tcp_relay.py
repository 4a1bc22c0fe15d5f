#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A TCP relay for tests: listens on a free loopback port, prints it (one
line, then flushes: the handshake), and forwards every connection to
127.0.0.1:TARGET_PORT, both ways.

Stopping this process (SIGSTOP) freezes every link through it without
closing anything: the kernel still accepts and buffers, nothing arrives.
That is a link that stalls, as a network partition looks to a client.

usage: tcp_relay.py TARGET_PORT
"""
import selectors
import socket
import sys


def main():
    target = int(sys.argv[1])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    print(listener.getsockname()[1], flush=True)

    def close_pair(a, b):
        for s in (a, b):
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    while True:
        for key, _ in sel.select():
            if key.data is None:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", target))
                for s in (client, upstream):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(client, selectors.EVENT_READ, upstream)
                sel.register(upstream, selectors.EVENT_READ, client)
                continue
            src, dst = key.fileobj, key.data
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                close_pair(src, dst)
                continue
            try:
                dst.sendall(data)
            except OSError:
                close_pair(src, dst)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
