//! The sessionizer over hand-made data events whose timestamps and bytes the tests choose.

use std::{collections::HashSet, net::Ipv4Addr, time::Duration};

use kindling_agent_common::{AF_INET, CAPTURE_MAX, COMM_LEN, DataEvent, SocketSyscall};

use super::*;

#[derive(Default)]
struct Rows {
    calls: Vec<CallRecord>,
    dns: Vec<DnsRecord>,
}

impl CallSink for Rows {
    fn call(&mut self, record: CallRecord) {
        self.calls.push(record);
    }
    fn dns(&mut self, record: DnsRecord) {
        self.dns.push(record);
    }
}

type End = ([u8; 4], u16);

const CLIENT: End = ([10, 0, 0, 1], 40_000);
const SERVER: End = ([10, 0, 0, 2], 80);

/// One data event: `payload` captured whole, unless `len` says the syscall moved more.
#[allow(clippy::too_many_arguments)]
fn event(
    sk: u64,
    syscall: SocketSyscall,
    exit: u64,
    local: End,
    remote: End,
    udp: bool,
    payload: &[u8],
    len: usize,
) -> DataEvent {
    let mut ev = DataEvent {
        ts_exit_ns: exit,
        skaddr: sk,
        len: len as u64,
        cgroup_id: 0,
        pid: 42,
        tid: 43,
        fd: 5,
        captured: payload.len().min(CAPTURE_MAX) as u16,
        syscall: syscall as u8,
        sock_type: if udp { 2 } else { 1 },
        sport: local.1,
        dport: remote.1,
        family: AF_INET,
        tail: 0,
        _pad: [0; 4],
        stream_end: 0,
        saddr: [0; 16],
        daddr: [0; 16],
        comm: [0; COMM_LEN],
        payload: [0; CAPTURE_MAX],
    };
    ev.saddr[..4].copy_from_slice(&local.0);
    ev.daddr[..4].copy_from_slice(&remote.0);
    ev.comm[..4].copy_from_slice(b"test");
    let n = payload.len().min(CAPTURE_MAX);
    ev.payload[..n].copy_from_slice(&payload[..n]);
    ev
}

fn tcp(
    sk: u64,
    syscall: SocketSyscall,
    at: u64,
    local: End,
    remote: End,
    data: &[u8],
) -> DataEvent {
    event(sk, syscall, at, local, remote, false, data, data.len())
}

fn sessionizer(dns_timeout: Duration) -> Sessionizer {
    Sessionizer::new(Clock::with_offset(0), 1024, dns_timeout)
}

const CLIENT_CONN: Option<ConnRef> = Some(ConnRef {
    role: Role::Client,
    conn_id: 7,
    ports: (40_000, 80),
});

#[test]
fn keep_alive_http_timing_sizes_and_query_strings() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let req1 = b"GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n\r\n";
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123";
    let req2 = b"GET /b?token=secret HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp2 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    use SocketSyscall::*;
    for ev in [
        // The request's write returns at 1100 (a request in one syscall: request_sent 0); the
        // response's head and 4 body bytes are read at 5000, the other 6 at 7000.
        tcp(1, Sendto, 1100, CLIENT, SERVER, req1),
        tcp(1, Recvfrom, 5000, CLIENT, SERVER, head),
        tcp(1, Recvfrom, 7000, CLIENT, SERVER, b"456789"),
        tcp(1, Write, 8050, CLIENT, SERVER, req2),
        tcp(1, Read, 9000, CLIENT, SERVER, resp2),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    let got: Vec<_> = rows
        .calls
        .iter()
        .map(|c| {
            (
                c.ts_ns,
                c.method.as_ref(),
                c.resource.as_str(),
                c.status.as_ref(),
                c.is_error,
                (c.request_sent_ns, c.waiting_ttfb_ns, c.content_download_ns),
                (c.request_bytes, c.response_bytes),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                1100,
                "GET",
                "/a",
                "200",
                false,
                (0, 3900, 2000),
                (req1.len() as u64, head.len() as u64 + 6)
            ),
            (
                8050,
                "GET",
                "/b",
                "404",
                true,
                (0, 950, 0),
                (req2.len() as u64, resp2.len() as u64)
            ),
        ]
    );
    let c = &rows.calls[0];
    assert_eq!((c.role, c.conn_id, c.protocol), (Role::Client, 7, "http"));
    assert_eq!(
        (
            c.endpoints.src_ip,
            c.endpoints.src_port,
            c.endpoints.dst_port
        ),
        (Ipv4Addr::new(10, 0, 0, 1).into(), 40_000, 80)
    );
    assert_eq!((c.owner.pid, c.owner.tid, &*c.owner.comm), (42, 43, "test"));
    assert_eq!(s.stats().per_protocol["http"].calls, 2);
}

/// The `events` fuzz target's finding: a response that ends while its request is still being
/// written (a server refusing an upload early) left the sessionizer pointing at the removed
/// call, and the next request bytes panicked the capture thread (index out of bounds).
#[test]
fn a_response_ending_before_its_request_does_not_lose_the_session() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    let refused = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
    let req2 = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    use SocketSyscall::*;
    for ev in [
        tcp(1, Sendto, 1100, CLIENT, SERVER, head),
        tcp(1, Recvfrom, 2000, CLIENT, SERVER, refused),
        // The client goes on sending the body it started.
        tcp(1, Sendto, 3100, CLIENT, SERVER, &[b'x'; 512]),
        tcp(1, Sendto, 4100, CLIENT, SERVER, &[b'x'; 512]),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    let got: Vec<_> = rows
        .calls
        .iter()
        .map(|c| (c.method.as_ref(), c.resource.as_str(), c.status.as_ref()))
        .collect();
    assert_eq!(got, [("POST", "/upload", "413")]);
    // A later session on another socket is parsed as usual.
    for ev in [
        tcp(2, Sendto, 5100, CLIENT, SERVER, req2),
        tcp(2, Recvfrom, 6000, CLIENT, SERVER, resp2),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    assert_eq!(rows.calls.len(), 2);
    assert_eq!(rows.calls[1].status, "200");
}

#[test]
fn pipelined_redis_on_the_server_side() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::from([6379]);
    let local = ([10, 0, 0, 2], 6379);
    let commands =
        b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\n";
    let replies = b"$1\r\nx\r\n+PONG\r\n-ERR value is not an integer or out of range\r\n";
    // Not known to the tracker: the listening port makes it the server end.
    s.on_event(
        &tcp(2, SocketSyscall::Read, 100, local, CLIENT, commands),
        None,
        &listen,
        &mut rows,
    );
    s.on_event(
        &tcp(2, SocketSyscall::Write, 250, local, CLIENT, replies),
        None,
        &listen,
        &mut rows,
    );
    let got: Vec<_> = rows
        .calls
        .iter()
        .map(|c| {
            (
                c.method.as_ref(),
                c.status.as_ref(),
                c.is_error,
                c.role,
                c.endpoints.src_port,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("GET", "", false, Role::Server, 40_000),
            ("PING", "", false, Role::Server, 40_000),
            ("INCR", "ERR", true, Role::Server, 40_000),
        ]
    );
    // The segment's bytes go to the first message of each direction.
    assert_eq!(
        rows.calls
            .iter()
            .map(|c| (c.request_bytes, c.response_bytes))
            .collect::<Vec<_>>(),
        [
            (commands.len() as u64, replies.len() as u64),
            (0, 0),
            (0, 0)
        ]
    );
}

#[test]
fn a_reused_socket_address_starts_a_new_session() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    // A client whose process exited with a request unanswered (no close(2) seen)...
    let req = b"GET /old HTTP/1.1\r\nHost: x\r\n\r\n";
    s.on_event(
        &tcp(3, SocketSyscall::Write, 10, CLIENT, SERVER, req),
        CLIENT_CONN,
        &listen,
        &mut rows,
    );
    // ...and the same struct sock address, reused for the server end of another connection.
    let server = Some(ConnRef {
        role: Role::Server,
        conn_id: 9,
        ports: (80, 40_001),
    });
    let peer = ([10, 0, 0, 3], 40_001);
    let new_req = b"GET /new HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = b"HTTP/1.1 204 No Content\r\n\r\n";
    s.on_event(
        &tcp(3, SocketSyscall::Read, 30, SERVER, peer, new_req),
        server,
        &listen,
        &mut rows,
    );
    s.on_event(
        &tcp(3, SocketSyscall::Write, 50, SERVER, peer, resp),
        server,
        &listen,
        &mut rows,
    );
    assert_eq!(rows.calls.len(), 1);
    let c = &rows.calls[0];
    assert_eq!(
        (c.resource.as_str(), c.role, c.conn_id),
        ("/new", Role::Server, 9)
    );
    assert_eq!((c.endpoints.src_port, c.endpoints.dst_port), (40_001, 80));
    assert_eq!(s.stats().per_protocol["http"].unmatched, 1);
    assert_eq!(s.live(), 1);
}

#[test]
fn a_head_split_over_two_reads_starts_at_the_first() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let server = Some(ConnRef {
        role: Role::Server,
        conn_id: 1,
        ports: (0, 0),
    });
    let (a, b) = (&b"GET /split HTTP/1.1\r\n"[..], &b"Host: x\r\n\r\n"[..]);
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    s.on_event(
        &tcp(4, SocketSyscall::Read, 100, SERVER, CLIENT, a),
        server,
        &listen,
        &mut rows,
    );
    s.on_event(
        &tcp(4, SocketSyscall::Read, 300, SERVER, CLIENT, b),
        server,
        &listen,
        &mut rows,
    );
    s.on_event(
        &tcp(4, SocketSyscall::Write, 420, SERVER, CLIENT, resp),
        server,
        &listen,
        &mut rows,
    );
    let c = &rows.calls[0];
    assert_eq!(c.ts_ns, 100);
    assert_eq!(c.request_bytes, (a.len() + b.len()) as u64);
    assert_eq!(
        (c.request_sent_ns, c.waiting_ttfb_ns, c.content_download_ns),
        (200, 120, 0)
    );
}

fn dns_query(id: u16, name: &[&str]) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

fn dns_answer(query: &[u8], nxdomain: bool) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] = 0x81;
    r[3] = if nxdomain { 0x83 } else { 0x80 };
    if !nxdomain {
        r[7] = 1;
        r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
    }
    r
}

#[test]
fn dns_pairs_by_id_in_any_order_and_times_out() {
    let mut s = sessionizer(Duration::ZERO);
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let resolver = ([127, 0, 0, 53], 53);
    let udp =
        |syscall, at, data: &[u8]| event(5, syscall, at, CLIENT, resolver, true, data, data.len());
    let (q1, q2, q3) = (
        dns_query(1, &["a", "example"]),
        dns_query(2, &["nx", "example"]),
        dns_query(3, &["silent", "example"]),
    );
    use SocketSyscall::*;
    for ev in [
        udp(Sendmmsg, 110, &q1),
        udp(Sendmmsg, 110, &q2),
        // The second query's answer comes first.
        udp(Recvfrom, 500, &dns_answer(&q2, true)),
        udp(Recvfrom, 900, &dns_answer(&q1, false)),
        udp(Sendto, 1010, &q3),
    ] {
        s.on_event(&ev, None, &listen, &mut rows);
    }
    s.sweep(&mut rows);
    let got: Vec<_> = rows
        .dns
        .iter()
        .map(|d| {
            (
                d.domain.as_str(),
                d.qtype.as_str(),
                d.rcode.as_str(),
                d.answers.as_str(),
                d.latency_ns,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("nx.example", "A", "NXDOMAIN", "", Some(390)),
            ("a.example", "A", "NOERROR", "10.1.2.3", Some(790)),
            ("silent.example", "A", "TIMEOUT", "", None),
        ]
    );
    assert!(
        rows.dns
            .iter()
            .all(|d| d.transport == "udp" && d.server_ip == Ipv4Addr::new(127, 0, 0, 53))
    );
    // Answered lookups are calls too; the timeout is not.
    assert_eq!(
        rows.calls
            .iter()
            .map(|c| (c.resource.as_str(), c.is_error))
            .collect::<Vec<_>>(),
        [("nx.example", true), ("a.example", false)]
    );
}

#[test]
fn tracker_info_of_a_previous_socket_at_the_same_address_is_ignored() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::from([6379]);
    let local = ([10, 0, 0, 2], 6379);
    // The tracker still holds the client connection that used this address before.
    let previous = Some(ConnRef {
        role: Role::Client,
        conn_id: 3,
        ports: (50_000, 6379),
    });
    let cmd = b"*1\r\n$4\r\nPING\r\n";
    s.on_event(
        &tcp(6, SocketSyscall::Read, 10, local, CLIENT, cmd),
        previous,
        &listen,
        &mut rows,
    );
    let current = Some(ConnRef {
        role: Role::Server,
        conn_id: 4,
        ports: (6379, 40_000),
    });
    s.on_event(
        &tcp(6, SocketSyscall::Write, 30, local, CLIENT, b"+PONG\r\n"),
        current,
        &listen,
        &mut rows,
    );
    assert_eq!(rows.calls.len(), 1);
    assert_eq!(
        (rows.calls[0].role, rows.calls[0].conn_id),
        (Role::Server, 4)
    );
}

#[test]
fn close_ends_every_session_of_the_socket_and_only_those() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let q = dns_query(1, &["a", "example"]);
    let server = |last: u8| ([127, 0, 0, last], 53);
    use SocketSyscall::*;
    // One UDP socket asking two servers, and another socket asking one.
    for (sk, last) in [(7, 1), (7, 2), (8, 1)] {
        let ev = event(sk, Sendto, 10, CLIENT, server(last), true, &q, q.len());
        s.on_event(&ev, None, &listen, &mut rows);
    }
    assert_eq!(s.live(), 3);
    let close = event(7, Close, 20, CLIENT, ([0; 4], 0), true, b"", 0);
    s.on_event(&close, None, &listen, &mut rows);
    assert_eq!(s.live(), 1);
    // Its two unanswered queries are DNS timeouts, not lost.
    assert_eq!(rows.dns.iter().filter(|d| d.rcode == "TIMEOUT").count(), 2);
}

/// Keep-alive requests R1..R4 and their responses, each event with its place in its
/// direction's byte stream; the event of `lost` response (0-based) never reaches user space.
fn exchanges_with_a_lost_response(lost: Option<usize>) -> (Rows, SessionStats) {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let (mut sent, mut received) = (1_000u32, 90_000u32);
    let mut t = 0;
    for i in 0..4 {
        let request = format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = format!("HTTP/1.1 20{i} OK\r\nContent-Length: 2\r\n\r\nok");
        sent = sent.wrapping_add(request.len() as u32);
        received = received.wrapping_add(response.len() as u32);
        t += 1_000;
        let mut req = tcp(
            1,
            SocketSyscall::Write,
            t,
            CLIENT,
            SERVER,
            request.as_bytes(),
        );
        req.stream_end = sent;
        let mut resp = tcp(
            1,
            SocketSyscall::Read,
            t + 500,
            CLIENT,
            SERVER,
            response.as_bytes(),
        );
        resp.stream_end = received;
        s.on_event(&req, CLIENT_CONN, &listen, &mut rows);
        if lost != Some(i) {
            s.on_event(&resp, CLIENT_CONN, &listen, &mut rows);
        }
    }
    (rows, s.stats().clone())
}

#[test]
fn a_lost_response_costs_its_own_call_only() {
    let calls = |rows: &Rows| -> Vec<(String, String)> {
        rows.calls
            .iter()
            .map(|c| (c.resource.clone(), c.status.to_string()))
            .collect()
    };
    let (all, stats) = exchanges_with_a_lost_response(None);
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        calls(&all),
        pairs(&[
            ("/r0", "200"),
            ("/r1", "201"),
            ("/r2", "202"),
            ("/r3", "203")
        ])
    );
    assert_eq!(stats.per_protocol["http"].resynced, 0);
    // R1's response is lost: the gap in the response stream drops R1 (unmatched) and R2 and
    // R3 keep their own responses (before, R2 was paired with R1's request, and so on).
    let (rows, stats) = exchanges_with_a_lost_response(Some(1));
    assert_eq!(
        calls(&rows),
        pairs(&[("/r0", "200"), ("/r2", "202"), ("/r3", "203")])
    );
    let http = &stats.per_protocol["http"];
    assert_eq!((http.resynced, http.unmatched, http.calls), (1, 1, 3));
}

#[test]
fn an_unknown_stream_position_is_no_gap() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let mut t = 0;
    for end in [5_000 + request.len() as u32, 0, 9_999] {
        t += 100;
        let mut req = tcp(1, SocketSyscall::Write, t, CLIENT, SERVER, request);
        // Known, then 0 (UDP or hand-made: unknown, unchecked), then a jump: the only gap.
        req.stream_end = end;
        s.on_event(&req, CLIENT_CONN, &listen, &mut rows);
        let resp = tcp(1, SocketSyscall::Read, t + 50, CLIENT, SERVER, response);
        s.on_event(&resp, CLIENT_CONN, &listen, &mut rows);
    }
    assert_eq!(rows.calls.len(), 3);
    assert_eq!(s.stats().per_protocol["http"].resynced, 1);
}

#[test]
fn a_receive_that_reached_the_fin_is_no_gap() {
    // The response comes in two reads; the second also reaches the server's FIN, which
    // `copied_seq` counts: its end is one past its last byte.
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let request = b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n";
    let head = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n";
    let mut req = tcp(1, SocketSyscall::Write, 100, CLIENT, SERVER, request);
    req.stream_end = 7_000;
    s.on_event(&req, CLIENT_CONN, &listen, &mut rows);
    let mut first = tcp(1, SocketSyscall::Read, 200, CLIENT, SERVER, head);
    first.stream_end = 50_000 + head.len() as u32;
    s.on_event(&first, CLIENT_CONN, &listen, &mut rows);
    let mut last = tcp(1, SocketSyscall::Read, 300, CLIENT, SERVER, b"ok");
    last.stream_end = first.stream_end + 2 + 1;
    s.on_event(&last, CLIENT_CONN, &listen, &mut rows);
    let http = &s.stats().per_protocol["http"];
    assert_eq!((http.resynced, http.unmatched, http.calls), (0, 0, 1));
    assert_eq!(rows.calls.len(), 1);
    assert_eq!(rows.calls[0].status, "200");
}

/// An HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET request's HEADERS (END_STREAM, END_HEADERS): `:method GET` and `:scheme http` from
/// the HPACK static table, `:path` a literal with an indexed name (RFC 7541 §6.2.2).
fn h2_get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    h2_frame(1, 0x5, stream, &block)
}

#[test]
fn http2_streams_are_calls_paired_by_stream_with_their_own_timing() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let mut first = kindling_protocols::http2::PREFACE.to_vec();
    first.extend(h2_frame(4, 0, 0, &[]));
    first.extend(h2_get(1, "/a?q=1"));
    // `:status 404` and `:status 200` are static entries 13 and 8.
    let mut answer_b = h2_frame(1, 0x4, 3, &[0x8d]);
    answer_b.extend(h2_frame(0, 0x1, 3, b"nope"));
    use SocketSyscall::*;
    for ev in [
        tcp(1, Write, 1000, CLIENT, SERVER, &first),
        tcp(1, Write, 1100, CLIENT, SERVER, &h2_get(3, "/b")),
        tcp(1, Read, 2000, CLIENT, SERVER, &answer_b),
        tcp(1, Read, 3000, CLIENT, SERVER, &h2_frame(1, 0x4, 1, &[0x88])),
        tcp(
            1,
            Read,
            5000,
            CLIENT,
            SERVER,
            &h2_frame(0, 0x1, 1, b"0123456789"),
        ),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    let got: Vec<_> = rows
        .calls
        .iter()
        .map(|c| {
            (
                c.ts_ns,
                c.protocol,
                c.resource.as_str(),
                c.status.as_ref(),
                c.is_error,
                (c.request_sent_ns, c.waiting_ttfb_ns, c.content_download_ns),
                (c.request_bytes, c.response_bytes),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1100, "http2", "/b", "404", true, (0, 900, 0), (0, 4)),
            (1000, "http2", "/a", "200", false, (0, 2000, 2000), (0, 10)),
        ]
    );
    assert_eq!(rows.calls[0].method, "GET");
    let stats = s.stats().per_protocol["http2"];
    assert_eq!((stats.calls, stats.unmatched, stats.unparsed), (2, 0, 0));
}

/// A read of 3,021 bytes captured as the kernel side does it: its first 1,024 bytes and its
/// last 256 (the tail). The DATA frame is skipped by its length to the last frame, in the
/// tail, which ends the stream: the call is whole, its bytes exact.
#[test]
fn an_http2_stream_ended_in_a_long_reads_tail_is_a_whole_call() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let mut first = kindling_protocols::http2::PREFACE.to_vec();
    first.extend(h2_frame(4, 0, 0, &[]));
    first.extend(h2_get(1, "/big"));
    let mut answer = h2_frame(1, 0x4, 1, &[0x88]);
    answer.extend(h2_frame(0, 0, 1, &[7; 3000]));
    answer.extend(h2_frame(0, 0x1, 1, b"end"));
    assert_eq!(answer.len(), 3031);
    let mut long = event(
        1,
        SocketSyscall::Read,
        2000,
        CLIENT,
        SERVER,
        false,
        &[&answer[..1024], &answer[answer.len() - 256..]].concat(),
        answer.len(),
    );
    long.tail = 256;
    let request = tcp(1, SocketSyscall::Write, 1000, CLIENT, SERVER, &first);
    for ev in [request, long] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    let got: Vec<_> = rows
        .calls
        .iter()
        .map(|c| (c.protocol, c.status.as_ref(), c.response_bytes))
        .collect();
    assert_eq!(got, [("http2", "200", 3003)]);
    let stats = s.stats().per_protocol["http2"];
    assert_eq!((stats.calls, stats.unparsed), (1, 0));
}

/// A TLS record holding one handshake message of type `kind` with `body`.
fn tls_handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut hs = vec![kind];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![22, 3, 1];
    record.extend((hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

/// A TLS connection as the agent sees it with the uprobes: the handshake's ciphertext from
/// the socket (a ClientHello naming `api.svc`, a ServerHello choosing TLS 1.3), then the
/// plaintext of OpenSSL's calls. The plaintext is one `http` call marked `openssl`; the
/// ciphertext after it is not parsed; the tracker is handed the server name, the version and
/// the handshake's duration (ClientHello to the first plaintext).
#[test]
fn tls_plaintext_is_parsed_and_the_handshake_named_and_timed() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let name = b"api.svc";
    // server_name: type 0, its length, the list's length, a host_name entry (type 0).
    let n = name.len() as u8;
    let mut sni = vec![0, 0, 0, n + 5, 0, n + 3, 0, 0, n];
    sni.extend(name);
    let mut hello = vec![3, 3];
    hello.extend([7; 32]);
    hello.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    hello.extend((sni.len() as u16).to_be_bytes());
    hello.extend(&sni);
    let mut server = vec![3, 3];
    server.extend([5; 32]);
    server.extend([0, 0x13, 0x01, 0, 0, 6, 0, 43, 0, 2, 3, 4]);
    use SocketSyscall::*;
    let request = b"GET /secure HTTP/1.1\r\nHost: api.svc\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for ev in [
        tcp(1, Write, 1000, CLIENT, SERVER, &tls_handshake(1, &hello)),
        tcp(1, Read, 2000, CLIENT, SERVER, &tls_handshake(2, &server)),
        tcp(1, SslWrite, 5000, CLIENT, SERVER, request),
        // The ciphertext of a later write outside OpenSSL's calls (a close_notify).
        tcp(
            1,
            Write,
            5500,
            CLIENT,
            SERVER,
            b"\x15\x03\x03\x00\x02\x01\x00",
        ),
        tcp(1, SslRead, 7000, CLIENT, SERVER, response),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    let got: Vec<_> = rows
        .calls
        .iter()
        .map(|c| {
            (
                c.protocol,
                c.tls,
                c.resource.as_str(),
                c.status.as_ref(),
                c.ts_ns,
            )
        })
        .collect();
    assert_eq!(got, [("http", "openssl", "/secure", "200", 5000)]);
    let updates: Vec<_> = s.take_tls_updates().collect();
    let info = |version: Option<&'static str>, handshake_ns: Option<u64>| TlsInfo {
        sni: Some("api.svc".into()),
        version,
        handshake_ns,
        library: None,
    };
    let conn = CLIENT_CONN.unwrap().conn_id;
    // The first plaintext names the library, then ends the handshake.
    let library = TlsInfo {
        library: Some("openssl"),
        ..TlsInfo::default()
    };
    assert_eq!(
        updates,
        [
            (1, conn, info(None, None)),
            (1, conn, info(Some("TLS 1.3"), None)),
            (1, conn, library.clone()),
            (1, conn, info(Some("TLS 1.3"), Some(4000))),
        ]
    );
    let mut kept = TlsInfo::default();
    for (_, _, update) in updates {
        kept.update(update);
    }
    assert_eq!(kept.kind(), "openssl");
    assert_eq!(
        kept,
        TlsInfo {
            library: Some("openssl"),
            ..info(Some("TLS 1.3"), Some(4000))
        }
    );
    assert_eq!(s.stats().undetected, 0);
}

#[test]
fn an_http1_connection_upgraded_to_h2c_is_http2_calls_from_its_first_request() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let upgrade = b"GET /up HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\n\
Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    let switching =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    let mut first_answer = h2_frame(4, 0, 0, &[]);
    first_answer.extend(h2_frame(1, 0x4, 1, &[0x88]));
    let mut preface = kindling_protocols::http2::PREFACE.to_vec();
    preface.extend(h2_frame(4, 0, 0, &[]));
    preface.extend(h2_get(3, "/b"));
    let mut answer_b = h2_frame(1, 0x4, 3, &[0x8d]);
    answer_b.extend(h2_frame(0, 0x1, 3, b"nope"));
    use SocketSyscall::*;
    for ev in [
        tcp(1, Write, 1000, CLIENT, SERVER, upgrade),
        tcp(1, Read, 2000, CLIENT, SERVER, switching),
        tcp(1, Read, 2500, CLIENT, SERVER, &first_answer),
        tcp(
            1,
            Read,
            4000,
            CLIENT,
            SERVER,
            &h2_frame(0, 0x1, 1, b"0123456789"),
        ),
        tcp(1, Write, 5000, CLIENT, SERVER, &preface),
        tcp(1, Read, 6000, CLIENT, SERVER, &answer_b),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    let got: Vec<_> = rows
        .calls
        .iter()
        .map(|c| {
            (
                c.ts_ns,
                c.protocol,
                c.method.as_ref(),
                c.resource.as_str(),
                c.status.as_ref(),
                (c.request_sent_ns, c.waiting_ttfb_ns, c.content_download_ns),
                (c.request_bytes, c.response_bytes),
            )
        })
        .collect();
    // The upgrade request is stream 1: its response is the one on stream 1 (the 101 is
    // interim), and its size is the HTTP/1 request's.
    assert_eq!(
        got,
        [
            (
                1000,
                "http2",
                "GET",
                "/up",
                "200",
                (0, 1500, 1500),
                (upgrade.len() as u64, 10)
            ),
            (5000, "http2", "GET", "/b", "404", (0, 1000, 0), (0, 4)),
        ]
    );
    let (http, http2) = (
        s.stats().per_protocol["http"],
        s.stats().per_protocol["http2"],
    );
    assert_eq!((http.calls, http.unmatched), (0, 0));
    assert_eq!((http2.calls, http2.unmatched, http2.unparsed), (2, 0, 0));
}

#[test]
fn calls_in_flight_are_listed_timed_up_to_now() {
    let mut s = sessionizer(Duration::from_secs(5));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    let mut first = kindling_protocols::http2::PREFACE.to_vec();
    first.extend(h2_frame(4, 0, 0, &[]));
    // Stream 1: a request without END_STREAM (a client stream), answered with headers only.
    let mut open = h2_get(1, "/watch");
    open[4] = 0x4;
    first.extend(open);
    use SocketSyscall::*;
    for ev in [
        tcp(1, Write, 1000, CLIENT, SERVER, &first),
        tcp(1, Write, 1100, CLIENT, SERVER, &h2_get(3, "/slow")),
        tcp(1, Read, 3000, CLIENT, SERVER, &h2_frame(1, 0x4, 1, &[0x88])),
        tcp(1, Write, 8000, CLIENT, SERVER, &h2_get(5, "/new")),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    assert!(rows.calls.is_empty());
    let listed = |s: &Sessionizer, min_age: i64, max: usize| {
        let mut got: Vec<_> = s
            .open_calls(10_000, min_age, max)
            .into_iter()
            .map(|c| {
                (
                    c.ts_ns,
                    c.resource,
                    c.status.into_owned(),
                    (c.request_sent_ns, c.waiting_ttfb_ns, c.content_download_ns),
                )
            })
            .collect();
        got.sort();
        got
    };
    // Stream 1 is downloading since 3000, stream 3 waiting since 1100; stream 5 is younger
    // than the minimum age.
    assert_eq!(
        listed(&s, 5_000, 10),
        [
            (1000, "/watch".to_owned(), "200".to_owned(), (0, 2000, 7000)),
            (1100, "/slow".to_owned(), String::new(), (0, 8900, 0)),
        ]
    );
    assert_eq!(listed(&s, 0, 10).len(), 3);
    assert_eq!(listed(&s, 0, 2).len(), 2, "bounded");
    // Listing changes nothing: stream 1 ends as usual (its response ended) and is no longer
    // in flight.
    s.on_event(
        &tcp(
            1,
            Read,
            12_000,
            CLIENT,
            SERVER,
            &h2_frame(0, 0x1, 1, b"done"),
        ),
        CLIENT_CONN,
        &listen,
        &mut rows,
    );
    let ended: Vec<_> = rows
        .calls
        .iter()
        .map(|c| (c.resource.as_str(), c.ts_ns))
        .collect();
    assert_eq!(ended, [("/watch", 1000)]);
    assert_eq!(listed(&s, 0, 10).len(), 2);
}

#[test]
fn the_agents_own_query_port_is_not_parsed() {
    let mut s = sessionizer(Duration::from_secs(5)).ignoring_port(Some(80));
    let mut rows = Rows::default();
    let listen = HashSet::new();
    use SocketSyscall::*;
    for ev in [
        tcp(1, Write, 1000, CLIENT, SERVER, b"GET / HTTP/1.1\r\n\r\n"),
        tcp(
            1,
            Read,
            2000,
            CLIENT,
            SERVER,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
    ] {
        s.on_event(&ev, CLIENT_CONN, &listen, &mut rows);
    }
    assert_eq!((rows.calls.len(), s.live()), (0, 0));
    assert_eq!(s.stats().undetected, 0);
}
