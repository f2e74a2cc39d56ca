#!/usr/bin/env python3
"""Tiny TCP/UDP peers for the demo: `serve PORT...` answers on every port; `probe
tcp|udp HOST PORT` prints allowed / blocked (timeout) / refused."""
import socket
import sys
import threading


def serve(ports):
    def tcp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        while True:
            c, _ = s.accept()
            c.sendall(b"hello\n")
            c.close()

    def udp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        while True:
            data, peer = s.recvfrom(2048)
            s.sendto(b"hello\n", peer)

    for p in ports:
        threading.Thread(target=tcp, args=(p,), daemon=True).start()
        threading.Thread(target=udp, args=(p,), daemon=True).start()
    threading.Event().wait()


def probe(proto, host, port):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(1.0)
    try:
        if proto == "tcp":
            s.connect((host, port))
            s.recv(16)
        else:
            s.sendto(b"ping", (host, port))
            s.recvfrom(16)
        print("allowed")
    except socket.timeout:
        print("blocked")
    except ConnectionRefusedError:
        print("refused")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve([int(p) for p in sys.argv[2:]])
    else:
        probe(sys.argv[2], sys.argv[3], int(sys.argv[4]))
