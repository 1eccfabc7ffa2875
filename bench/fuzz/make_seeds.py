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

# detect: flags (bit 0 UDP, bit 1 response present), u16 split, request, response.
def det(flags, request, response=b""):
    return bytes([flags]) + struct.pack("<H", len(request)) + request + response
write("detect", "http", det(0, get, ok))
write("detect", "redis", det(0, resp_cmd(b"GET", b"foo"), b"$3\r\nbar\r\n"))
write("detect", "dns_udp", det(1, q, r))
write("detect", "dns_tcp", det(0, tcp(q), tcp(r)))
write("detect", "mysql", det(2, login(b"\x85\xa6\x3f\x20"), greeting))
write("detect", "postgres", det(0, startup, login_answer))

# sql_normalize
for i, s in enumerate([
    b"SELECT * FROM t WHERE a = 'x''y' AND b = 0x1F -- c\n",
    b"/* c */ insert into `t` (\"a\") values (E'\\n', 1.5e3, $$dollar$$, $1)",
    b"UPDATE t SET a = _utf8mb4'z' WHERE id IN (1, 2, .5)",
]):
    write("sql_normalize", f"s{i}", s)
