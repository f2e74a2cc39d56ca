#!/usr/bin/env python3
"""Tiny TCP/UDP(/SCTP) peers for the end-to-end tests and the demo.

  probe.py serve NAME PORT...        answer on every port, TCP and UDP (and SCTP where the
                                     kernel has it), IPv4 and IPv6; prints "ready" once bound
  probe.py probe tcp|udp|sctp|icmp HOST PORT
                                     one probe; prints allowed / blocked / refused / unsupported
  probe.py hold HOST PORT            one TCP connection kept open: prints "connected", then
                                     for every stdin line sends it and prints "echo" or "timeout"
  probe.py holdudp HOST PORT         the same over one UDP socket (one conntrack entry)
  probe.py flows HOST FIRSTPORT COUNT
                                     one UDP datagram to each of COUNT ports (conntrack load)
  probe.py batch [TIMEOUT]           many probes at once: reads lines
                                     "ID PROTO DST PORT [SRC [SPORT]]" on stdin (SRC "-": any
                                     source address; SPORT 0: any source port), prints
                                     "ID VERDICT" lines once every probe has finished
  probe.py load                      a load generator: reads lines "PROTO DST PORT pass|drop"
                                     up to an empty line, then opens new connections to each
                                     target in a loop until stdin closes; prints one line per
                                     wrong verdict ("wrong ...") and a summary line per target
                                     ("target PROTO DST PORT EXPECT tried N wrong M")

(icmp: an echo request over a raw socket, so root; PORT is ignored.)
"allowed" means a reply came back; "blocked" means nothing did within the timeout (a drop);
"refused" means the packet arrived but nothing listened (a RST or an ICMP error).
"""
import errno
import os
import random
import socket
import struct
import sys
import threading
import time

TIMEOUT = 0.8
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux's value; Python < 3.12 lacks the name


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def sctp_socket(fam):
    return socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)


def sctp_supported():
    try:
        sctp_socket(socket.AF_INET).close()
        return True
    except OSError:
        return False


def serve(name, ports):
    reply = ("hello %s\n" % name).encode()

    def echo(c):
        # Greet, then echo until the peer closes (`hold` keeps a connection open).
        try:
            c.sendall(reply)
            while True:
                data = c.recv(2048)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        c.close()

    def stream(sock):
        sock.listen(128)
        while True:
            c, _ = sock.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    def dgram(sock):
        # Answer from the address the datagram was sent to (a host with several
        # addresses would otherwise answer from its route's source, which the prober's
        # connected socket and conntrack would not take for a reply).
        v6 = sock.family == socket.AF_INET6
        level = socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP
        info = socket.IPV6_PKTINFO if v6 else IP_PKTINFO
        while True:
            _, anc, _, peer = sock.recvmsg(2048, socket.CMSG_SPACE(64))
            cmsg = [(lv, ty, data) for lv, ty, data in anc if lv == level and ty == info]
            if cmsg and not v6:
                # struct in_pktinfo {ifindex; spec_dst; addr}: send from addr.
                data = cmsg[0][2]
                cmsg = [(level, info, bytes(4) + data[8:12] + bytes(4))]
            elif cmsg:
                # struct in6_pktinfo {addr; ifindex}: any interface.
                cmsg = [(level, info, cmsg[0][2][:16] + bytes(4))]
            try:
                sock.sendmsg([reply], cmsg, 0, peer)
            except OSError:
                pass

    def bound(fam, kind, proto, port):
        s = socket.socket(fam, kind, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
        return s

    sctp = sctp_supported()
    for port in ports:
        for fam in (socket.AF_INET, socket.AF_INET6):
            threading.Thread(target=stream, args=(bound(fam, socket.SOCK_STREAM, 0, port),), daemon=True).start()
            u = bound(fam, socket.SOCK_DGRAM, 0, port)
            if fam == socket.AF_INET6:
                u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                u.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            threading.Thread(target=dgram, args=(u,), daemon=True).start()
            if sctp:
                s = bound(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP, port)
                threading.Thread(target=stream, args=(s,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(dst, src, timeout):
    """One ICMP echo over a raw socket (root); "allowed" when its reply comes back."""
    fam = family(dst)
    v6 = fam == socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    ident = random.randrange(1, 0xFFFF)
    try:
        if src:
            s.bind((src, 0))
        addr = socket.getaddrinfo(dst, None, fam)[0][4]
        request, reply = (128, 129) if v6 else (8, 0)
        header = struct.pack("!BBHHH", request, 0, 0, ident, 1) + b"netpold-probe"
        if not v6:  # the kernel computes ICMPv6 checksums itself
            header = header[:2] + struct.pack("!H", checksum(header)) + header[4:]
        s.sendto(header, addr)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "blocked"
            s.settimeout(left)
            try:
                data = s.recv(2048)
            except socket.timeout:
                return "blocked"
            if not v6:
                data = data[(data[0] & 0x0F) * 4:]  # a raw IPv4 socket returns the IP header
            if len(data) >= 8 and data[0] == reply and struct.unpack("!H", data[4:6])[0] == ident:
                return "allowed"
    except OSError as e:
        return "error: %s" % e.strerror
    finally:
        s.close()


def probe(proto, dst, port, src=None, timeout=TIMEOUT, sport=0):
    if proto == "icmp":
        return ping(dst, src, timeout)
    fam = family(dst)
    try:
        if proto == "sctp":
            s = sctp_socket(fam)
        else:
            s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    except OSError as e:
        if e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EPROTOTYPE):
            return "unsupported"
        raise
    deadline = time.monotonic() + timeout
    # getaddrinfo reads a scope (fe80::1%eth0) into the sockaddr.
    addr = socket.getaddrinfo(dst, port, fam, s.type)[0][4]
    try:
        if src or sport:
            if sport:
                # A test probes one source port several times: a previous connection's
                # TIME_WAIT must not refuse the bind.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((src or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), sport))
        if proto in ("tcp", "sctp"):
            s.settimeout(timeout)
            try:
                s.connect(addr)
            except socket.timeout:
                return "blocked"
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                return "allowed" if s.recv(64) else "closed"
            except socket.timeout:
                return "connected-no-data"
        # UDP: resend until the deadline, so one lost datagram is not a verdict.
        s.connect(addr)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "blocked"
            s.send(b"ping")
            s.settimeout(min(0.2, left))
            try:
                s.recv(64)
                return "allowed"
            except socket.timeout:
                continue
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "error: %s" % e.strerror
    finally:
        s.close()


def batch(timeout):
    flows = [line.split() for line in sys.stdin if line.strip()]
    results = {}

    def one(f):
        src = f[4] if len(f) > 4 and f[4] != "-" else None
        sport = int(f[5]) if len(f) > 5 else 0
        results[f[0]] = probe(f[1], f[2], int(f[3]), src, timeout, sport)

    threads = [threading.Thread(target=one, args=(f,)) for f in flows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in flows:
        print(f[0], results[f[0]])
    sys.stdout.flush()


def tcp_retransmitted(s):
    """Whether the kernel resent anything on this socket (a SYN, say): a packet was lost."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_total_retrans is the 24th.
    return len(info) >= 104 and struct.unpack_from("I", info, 100)[0] > 0


def attempt(proto, dst, port, expect):
    """One new connection (TCP) or exchange (UDP, one datagram): None if it agrees with
    `expect`, else what went wrong. An allowed flow must answer at once and without a
    retransmission (a SYN the kernel resent was dropped once, even if the connection
    then succeeded); its long timeout tells a dropped packet from a slow machine. A
    denied flow must stay silent for DENY_WAIT."""
    fam = family(dst)
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind)
    wait = ALLOW_WAIT if expect == "pass" else DENY_WAIT
    s.settimeout(wait)
    started = time.monotonic()
    try:
        if proto == "tcp":
            try:
                s.connect((dst, port))
            except socket.timeout:
                return None if expect == "drop" else "connect timed out after %.1f s" % wait
            if expect == "drop":
                return "connected"
            if tcp_retransmitted(s):
                return "connected after %.2f s, after a retransmission" % (time.monotonic() - started)
            return None if s.recv(64) else "closed"
        s.connect((dst, port))
        s.send(b"ping")
        try:
            s.recv(64)
        except socket.timeout:
            return None if expect == "drop" else "no reply within %.1f s" % wait
        return "reply" if expect == "drop" else None
    except OSError as e:
        return "error: %s" % (e.strerror or e)
    finally:
        s.close()


ALLOW_WAIT = 5.0
DENY_WAIT = 1.5


def load():
    targets = []
    for line in sys.stdin:
        if not line.strip():
            break
        proto, dst, port, expect = line.split()
        targets.append((proto, dst, int(port), expect))
    done = threading.Event()
    lock = threading.Lock()
    counts = {t: [0, 0] for t in targets}

    def loop(t):
        while not done.is_set():
            wrong = attempt(*t)
            with lock:
                counts[t][0] += 1
                if wrong:
                    counts[t][1] += 1
                    print("wrong %s %s %d %s: %s at %.3f" % (t + (wrong, time.time())), flush=True)
            # A steady load, not a flood: a slow server's full accept queue drops SYNs too.
            time.sleep(float(os.environ.get("NETPOLD_LOAD_PAUSE_S", "0.02")))

    threads = [threading.Thread(target=loop, args=(t,)) for t in targets]
    for th in threads:
        th.start()
    print("running", flush=True)
    sys.stdin.read()
    done.set()
    for th in threads:
        th.join()
    for t in targets:
        print("target %s %s %d %s tried %d wrong %d" % (t + tuple(counts[t])), flush=True)


def hold(dst, port):
    s = socket.create_connection((dst, port), timeout=TIMEOUT)
    s.recv(64)
    print("connected", flush=True)
    for line in sys.stdin:
        s.settimeout(TIMEOUT)
        try:
            s.sendall(line.encode())
            got = s.recv(2048)
            print("echo" if got else "closed", flush=True)
        except OSError:
            print("timeout", flush=True)


def hold_udp(dst, port):
    s = socket.socket(family(dst), socket.SOCK_DGRAM)
    s.connect((dst, port))
    s.settimeout(TIMEOUT)

    def exchange(data):
        try:
            s.send(data)
            return "echo" if s.recv(2048) else "closed"
        except OSError:
            return "timeout"

    print("connected" if exchange(b"hi\n") == "echo" else "timeout", flush=True)
    for line in sys.stdin:
        print(exchange(line.encode()), flush=True)


def flows(dst, first_port, count):
    """One UDP datagram from one socket to each of COUNT ports: as many conntrack entries."""
    s = socket.socket(family(dst), socket.SOCK_DGRAM)
    for port in range(first_port, first_port + count):
        s.sendto(b"x", (dst, port))
    print("sent", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "holdudp":
        hold_udp(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "flows":
        flows(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], [int(p) for p in sys.argv[3:]])
    elif sys.argv[1] == "load":
        load()
    elif sys.argv[1] == "batch":
        batch(float(sys.argv[2]) if len(sys.argv) > 2 else TIMEOUT)
    else:
        print(probe(sys.argv[2], sys.argv[3], int(sys.argv[4])))
