//! L7 parse benchmark: how many `calls` rows per second the agent's user-space L7 path
//! sustains on one core (data event -> connection lookup -> sessionizer -> protocol parser ->
//! matched call), and how many bytes each `calls` row takes in an Arrow batch.
//!
//! The data events are synthetic but shaped like the ones the kernel sends on loopback for
//! keep-alive connections whose both ends are on this node: every request is four events (the
//! client's send, the server's receive, the server's send of the response, the client's
//! receive), and gives two calls (a client row and a server row). Two workloads:
//!
//! - `http`: a curl-like `GET` and an nginx-like `200 OK` with `Content-Length: 100` and its
//!   100-byte body in the same send (headers and body in one writev, as nginx does);
//! - `redis`: `SET key value` / `+OK`, then `GET key` / `$5 value`, alternately;
//! - `grpc`: a unary gRPC call over HTTP/2 as grpcio sends it once the connection is warm
//!   (its header fields indexed from the dynamic tables, Huffman-coded by an HPACK encoder):
//!   HEADERS and DATA, then HEADERS, DATA and trailers; each connection first sends the preface
//!   and a first call that fills the tables (untimed).
//!
//! Connections are set up once through the real `ConnTracker` (so that every data event pays
//! the `conn_ref` lookup the pipeline does), and one untimed round lets every session detect
//! its protocol: the timed rounds are the steady state of long-lived keep-alive connections.
//! Each workload is measured twice, side by side: with a sink that only counts calls (parse
//! only), and with `CallsBuilder` appending every row and finishing a batch every 8192 rows as
//! the pipeline's flush does (parse + Arrow rows; the store append is measured by `ingest`).
//!
//!   cargo run --release -p kindling-bench --bin parse -- [REQUESTS_PER_WORKLOAD]
use std::{collections::HashSet, hint::black_box, time::Duration, time::Instant};

use kindling_agent::{
    conntrack::ConnTracker,
    decode::Clock,
    records::{CallRecord, DnsRecord, builders::CallsBuilder, pending::PendingRows},
    sessions::{CallSink, Sessionizer},
};
use kindling_agent_common::{
    AF_INET, CAPTURE_MAX, COMM_LEN, DataEvent, PAYLOAD_MAX, SocketSyscall, TcpEvent, TcpEventKind,
    tcp_state::*,
};

/// Keep-alive connections per workload, served round-robin.
const CONNECTIONS: u64 = 256;
/// Rows per batch, as the pipeline's `flush_rows`.
const BATCH_ROWS: usize = 8192;

const HTTP_REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const HTTP_RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Wed, 25 Nov 2026 23:19:44 GMT\r\nContent-Type: text/html\r\nContent-Length: 100\r\n\
Last-Modified: Wed, 25 Nov 2026 20:00:00 GMT\r\nConnection: keep-alive\r\n\
ETag: \"6925f3c0-64\"\r\nAccept-Ranges: bytes\r\n\r\n";
const REDIS_SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$9\r\nuser:1234\r\n$5\r\nvalue\r\n";
const REDIS_OK: &[u8] = b"+OK\r\n";
const REDIS_GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$9\r\nuser:1234\r\n";
const REDIS_VALUE: &[u8] = b"$5\r\nvalue\r\n";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Http,
    Redis,
    Grpc,
}

/// HTTP/2 frame: 24-bit length, type, flags, stream id.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of `fields` from `encoder`, as gRPC's encoders write them: Huffman-coded,
/// added to the dynamic table, indexed once they are there.
fn hpack(encoder: &mut httlib_hpack::Encoder<'_>, fields: &[(&str, &str)]) -> Vec<u8> {
    use httlib_hpack::Encoder;
    let flags = Encoder::HUFFMAN_NAME
        | Encoder::HUFFMAN_VALUE
        | Encoder::WITH_INDEXING
        | Encoder::BEST_FORMAT;
    let mut block = Vec::new();
    for (name, value) in fields {
        encoder
            .encode(
                (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags),
                &mut block,
            )
            .expect("encodable field");
    }
    block
}

/// One unary gRPC call on `stream`: the client's HEADERS and DATA in one write, the server's
/// HEADERS, DATA and trailers in one write.
fn grpc_call(
    client: &mut httlib_hpack::Encoder<'_>,
    server: &mut httlib_hpack::Encoder<'_>,
    stream: u32,
) -> (Vec<u8>, Vec<u8>) {
    let request = hpack(
        client,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/helloworld.Greeter/SayHello"),
            (":authority", "greeter.default.svc:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-accept-encoding", "identity,deflate,gzip"),
            (
                "user-agent",
                "grpc-python/1.85.4 grpc-c/52.0.0 (linux; chttp2)",
            ),
        ],
    );
    let mut up = h2_frame(1, 0x4, stream, &request);
    up.extend(h2_frame(0, 0x1, stream, b"\0\0\0\0\x07\n\x05world"));
    let head = hpack(
        server,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    let trailers = hpack(server, &[("grpc-status", "0"), ("grpc-message", "")]);
    let mut down = h2_frame(1, 0x4, stream, &head);
    down.extend(h2_frame(0, 0, stream, b"\0\0\0\0\x0d\n\x0bHello world"));
    down.extend(h2_frame(1, 0x5, stream, &trailers));
    (up, down)
}

/// A request's bytes and its response's.
type Exchange = (Vec<u8>, Vec<u8>);

/// Each connection's untimed first exchange, and the call it then repeats (stream ids are not
/// checked for growth, so the steady-state call keeps stream 3).
fn grpc_exchanges() -> (Exchange, Exchange) {
    let mut client = httlib_hpack::Encoder::default();
    let mut server = httlib_hpack::Encoder::default();
    let (first_up, first_down) = grpc_call(&mut client, &mut server, 1);
    let mut up = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    up.extend(h2_frame(4, 0, 0, &[]));
    up.extend(first_up);
    let mut down = h2_frame(4, 0, 0, &[]);
    down.extend(first_down);
    ((up, down), grpc_call(&mut client, &mut server, 3))
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Redis => "redis",
            Self::Grpc => "grpc",
        }
    }

    /// The session protocol whose counters `protocol_stats` keeps its calls under.
    fn session_protocol(self) -> &'static str {
        match self {
            Self::Grpc => "http2",
            other => other.name(),
        }
    }

    /// An untimed first exchange per connection, before the ones it repeats.
    fn prelude(self) -> Option<(Vec<u8>, Vec<u8>)> {
        (self == Self::Grpc).then(|| grpc_exchanges().0)
    }

    fn server_port(self) -> u16 {
        match self {
            Self::Http => 8080,
            Self::Redis => 6379,
            Self::Grpc => 50051,
        }
    }

    /// The (request, response) exchanges a connection repeats.
    fn exchanges(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self {
            Self::Http => {
                let mut response = HTTP_RESPONSE_HEAD.to_vec();
                response.extend(std::iter::repeat_n(b'x', 99));
                response.push(b'\n');
                vec![(HTTP_REQUEST.to_vec(), response)]
            }
            Self::Redis => vec![
                (REDIS_SET.to_vec(), REDIS_OK.to_vec()),
                (REDIS_GET.to_vec(), REDIS_VALUE.to_vec()),
            ],
            Self::Grpc => vec![grpc_exchanges().1],
        }
    }
}

fn comm(name: &[u8]) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    c[..name.len()].copy_from_slice(name);
    c
}

fn addr(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[127, 0, 0, last]);
    a
}

/// A data event of socket `sk` (local port `sport`, remote `dport`) moving `bytes`.
fn data_event(sk: u64, syscall: SocketSyscall, sport: u16, dport: u16, bytes: &[u8]) -> DataEvent {
    let captured = bytes.len().min(PAYLOAD_MAX);
    let mut payload = [0u8; CAPTURE_MAX];
    payload[..captured].copy_from_slice(&bytes[..captured]);
    let server = sport == 8080 || sport == 6379 || sport == 50051;
    DataEvent {
        ts_exit_ns: 0,
        skaddr: sk,
        len: bytes.len() as u64,
        cgroup_id: 0,
        pid: if server { 2000 } else { 3000 },
        tid: if server { 2001 } else { 3001 },
        fd: 7,
        stream_end: 0,
        captured: captured as u16,
        syscall: syscall as u8,
        sock_type: 1,
        sport,
        dport,
        family: AF_INET,
        tail: 0,
        _pad: [0; 4],
        saddr: addr(1),
        daddr: addr(1),
        comm: comm(if server { b"server" } else { b"client" }),
        payload,
    }
}

fn tcp_event(ts: u64, sk: u64, old: u8, new: u8, sport: u16, dport: u16) -> TcpEvent {
    TcpEvent {
        ts_ns: ts,
        skaddr: sk,
        bytes_sent: 0,
        bytes_received: 0,
        pid: 3000,
        tid: 3001,
        sport,
        dport,
        family: AF_INET,
        kind: TcpEventKind::StateChange as u8,
        old_state: old,
        new_state: new,
        saddr: addr(1),
        daddr: addr(1),
        comm: comm(b"client"),
        ..TcpEvent::zeroed()
    }
}

/// One workload's connections: the tracker that knows them and, per connection, the data
/// events of its exchanges in the order the ring buffer delivers them.
struct Setup {
    tracker: ConnTracker,
    /// `conns[c]` holds 4 events per exchange.
    conns: Vec<Vec<DataEvent>>,
    /// Each connection's first exchange, fed once before the warm-up round.
    preludes: Vec<DataEvent>,
    calls_per_round: u64,
}

fn setup(workload: Workload, base_sk: u64) -> Setup {
    use SocketSyscall::*;
    let port = workload.server_port();
    let mut tracker = ConnTracker::new(Clock::with_offset(1_700_000_000_000_000_000), 1 << 20);
    let mut sink = PendingRows::new("bench-node");
    tracker.on_event(&tcp_event(1, base_sk, CLOSE, LISTEN, port, 0), &mut sink);
    let mut conns = Vec::new();
    let mut preludes = Vec::new();
    for i in 0..CONNECTIONS {
        let (c, s) = (base_sk + 2 + 2 * i, base_sk + 3 + 2 * i);
        let cport = 20_000 + i as u16;
        for ev in [
            tcp_event(10, c, CLOSE, SYN_SENT, 0, port),
            tcp_event(11, s, LISTEN, SYN_RECV, port, cport),
            tcp_event(12, s, SYN_RECV, ESTABLISHED, port, cport),
            tcp_event(13, c, SYN_SENT, ESTABLISHED, cport, port),
        ] {
            tracker.on_event(&ev, &mut sink);
        }
        if let Some((request, response)) = workload.prelude() {
            preludes.push(data_event(c, Sendto, cport, port, &request));
            preludes.push(data_event(s, Read, port, cport, &request));
            preludes.push(data_event(s, Writev, port, cport, &response));
            preludes.push(data_event(c, Recvfrom, cport, port, &response));
        }
        let mut events = Vec::new();
        for (request, response) in workload.exchanges() {
            events.push(data_event(c, Sendto, cport, port, &request));
            events.push(data_event(s, Read, port, cport, &request));
            events.push(data_event(s, Writev, port, cport, &response));
            events.push(data_event(c, Recvfrom, cport, port, &response));
        }
        conns.push(events);
    }
    let calls_per_round = CONNECTIONS * workload.exchanges().len() as u64 * 2;
    Setup {
        tracker,
        conns,
        preludes,
        calls_per_round,
    }
}

/// Data events the pipeline takes off the ring, copies and sorts per round (its `DATA_BATCH`).
const DATA_BATCH: usize = 4096;

/// Feeds `rounds` rounds (every connection does its exchanges once per round, connections
/// interleaved by exchange) through `sessions`, stamping times as it goes. With `batched`, the
/// events go as the pipeline sends them: copied into a batch of [`DATA_BATCH`], sorted by
/// `ts_exit_ns`, then fed.
fn run(
    setup: &mut Setup,
    sessions: &mut Sessionizer,
    listen: &HashSet<u16>,
    rounds: u64,
    t: &mut u64,
    batched: bool,
    sink: &mut impl CallSink,
) {
    let exchanges = setup.conns[0].len() / 4;
    let mut batch: Vec<DataEvent> = Vec::with_capacity(DATA_BATCH);
    fn feed(
        batch: &mut Vec<DataEvent>,
        tracker: &ConnTracker,
        sessions: &mut Sessionizer,
        listen: &HashSet<u16>,
        sink: &mut impl CallSink,
    ) {
        batch.sort_by_key(|ev| ev.ts_exit_ns);
        for ev in batch.iter() {
            sessions.on_event(black_box(ev), tracker.conn_ref(ev.skaddr), listen, sink);
        }
        batch.clear();
    }
    for _ in 0..rounds {
        for x in 0..exchanges {
            for conn in &mut setup.conns {
                for ev in &mut conn[4 * x..4 * x + 4] {
                    *t += 1_000;
                    ev.ts_exit_ns = *t + 400;
                    if batched {
                        batch.push(*ev);
                        if batch.len() == DATA_BATCH {
                            feed(&mut batch, &setup.tracker, sessions, listen, sink);
                        }
                    } else {
                        let conn_ref = setup.tracker.conn_ref(ev.skaddr);
                        sessions.on_event(black_box(ev), conn_ref, listen, sink);
                    }
                }
            }
        }
    }
    if !batch.is_empty() {
        feed(&mut batch, &setup.tracker, sessions, listen, sink);
    }
}

#[derive(Default)]
struct Counting {
    calls: u64,
    bytes: u64,
}

impl CallSink for Counting {
    fn call(&mut self, record: CallRecord) {
        self.calls += 1;
        self.bytes += record.request_bytes;
    }

    fn dns(&mut self, _record: DnsRecord) {}
}

/// Appends rows to the real builder and finishes a batch every [`BATCH_ROWS`].
struct Building {
    builder: CallsBuilder,
    calls: u64,
    /// (rows, Arrow memory bytes) of the last finished batch.
    last_full_batch: Option<(usize, usize)>,
}

impl CallSink for Building {
    fn call(&mut self, record: CallRecord) {
        self.builder.append(&record);
        self.calls += 1;
        if self.builder.len() >= BATCH_ROWS {
            let batch = self.builder.finish().expect("valid calls batch");
            self.last_full_batch = Some((batch.num_rows(), batch.get_array_memory_size()));
        }
    }

    fn dns(&mut self, _record: DnsRecord) {}
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn new_sessions() -> Sessionizer {
    Sessionizer::new(
        Clock::with_offset(1_700_000_000_000_000_000),
        1 << 20,
        Duration::from_secs(5),
    )
}

/// Sets `workload` up afresh, runs one untimed round (protocol detection), then times `rounds`
/// rounds into `sink`; returns the seconds and the calls expected.
fn measure(
    workload: Workload,
    base_sk: u64,
    rounds: u64,
    batched: bool,
    sink: &mut impl CallSink,
) -> (f64, u64) {
    let mut s = setup(workload, base_sk);
    let listen = s.tracker.listen_ports().clone();
    let mut sessions = new_sessions();
    let mut t = 1_000_000u64;
    let mut warm = Counting::default();
    for ev in &mut s.preludes {
        t += 1_000;
        ev.ts_exit_ns = t + 400;
        sessions.on_event(ev, s.tracker.conn_ref(ev.skaddr), &listen, &mut warm);
    }
    assert_eq!(
        warm.calls,
        s.preludes.len() as u64 / 2,
        "{}: prelude calls",
        workload.name()
    );
    warm.calls = 0;
    run(
        &mut s,
        &mut sessions,
        &listen,
        1,
        &mut t,
        batched,
        &mut warm,
    );
    assert_eq!(
        warm.calls,
        s.calls_per_round,
        "{}: warm-up calls",
        workload.name()
    );
    let start = Instant::now();
    run(
        &mut s,
        &mut sessions,
        &listen,
        rounds,
        &mut t,
        batched,
        sink,
    );
    let secs = start.elapsed().as_secs_f64();
    let stats = sessions.stats().per_protocol[workload.session_protocol()];
    assert_eq!(
        (stats.unparsed, stats.truncated, stats.unmatched),
        (0, 0, 0),
        "{}: clean parse",
        workload.name()
    );
    (secs, rounds * s.calls_per_round)
}

fn building() -> Building {
    Building {
        builder: CallsBuilder::new("bench-node"),
        calls: 0,
        last_full_batch: None,
    }
}

fn main() {
    let requests: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("REQUESTS_PER_WORKLOAD"));
    pin_to_cpu0();
    println!(
        "requests per workload: {requests} ({CONNECTIONS} keep-alive connections, both ends, \
         2 calls and 4 data events per request)"
    );
    for (w, workload) in [Workload::Http, Workload::Redis, Workload::Grpc]
        .into_iter()
        .enumerate()
    {
        let base_sk = 0x1000_0000 * (w as u64 + 1);
        let exchanges = workload.exchanges().len() as u64;
        let rounds = (requests / (CONNECTIONS * exchanges)).max(1);

        // Parse only: a sink that counts.
        let mut counting = Counting::default();
        let (parse_s, expected) = measure(workload, base_sk, rounds, false, &mut counting);
        black_box(counting.bytes);
        assert_eq!(
            counting.calls,
            expected,
            "{}: two calls per request",
            workload.name()
        );
        // Parse + Arrow rows.
        let mut rows = building();
        let (build_s, _) = measure(workload, base_sk, rounds, false, &mut rows);
        assert_eq!(rows.calls, expected);
        // As the pipeline feeds: copied into batches of DATA_BATCH, sorted, parse + Arrow rows.
        let mut piped = building();
        let (pipe_s, _) = measure(workload, base_sk, rounds, true, &mut piped);
        assert_eq!(piped.calls, expected);

        let calls = expected as f64;
        println!("{} ({expected} calls):", workload.name());
        for (what, secs) in [
            ("parse only", parse_s),
            ("parse + Arrow rows", build_s),
            ("copy+sort batch + parse + Arrow rows", pipe_s),
        ] {
            println!(
                "  {what:<38} {:>11.0} calls/s  ({:>10.0} data events/s, {:>5.0} ns/call)",
                calls / secs,
                2.0 * calls / secs,
                secs * 1e9 / calls
            );
        }
        println!(
            "  ratio (parse + Arrow / parse only):    {:>11.3}",
            parse_s / build_s
        );
        let (n, bytes) = rows.last_full_batch.expect("at least one full batch");
        println!(
            "  calls bytes/row (Arrow, batch of {n} rows): {:.1}",
            bytes as f64 / n as f64
        );
    }
}
