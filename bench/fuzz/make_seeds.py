#!/usr/bin/env python3
"""Writes the seed inputs under seeds/<target>/ (in the script format of src/lib.rs).

The seeds are small, valid conversations of each protocol, so that a short run starts from
real messages instead of discovering the framing from nothing. Run from bench/fuzz/.
"""
import os
import struct

REQ, RESP, CUT = 0, 1, 2


def seg(direction, data, extra=None):
    """One scripted segment: flags, u16 size, [u24 extra], data."""
    flags = direction | (CUT if extra is not None else 0)
    out = bytes([flags]) + struct.pack("<H", len(data))
    if extra is not None:
        out += struct.pack("<I", extra)[:3]
    return out + data


def write(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)


# HTTP
get = b"GET /api/users?id=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\n" \
      b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
post = b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
nf = b"HTTP/1.0 404 File not found\r\nContent-Type: text/html\r\n\r\n<html></html>"
cont = b"HTTP/1.1 100 Continue\r\n\r\n"
head = b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"
write("http", "get", seg(REQ, get) + seg(RESP, ok))
write("http", "pipelined", seg(REQ, get + post) + seg(RESP, ok + chunked))
write("http", "continue", seg(REQ, post[:-5]) + seg(RESP, cont) + seg(REQ, b"hello")
      + seg(RESP, nf))
write("http", "cut", seg(REQ, post[:40], 1000) + seg(RESP, ok[:20], 5000) + seg(REQ, head)
      + seg(RESP, b"HTTP/1.1 304 Not Modified\r\n\r\n"))

# Redis
def resp_cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

write("redis", "set_get", seg(REQ, resp_cmd(b"SET", b"foo", b"bar")) + seg(RESP, b"+OK\r\n")
      + seg(REQ, resp_cmd(b"GET", b"foo")) + seg(RESP, b"$3\r\nbar\r\n"))
write("redis", "errors", seg(REQ, resp_cmd(b"LPUSH", b"k", b"v") + b"PING\r\n")
      + seg(RESP, b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+PONG\r\n"))
write("redis", "resp3", seg(REQ, resp_cmd(b"HELLO", b"3"))
      + seg(RESP, b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n")
      + seg(REQ, resp_cmd(b"SET", b"k", b"x" * 100)[:30], 2000)
      + seg(RESP, b"*2\r\n_\r\n,1.5\r\n#t\r\n"))

# DNS (first byte: 0 UDP, 1 TCP)
q = bytes.fromhex("6d5701200001000000000001076578616d706c6503636f6d000001000100002904d000000000000c000a0008f033a46090f7484d")
r = bytes.fromhex("6d5785800001000100000001076578616d706c6503636f6d0000010001c00c000100010000000000045db8d82200002904d0000000000000")
cq = bytes.fromhex("438f0120000100000000000103777777076578616d706c65036f7267000001000100002904d000000000000c000a0008b60afd4ae4e8475f")
cr = bytes.fromhex("438f8580000100010000000103777777076578616d706c65036f72670000010001c00c0005000100000000000d076578616d706c6503636f6d0000002904d0000000000000")
def tcp(m):
    return struct.pack(">H", len(m)) + m
write("dns", "udp", b"\x00" + seg(REQ, q) + seg(RESP, r) + seg(REQ, cq) + seg(RESP, cr))
write("dns", "tcp", b"\x01" + seg(REQ, tcp(q) + tcp(cq)) + seg(RESP, tcp(r)[:20]) + seg(RESP, tcp(r)[20:] + tcp(cr)))

# MySQL
def pkt(seq, payload):
    n = len(payload)
    return bytes([n & 0xff, (n >> 8) & 0xff, n >> 16, seq]) + payload

greeting = pkt(0, b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\0" + b"\x1f\0\0\0" + b"6<cq}7[O\0"
               + b"\xfe\xf7\x2d\x02\x00\xff\x81\x15" + b"\0\0\0\0\0\0\x1d\0\0\0"
               + b"0\\d|Yz-3tB8K\0" + b"mysql_native_password\0")
def login(caps):
    return pkt(1, caps + b"\0\0\0\x01\x2d" + b"\0" * 19 + b"\x1d\0\0\0" + b"root\0"
               + b"\x14" + b"\x9d" * 20 + b"mysql_native_password\0")
login_ok = pkt(2, b"\x00\x00\x00\x02\x00\x00\x00")
def myquery(sql):
    return pkt(0, b"\x03" + sql)
def column(name, seq):
    return pkt(seq, b"\x03def\0\0\0" + bytes([len(name)]) + name + b"\0\x0c\x21\0\x18\0\0\0\xfd\0\0\x27\0\0")
def row(v, seq):
    return pkt(seq, bytes([len(v)]) + v)
def eof(seq, status=2):
    return pkt(seq, b"\xfe\0\0" + struct.pack("<H", status))
def ok_eof(seq, status=2):
    return pkt(seq, b"\xfe\0\0" + struct.pack("<H", status) + b"\0\0")
my_ok = pkt(1, b"\x00\x01\x00\x02\x00\x00\x00")
my_err = pkt(1, b"\xff\x7a\x04#42S02Table 'x.nope' doesn't exist")
result = pkt(1, b"\x01") + column(b"1", 2) + eof(3) + row(b"1", 4) + eof(5)
result8 = pkt(1, b"\x01") + column(b"1", 2) + row(b"1", 3) + ok_eof(4)
write("mysql", "mariadb", seg(RESP, greeting) + seg(REQ, login(b"\x85\xa6\x3f\x20")) + seg(RESP, login_ok)
      + seg(REQ, myquery(b"SELECT 1")) + seg(RESP, result)
      + seg(REQ, myquery(b"INSERT INTO t VALUES ('secret', 42)")) + seg(RESP, my_ok)
      + seg(REQ, myquery(b"SELECT * FROM nope")) + seg(RESP, my_err))
write("mysql", "mysql8", seg(RESP, greeting) + seg(REQ, login(b"\x85\xa6\xff\x01")) + seg(RESP, login_ok)
      + seg(REQ, myquery(b"SELECT 1")) + seg(RESP, result8)
      + seg(REQ, pkt(0, b"\x16SELECT ?")) + seg(RESP, pkt(1, b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"))
      + seg(REQ, myquery(b"SELECT '" + b"x" * 200)[:100], 3000) + seg(RESP, my_ok))

# PostgreSQL
def msg(kind, body):
    return bytes([kind]) + struct.pack(">I", len(body) + 4) + body
sbody = b"\x00\x03\x00\x00user\0postgres\0database\0postgres\0application_name\0psql\0client_encoding\0UTF8\0\0"
startup = struct.pack(">I", len(sbody) + 4) + sbody
ready = msg(ord("Z"), b"I")
login_answer = (msg(ord("R"), b"\0\0\0\0") + msg(ord("S"), b"application_name\0psql\0")
                + msg(ord("K"), b"\0\0\x1f\x90\x5e\x2b\x11\x07") + ready)
def pgquery(sql):
    return msg(ord("Q"), sql + b"\0")
select_one = (msg(ord("T"), b"\x00\x01?column?\0\0\0\0\0\0\0\0\0\0\x17\x00\x04\xff\xff\xff\xff\x00\x00")
              + msg(ord("D"), b"\x00\x01\x00\x00\x00\x011") + msg(ord("C"), b"SELECT 1\0") + ready)
pgerr = msg(ord("E"), b"SERROR\0VERROR\0C42P01\0Mrelation \"nope\" does not exist\0\0") + ready
ext = (msg(ord("P"), b"s1\0SELECT $1\0\0\0") + msg(ord("B"), b"\0s1\0\0\0\0\x01\0\0\0\x011\0\0")
       + msg(ord("E"), b"\0\0\0\0\0") + msg(ord("S"), b""))
ext_answer = (msg(ord("1"), b"") + msg(ord("2"), b"") + msg(ord("D"), b"\x00\x01\x00\x00\x00\x011")
              + msg(ord("C"), b"SELECT 1\0") + ready)
write("postgres", "simple", seg(REQ, startup) + seg(RESP, login_answer) + seg(REQ, pgquery(b"SELECT 1"))
      + seg(RESP, select_one) + seg(REQ, pgquery(b"SELECT * FROM nope")) + seg(RESP, pgerr))
write("postgres", "extended", seg(REQ, b"\x00\x00\x00\x08\x04\xd2\x16\x2f") + seg(RESP, b"N")
      + seg(REQ, startup) + seg(RESP, login_answer) + seg(REQ, ext) + seg(RESP, ext_answer)
      + seg(REQ, pgquery(b"SELECT '" + b"y" * 300 + b"'")[:60], 500) + seg(RESP, select_one))

# HTTP/2 and gRPC. Header blocks in HPACK by hand: indexed static fields (0x80 | index),
# literals with an indexed name (0x40 | index: added to the dynamic table; 0x00 | index: not),
# and a literal name (0x40, 0).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) \
        + payload
def lit(index, value, add=False):
    return bytes([(0x40 if add else 0) | index]) + bytes([len(value)]) + value
def lit_name(name, value):
    return b"\x40" + bytes([len(name)]) + name + bytes([len(value)]) + value
def grpc_message(body):
    return b"\0" + struct.pack(">I", len(body)) + body
settings = frame(4, 0, 0, b"\0\x04\0\0\xff\xff")
grpc_req = (b"\x83\x86" + lit(4, b"/pkg.Svc/Get") + lit(1, b"svc:50051", add=True)
            + lit(31, b"application/grpc", add=True) + lit_name(b"te", b"trailers"))
h2_request = (PREFACE + settings + frame(1, 4, 1, grpc_req)
              + frame(0, 1, 1, grpc_message(b"\x0a\x01x")))
grpc_head = frame(1, 4, 1, b"\x88" + lit(31, b"application/grpc", add=True))
trailers = frame(1, 5, 1, lit_name(b"grpc-status", b"0"))
h2_answer = settings + frame(4, 1, 0, b"") + grpc_head + frame(0, 0, 1, grpc_message(b"ok")) \
    + trailers
write("http2", "grpc_unary", seg(REQ, h2_request) + seg(RESP, h2_answer))
# A long answer as the agent feeds it: its first bytes (the rest of its first part unseen),
# then its last bytes, the tail, as a segment of their own.
long_answer = grpc_head + frame(0, 0, 1, grpc_message(b"z" * 3000)) + trailers
write("http2", "grpc_tail", seg(REQ, h2_request)
      + seg(RESP, long_answer[:1024], len(long_answer) - 1024 - 256)
      + seg(RESP, long_answer[-256:]))
second = (frame(1, 4, 3, b"\x83\x86" + lit(4, b"/pkg.Svc/Get") + b"\xbe\xbf")
          + frame(0, 1, 3, grpc_message(b"")))
write("http2", "reset_and_goaway", seg(REQ, h2_request) + seg(REQ, second)
      + seg(RESP, frame(3, 0, 3, b"\0\0\0\x08") + frame(8, 0, 0, b"\0\0\x10\0"))
      + seg(RESP, h2_answer) + seg(RESP, frame(7, 0, 0, b"\0\0\0\x03\0\0\0\0")))
h1_get = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" \
    b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
switching = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
write("http", "h2c_upgrade", seg(REQ, h1_get)
      + seg(RESP, switching + settings + frame(1, 4, 1, b"\x88") + frame(0, 1, 1, b"hi"))
      + seg(REQ, PREFACE + settings))

# detect: flags (bit 0 UDP, bit 1 response present), u16 split, request, response.
def det(flags, request, response=b""):
    return bytes([flags]) + struct.pack("<H", len(request)) + request + response
write("detect", "http", det(0, get, ok))
write("detect", "redis", det(0, resp_cmd(b"GET", b"foo"), b"$3\r\nbar\r\n"))
write("detect", "dns_udp", det(1, q, r))
write("detect", "dns_tcp", det(0, tcp(q), tcp(r)))
write("detect", "mysql", det(2, login(b"\x85\xa6\x3f\x20"), greeting))
write("detect", "postgres", det(0, startup, login_answer))
write("detect", "http2", det(0, h2_request, h2_answer))

# sql_normalize
for i, s in enumerate([
    b"SELECT * FROM t WHERE a = 'x''y' AND b = 0x1F -- c\n",
    b"/* c */ insert into `t` (\"a\") values (E'\\n', 1.5e3, $$dollar$$, $1)",
    b"UPDATE t SET a = _utf8mb4'z' WHERE id IN (1, 2, .5)",
]):
    write("sql_normalize", f"s{i}", s)

# ---- Agent targets (built with the `agent` feature; see run.sh) ----

# events: config byte (bit 0: store payloads), then records and round ends (src/events.rs).
# TcpEvent and DataEvent as agent-common lays them out (src/events.rs asserts the offsets).
STATE, CONNECT, ACCEPT, RETRANSMIT, RESET_SENT, RESET_RECEIVED, DROP, RTT = range(1, 9)
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, \
    LISTEN = range(1, 11)
READ, WRITE, READV, WRITEV, SENDTO, RECVFROM, SENDMSG, RECVMSG, SENDMMSG, RECVMMSG, CLOSE_FD = \
    range(1, 12)
AF_INET, AF_INET6 = 2, 10
LO = b"\x7f\0\0\x01"
T0 = 10_000_000_000  # ns since boot


def tcp_ev(kind, sk, ts, old=0, new=0, sport=0, dport=0, saddr=LO, daddr=LO, family=AF_INET,
           pid=0, tid=0, comm=b"", ret=0, sent=0, received=0, srtt=0, rtt_min=0, rtt_max=0,
           retrans=0, sk_err=0, reason=0, ip_protocol=0, cgroup=0):
    ev = struct.pack("<QQQQIIiHHHBBBB2s16s16s16sIIIIiIQ", ts, sk, sent, received, pid, tid, ret,
                     sport, dport, family, kind, old, new, ip_protocol, b"\0\0",
                     saddr.ljust(16, b"\0"), daddr.ljust(16, b"\0"), comm.ljust(16, b"\0"),
                     srtt, rtt_min, rtt_max, retrans, sk_err, reason, cgroup)
    assert len(ev) == 136
    return ev


def data_ev(syscall, sk, ts, payload=b"", length=None, sport=0, dport=0, saddr=LO, daddr=LO,
            family=AF_INET, sock_type=1, pid=0, tid=0, comm=b"", fd=3, exit_after=20_000, tail=0):
    """`tail`: how many of `payload`'s last bytes are the syscall's last ones."""
    length = len(payload) if length is None else length
    hdr = struct.pack("<QQQQIIiIHBBHHHH4s16s16s16s", ts + exit_after, sk, length, 0, pid, tid,
                      fd, 0, len(payload), syscall, sock_type, sport, dport, family, tail,
                      b"\0" * 4,
                      saddr.ljust(16, b"\0"), daddr.ljust(16, b"\0"), comm.ljust(16, b"\0"))
    assert len(hdr) == 112
    return hdr + payload


def rec(ring, body, exact=False):
    """A ring record: tag (0 TCP, 1 data; bit 2 exact size), u16 size, bytes."""
    return bytes([ring | (4 if exact else 0)]) + struct.pack("<H", len(body)) + body


def tcp_rec(*a, **k):
    return rec(0, tcp_ev(*a, **k))


def data_rec(*a, **k):
    return rec(1, data_ev(*a, **k))


def round_end(sweep=False, open_report=False, rtt=False, flush=False, compress=False):
    return bytes([(3 if compress else 2) | sweep << 2 | open_report << 3 | rtt << 4 | flush << 5])


def client_conn(sk, ts, sport, dport, pid, comm, saddr=LO, daddr=LO, family=AF_INET):
    """CLOSE -> SYN_SENT, connect(), SYN_SENT -> ESTABLISHED."""
    a = dict(saddr=saddr, daddr=daddr, family=family)
    return (tcp_rec(STATE, sk, ts, CLOSE, SYN_SENT, 0, dport, pid=pid, tid=pid, comm=comm, **a)
            + tcp_rec(STATE, sk, ts + 50_000, SYN_SENT, ESTABLISHED, sport, dport, **a)
            + tcp_rec(CONNECT, sk, ts + 60_000, sport=sport, dport=dport, pid=pid, tid=pid,
                      comm=comm, **a))


def client_close(sk, ts, sport, dport, sent, received, saddr=LO, daddr=LO, family=AF_INET):
    a = dict(saddr=saddr, daddr=daddr, family=family)
    return (tcp_rec(STATE, sk, ts, ESTABLISHED, FIN_WAIT1, sport, dport, **a)
            + tcp_rec(STATE, sk, ts + 10_000, FIN_WAIT1, FIN_WAIT2, sport, dport, **a)
            + tcp_rec(STATE, sk, ts + 20_000, FIN_WAIT2, CLOSE, sport, dport, sent=sent,
                      received=received, srtt=55, rtt_min=40, rtt_max=90, **a))


def exchange(sk, ts, request, response, sport, dport, pid, comm, send=WRITE, recv=READ, **k):
    """A client's request then the response it reads."""
    return (data_rec(send, sk, ts, request, sport=sport, dport=dport, pid=pid, tid=pid,
                     comm=comm, **k)
            + data_rec(recv, sk, ts + 100_000, response, sport=sport, dport=dport, pid=pid,
                       tid=pid, comm=comm, **k))


ts = T0
http_client = (b"\x00" + client_conn(1, ts, 40000, 8080, 1000, b"curl") + round_end()
               + exchange(1, ts + 1_000_000, get, ok, 40000, 8080, 1000, b"curl")
               + exchange(1, ts + 2_000_000, post, chunked, 40000, 8080, 1000, b"curl")
               + round_end(flush=True)
               + client_close(1, ts + 3_000_000, 40000, 8080, len(get) + len(post),
                              len(ok) + len(chunked))
               + data_rec(CLOSE_FD, 1, ts + 3_100_000, pid=1000, tid=1000, comm=b"curl")
               + round_end(sweep=True, flush=True, compress=True))
write("events", "http_client", http_client)

server = (b"\x01"
          + tcp_rec(STATE, 2, ts, CLOSE, LISTEN, 8081, 0, pid=2000, comm=b"nginx")
          + tcp_rec(STATE, 3, ts + 1_000, CLOSE, SYN_RECV, 8081, 41000)
          + tcp_rec(STATE, 3, ts + 2_000, SYN_RECV, ESTABLISHED, 8081, 41000)
          + tcp_rec(ACCEPT, 3, ts + 3_000, sport=8081, dport=41000, pid=2000, tid=2001,
                    comm=b"nginx", ret=7)
          + round_end()
          + data_rec(READ, 3, ts + 10_000, get + head, sport=8081, dport=41000, pid=2000,
                     tid=2001, comm=b"nginx")
          + data_rec(WRITEV, 3, ts + 20_000, ok, sport=8081, dport=41000, pid=2000, tid=2001,
                     comm=b"nginx")
          + data_rec(WRITE, 3, ts + 30_000, b"HTTP/1.1 304 Not Modified\r\n\r\n", sport=8081,
                     dport=41000, pid=2000, tid=2001, comm=b"nginx")
          + tcp_rec(RETRANSMIT, 3, ts + 40_000, ESTABLISHED, sport=8081, dport=41000)
          + tcp_rec(RESET_RECEIVED, 3, ts + 50_000, sport=8081, dport=41000)
          + round_end(open_report=True, rtt=True)
          + tcp_rec(STATE, 3, ts + 60_000, ESTABLISHED, CLOSE, 8081, 41000, sent=60,
                    received=80, sk_err=104)
          + tcp_rec(STATE, 2, ts + 70_000, LISTEN, CLOSE, 8081, 0)
          + round_end(sweep=True, flush=True))
write("events", "http_server", server)

dns_server = b"\x0a\x60\x00\x0a"
udp = dict(sock_type=2, daddr=dns_server)
dns_udp = (b"\x00"
           + exchange(4, ts, q, r, 50001, 53, 3000, b"getent", send=SENDTO, recv=RECVFROM, **udp)
           + data_rec(SENDMSG, 4, ts + 500_000, cq, sport=50001, dport=53, pid=3000, tid=3000,
                      comm=b"getent", **udp)
           + round_end()
           + data_rec(RECVMSG, 4, ts + 900_000, cr, sport=50001, dport=53, pid=3000, tid=3000,
                      comm=b"getent", **udp)
           + data_rec(SENDMMSG, 5, ts + 1_000_000, q, sport=50002, dport=53, pid=3001,
                      comm=b"resolver", **udp)
           + round_end(sweep=True, flush=True)
           + data_rec(CLOSE_FD, 4, ts + 2_000_000)
           + round_end(sweep=True))
write("events", "dns_udp", dns_udp)

# A Redis client whose connection predates the agent (no TCP events), over IPv6.
v6a = bytes.fromhex("20010db8000000000000000000000001")
v6b = bytes.fromhex("20010db8000000000000000000000002")
six = dict(saddr=v6a, daddr=v6b, family=AF_INET6)
redis_v6 = (b"\x01"
            + exchange(6, ts, resp_cmd(b"SET", b"foo", b"bar"), b"+OK\r\n", 50000, 6379, 4000,
                       b"redis-cli", **six)
            + exchange(6, ts + 200_000, resp_cmd(b"GET", b"foo") + b"PING\r\n",
                       b"$3\r\nbar\r\n+PONG\r\n", 50000, 6379, 4000, b"redis-cli", **six)
            + round_end(sweep=True, flush=True))
write("events", "redis_v6", redis_v6)

mysql = (b"\x00" + client_conn(7, ts, 42000, 3306, 5000, b"mysql") + round_end()
         + data_rec(READ, 7, ts + 100_000, greeting, sport=42000, dport=3306, pid=5000, comm=b"mysql")
         + data_rec(WRITE, 7, ts + 200_000, login(b"\x85\xa6\x3f\x20"), sport=42000, dport=3306,
                    pid=5000, comm=b"mysql")
         + data_rec(READ, 7, ts + 300_000, login_ok, sport=42000, dport=3306, pid=5000,
                    comm=b"mysql")
         + exchange(7, ts + 400_000, myquery(b"SELECT 1"), result, 42000, 3306, 5000, b"mysql")
         + exchange(7, ts + 500_000, myquery(b"SELECT * FROM nope"), my_err, 42000, 3306, 5000,
                    b"mysql")
         + round_end(flush=True))
write("events", "mysql", mysql)

pg = (b"\x00" + client_conn(8, ts, 43000, 5432, 6000, b"psql")
      + exchange(8, ts + 100_000, startup, login_answer, 43000, 5432, 6000, b"psql",
                 send=SENDTO, recv=RECVFROM)
      + exchange(8, ts + 200_000, pgquery(b"SELECT 1"), select_one, 43000, 5432, 6000, b"psql")
      + exchange(8, ts + 300_000, ext, ext_answer, 43000, 5432, 6000, b"psql")
      # A request longer than what was captured.
      + data_rec(WRITE, 8, ts + 400_000, pgquery(b"SELECT '" + b"y" * 300 + b"'")[:60],
                 length=5000, sport=43000, dport=5432, pid=6000, comm=b"psql")
      + round_end(flush=True)
      + client_close(8, ts + 500_000, 43000, 5432, 100, 200)
      + round_end(sweep=True))
write("events", "postgres", pg)

# A gRPC client whose answer was longer than the first bytes captured: head and tail.
grpc = (b"\x00" + client_conn(14, ts, 47000, 50051, 9500, b"python3")
        + data_rec(SENDMSG, 14, ts + 100_000, h2_request, sport=47000, dport=50051, pid=9500,
                   comm=b"python3")
        + data_rec(RECVMSG, 14, ts + 200_000, long_answer[:1024] + long_answer[-256:],
                   length=len(long_answer), tail=256, sport=47000, dport=50051, pid=9500,
                   comm=b"python3")
        + round_end(sweep=True, flush=True))
write("events", "grpc_tail", grpc)

health = (b"\x00" + client_conn(9, ts, 44000, 80, 7000, b"wget")
          + tcp_rec(RTT, 9, ts + 100_000, sport=44000, dport=80, srtt=120)
          + tcp_rec(RETRANSMIT, 9, ts + 200_000, ESTABLISHED, sport=44000, dport=80)
          + tcp_rec(DROP, 0, ts + 300_000, sport=80, dport=44000, reason=2, ip_protocol=6)
          + tcp_rec(DROP, 0, ts + 300_000, sport=5353, dport=53, reason=5, ip_protocol=17)
          + tcp_rec(RESET_SENT, 0, ts + 400_000, sport=9, dport=45000, reason=1)
          + tcp_rec(RESET_SENT, 9, ts + 500_000, sport=44000, dport=80, reason=2)
          + round_end(open_report=True, rtt=True)
          # A connect that fails: refused.
          + tcp_rec(STATE, 10, ts + 600_000, CLOSE, SYN_SENT, 0, 81, pid=7000, comm=b"wget")
          + tcp_rec(STATE, 10, ts + 700_000, SYN_SENT, CLOSE, 45001, 81, sk_err=111)
          + tcp_rec(CONNECT, 10, ts + 710_000, sport=45001, dport=81, ret=-111, pid=7000)
          + round_end(flush=True))
write("events", "health", health)

malformed = (b"\x00" + rec(0, tcp_ev(STATE, 11, ts)[:100], exact=True)
             + rec(1, data_ev(WRITE, 11, ts, get) + b"\0" * 2000, exact=True)
             + tcp_rec(99, 11, ts)
             + data_rec(77, 11, ts, get)
             # The same socket address reused by a new connection without its CLOSE.
             + client_conn(12, ts, 46000, 8080, 8000, b"a")
             + exchange(12, ts + 1000, get, ok, 46000, 8080, 8000, b"a")
             + client_conn(12, ts + 5000, 46001, 8080, 8001, b"b")
             + exchange(12, ts + 6000, get, ok, 46001, 8080, 8001, b"b")
             + round_end(sweep=True, flush=True, compress=True))
write("events", "malformed", malformed)

# More connections than the table holds (64), and chunks sealed and evicted.
full = b"\x00"
for i in range(70):
    full += tcp_rec(STATE, 13 + i, ts + i * 1000, CLOSE, SYN_SENT, 0, 8080, pid=9000 + i,
                    comm=b"bench")
full += round_end(flush=True, compress=True)
write("events", "table_full", full)

# ticket: Flight tickets (wire/src/ticket.rs) with fragments like the coordinator's
# (plugin-backend/src/fragment.rs, pushdown.rs, scan.rs), then hostile ones.
import json


def ticket(name, sql, v=1):
    write("ticket", name, json.dumps({"v": v, "sql": sql}, separators=(",", ":")).encode())


TS = "CAST('2023-11-14T22:13:20' AS TIMESTAMP)"
for name, sql in [
    ("scan", 'SELECT "pid", "comm" FROM "flows" WHERE (((dst_port = 8080) AND comm LIKE \'cu%\')) LIMIT 5'),
    ("row_marker", 'SELECT 1 AS "__kindling_row" FROM "tcp_events"'),
    ("partial_agg", 'SELECT "resource" AS "g0", count(1) AS "p0", sum(request_bytes) AS "p1", '
                    'count(request_bytes) AS "p2" FROM "calls" WHERE (("status" = \'200\')) GROUP BY "resource"'),
    ("partial_projected", 'SELECT "g0", "p1" FROM (SELECT "resource" AS "g0", count(1) AS "p0", '
                          'max(response_bytes) AS "p1" FROM "calls" GROUP BY "resource") AS "partial"'),
    ("top_k", 'SELECT "resource", "status", "conn_id" FROM "calls" WHERE (("status" = \'200\')) '
              'ORDER BY conn_id ASC NULLS LAST LIMIT 7'),
    ("digest", 'SELECT "rcode" AS "g0", kindling_digest(latency_ns) AS "p0", count(1) AS "p1" '
               'FROM "dns" GROUP BY "rcode"'),
    ("date_bin", 'SELECT date_bin(INTERVAL \'1 minute\', ts) AS "g0", count(1) AS "p0", '
                 'max(response_bytes) AS "p1" FROM "calls" GROUP BY date_bin(INTERVAL \'1 minute\', ts)'),
    ("time_filter", f'SELECT "ts", "domain", "latency_ns" FROM "dns" WHERE ((ts >= {TS}) AND '
                    "(ts <= to_timestamp_seconds(1700000003)))"),
    ("time_filter_tz", 'SELECT "end_ts", "bytes_sent" FROM "flows" WHERE ((end_ts >= '
                       "TIMESTAMP '2023-11-14T22:13:21.000000000Z') AND (end_ts BETWEEN "
                       "to_timestamp_millis(1700000000000) AND to_timestamp_micros(1700000004000000)))"),
    ("stats", "SELECT node, version, rows_held, events_received, events_dropped FROM agent_stats"),
    ("protocol_stats", 'SELECT * FROM "protocol_stats" WHERE calls > 0'),
    ("service_map", 'SELECT "src_ip" AS "g0", "dst_ip" AS "g1", "dst_port" AS "g2", count(1) AS "p0", '
                    'sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS "p1" FROM "calls" '
                    'GROUP BY "src_ip", "dst_ip", "dst_port"'),
    ("tcp_events", 'SELECT "event", "reason", "srtt_us" FROM "tcp_events" WHERE (("event" IN '
                   "('drop', 'rtt', 'close')) AND (reason IS NOT NULL OR srtt_us > 10))"),
    ("information_schema", "SELECT table_name, column_name, data_type FROM information_schema.columns"),
]:
    ticket(name, sql)

# Hostile: nesting, long chains, huge IN lists, cross joins, unbounded generators, writes.
ticket("deep_parens", "SELECT " + "(" * 400 + "1" + ")" * 400)
ticket("deep_subqueries", "SELECT * FROM " + "(SELECT * FROM " * 60 + "flows" + ") AS t" * 60)
ticket("long_sum", "SELECT " + "+".join(["1"] * 4000))
ticket("long_and", "SELECT count(*) FROM flows WHERE " + " AND ".join(f"pid <> {i}" for i in range(900)))
ticket("long_or", "SELECT count(*) FROM calls WHERE " + " OR ".join(f"conn_id = {i}" for i in range(900)))
ticket("deep_case", "SELECT " + "CASE WHEN pid > 0 THEN " * 200 + "1" + " ELSE 0 END" * 200 + " FROM flows")
ticket("deep_fn", "SELECT " + "abs(" * 500 + "pid" + ")" * 500 + " FROM flows")
ticket("huge_in", "SELECT * FROM flows WHERE conn_id IN (" + ",".join(str(i) for i in range(2500)) + ")")
ticket("cross_join", "SELECT count(*) FROM flows a, flows b, calls c, dns d, tcp_events e, flows f, calls g")
ticket("cross_sort", "SELECT a.comm, b.resource FROM flows a CROSS JOIN calls b CROSS JOIN dns c "
                     "CROSS JOIN tcp_events d ORDER BY a.comm, b.resource, random()")
ticket("series", "SELECT count(*) FROM generate_series(1, 1000000000000)")
ticket("series_sort", "SELECT value FROM generate_series(1, 100000000) ORDER BY value DESC")
ticket("recursive_cte", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                        "SELECT count(*) FROM r")
ticket("array_repeat", "SELECT array_repeat(array_repeat(1, 100000), 100000)")
ticket("window", "SELECT comm, row_number() OVER (PARTITION BY comm ORDER BY start_ts), "
                 "sum(bytes_sent) OVER (ORDER BY end_ts ROWS BETWEEN 1000000000 PRECEDING AND CURRENT ROW) FROM flows")
ticket("overflow", "SELECT to_timestamp_seconds(9223372036854775807), ts + INTERVAL '10000000 years', "
                   "9223372036854775807 + 1, CAST(1e300 AS BIGINT) FROM calls")
ticket("time_extremes", "SELECT * FROM calls WHERE ts > to_timestamp_seconds(9223372036) AND "
                        "ts < to_timestamp_millis(-9223372036854775808)")
ticket("limit_max", "SELECT * FROM dns LIMIT 18446744073709551615 OFFSET 9223372036854775807")
ticket("regex", "SELECT * FROM calls WHERE regexp_like(resource, '(a+)+$') OR resource ~ '(((((x*)*)*)*)*)y'")
ticket("ddl", "CREATE TABLE t AS SELECT * FROM flows")
ticket("dml", "INSERT INTO flows SELECT * FROM flows")
ticket("copy", "COPY flows TO '/tmp/kindling-fuzz-copy.csv'")
ticket("set", "SET datafusion.execution.target_partitions = 1000000")
ticket("url_table", "SELECT * FROM '/etc/passwd'")
ticket("explain", "EXPLAIN ANALYZE SELECT count(*) FROM flows a, flows b")
ticket("two_statements", "SELECT 1; SELECT 2")
ticket("unicode", "SELECT '\u0000\U0001f525', \"comm\" FROM flows WHERE comm = 'ünïcode'")
ticket("version_2", "SELECT 1", v=2)
write("ticket", "not_json", b"\xff\x00SELECT 1")
write("ticket", "extra_field", b'{"v":1,"sql":"SELECT 1","x":[1,2,{"y":null}]}')
write("ticket", "duplicate", b'{"v":1,"sql":"SELECT 1","sql":"SELECT 2"}')
