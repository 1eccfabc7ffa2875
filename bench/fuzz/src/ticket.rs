//! The `ticket` target: bytes as the ticket of a Flight `DoGet`. They go through
//! [`FragmentTicket::decode`]; a ticket that decodes is then served exactly as the agent's
//! Flight server serves it: [`AgentFlightService::do_get`] (decode, [`LocalQueries`] planning
//! and execution under [`QueryLimits`], the deadline, Flight encoding) on a multi-threaded
//! tokio runtime like the agent's, over a small [`Store`] with a few rows in every table (one
//! sealed, compressed chunk and one open chunk each). The response stream is read to its end.
//!
//! Errors are fine. Panics, aborts (stack overflow), allocations over libFuzzer's
//! `-malloc_limit_mb`, hangs (`-timeout`) and a query that outlives its time limit by more
//! than [`GRACE`] are findings. "Outlives" means both in wall-clock time and in CPU time used
//! by the process meanwhile: on a busy machine (these runs are niced) wall-clock time alone
//! stretches without the query doing more work.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, OnceLock, atomic::Ordering},
    time::{Duration, Instant},
};

use arrow_flight::{Ticket, flight_service_server::FlightService};
use futures::StreamExt;
use kindling_agent::{
    counters::PipelineCounters,
    query::{AgentInfo, LocalQueries, QueryLimits},
    records::{
        CallRecord, DnsRecord, Endpoints, FlowHealth, FlowRecord, Owner, Role, TcpEventRecord,
        TcpEventType, TlsInfo,
        builders::{CallsBuilder, DnsBuilder, FlowsBuilder, TcpEventsBuilder},
    },
    serve::AgentFlightService,
    sessions::ProtocolCounters,
    store::{Compression, Store, StoreConfig},
};
use kindling_protocols::Protocol;
use kindling_wire::{FragmentTicket, TICKET_VERSION, schema};

/// Limits of one query: tight, so that the fuzzer reaches them.
pub const LIMITS: QueryLimits = QueryLimits {
    memory_bytes: 16 << 20,
    timeout: Duration::from_secs(2),
};

/// How long past its limit a query may still run (the current batch finishing, a loaded
/// machine) before it counts as not bounded.
pub const GRACE: Duration = Duration::from_secs(3);

/// Rows per table in the store; chunks of [`CHUNK_ROWS`].
const ROWS: u16 = 6;
const CHUNK_ROWS: usize = 4;

/// The runtime and the service, built once per process.
#[derive(Debug)]
struct Setup {
    runtime: tokio::runtime::Runtime,
    service: AgentFlightService,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        // As the agent's query runtime (agent/src/main.rs): two workers with 8 MiB stacks, so
        // that deep recursion fails here where it would fail in the agent. (ASan's larger
        // frames make it fail a little earlier here.)
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("query")
            .thread_stack_size(8 << 20)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let store = Arc::new(store());
        let counters = Arc::new(PipelineCounters::default());
        counters.events_received.store(1234, Ordering::Relaxed);
        counters.kernel_ringbuf_full.store(3, Ordering::Relaxed);
        {
            let mut protocols = counters.protocols.lock().expect("fresh lock");
            *protocols.of(Protocol::Http) = ProtocolCounters {
                calls: 5,
                unparsed: 1,
                truncated: 2,
                unknown_headers: 0,
                unmatched: 0,
                resynced: 0,
            };
            *protocols.of(Protocol::Dns) = ProtocolCounters {
                calls: 2,
                unparsed: 0,
                truncated: 0,
                unknown_headers: 0,
                unmatched: 1,
                resynced: 1,
            };
        }
        let info = Arc::new(AgentInfo::new("node-fuzz", counters));
        let service = AgentFlightService::new(LocalQueries::new(store, info, LIMITS));
        Setup { runtime, service }
    })
}

/// The whole fuzz body.
pub fn run(data: &[u8]) {
    let ticket = match FragmentTicket::decode(data) {
        Ok(t) => t,
        Err(_) => return,
    };
    assert_eq!(ticket.v, TICKET_VERSION, "decode accepted another version");
    let again = FragmentTicket::decode(&ticket.encode()).expect("a decoded ticket re-encodes");
    assert_eq!(again, ticket, "encode/decode round trip");

    if skipped(&ticket.sql) {
        return;
    }
    let setup = setup();
    let service = setup.service.clone();
    let bytes = data.to_vec();
    let started = Instant::now();
    let cpu_started = cpu_time();
    // As tonic runs a handler: a task on the runtime's workers.
    let task = setup.runtime.spawn(async move {
        let request = tonic::Request::new(Ticket::new(bytes));
        let response = service.do_get(request).await;
        let planned = started.elapsed();
        let response = match response {
            Ok(r) => r,
            Err(status) => return (planned, 0usize, Some(status)),
        };
        let mut stream = response.into_inner();
        let mut messages = 0;
        let mut error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(_flight_data) => messages += 1,
                Err(status) => {
                    error = Some(status);
                    break;
                }
            }
        }
        (planned, messages, error)
    });
    let outcome = match setup.runtime.block_on(task) {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("query task failed: {e}"),
    };
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_started);
    if debug() {
        let (planned, messages, error) = &outcome;
        eprintln!(
            "ticket: planned in {planned:?}, {messages} Flight messages in {elapsed:?} ({cpu:?} CPU), error: {:?}",
            error
                .as_ref()
                .map(|s| (s.code(), s.message().chars().take(300).collect::<String>()))
        );
    }
    let bound = LIMITS.timeout + GRACE;
    assert!(
        elapsed <= bound || cpu <= bound,
        "the query ran {elapsed:?} and used {cpu:?} of CPU; its time limit is {:?}\nsql: {}",
        LIMITS.timeout,
        ticket.sql
    );
}

/// CPU time the process used so far (user and system, every thread).
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Whether `sql` holds one of the comma-separated words of `KINDLING_FUZZ_SKIP_SQL`
/// (case-insensitive): a way to look past a finding that is understood but not fixed yet
/// (before the 64 MiB output bound, `repeat,pad` did that). Unset, nothing is skipped.
fn skipped(sql: &str) -> bool {
    static SKIP: OnceLock<Vec<String>> = OnceLock::new();
    let words = SKIP.get_or_init(|| {
        std::env::var("KINDLING_FUZZ_SKIP_SQL")
            .map(|v| {
                v.split(',')
                    .map(|w| w.trim().to_lowercase())
                    .filter(|w| !w.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    });
    if words.is_empty() {
        return false;
    }
    let sql = sql.to_lowercase();
    words.iter().any(|w| sql.contains(w.as_str()))
}

/// Whether `KINDLING_FUZZ_DEBUG` is set: then each input's outcome goes to stderr (for
/// looking at seeds and findings with `cargo fuzz run ticket FILE`).
pub fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("KINDLING_FUZZ_DEBUG").is_some())
}

/// A store with [`ROWS`] rows in every table: a sealed chunk (compressed) and an open one.
fn store() -> Store {
    let store = Store::new(
        StoreConfig {
            budget_bytes: 64 << 20,
            chunk_rows: CHUNK_ROWS,
            chunk_duration: Duration::from_secs(3600),
            compression: Compression::Lz4,
            history_budget: None,
        },
        schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).expect("known"))),
    );
    let mut flows = FlowsBuilder::new("node-fuzz");
    let mut calls = CallsBuilder::new("node-fuzz");
    let mut dns = DnsBuilder::new("node-fuzz");
    let mut tcp = TcpEventsBuilder::new("node-fuzz");
    // 2023-11-14T22:13:20Z, one second apart.
    let t0: i64 = 1_700_000_000_000_000_000;
    for i in 0..ROWS {
        let ts = t0 + i64::from(i) * 1_000_000_000;
        let endpoints = Endpoints {
            src_ip: if i % 3 == 2 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8))
            },
            src_port: 40_000 + i,
            dst_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dst_port: [8080, 6379, 5432, 53, 3306, 80][usize::from(i)],
        };
        let owner = Owner {
            pid: 100 + u32::from(i % 3),
            tid: 200 + u32::from(i),
            comm: ["curl", "redis-cli", "psql", "ünïcode", "", "nginx"][usize::from(i)].into(),
            cgroup_id: 0,
        };
        let role = if i % 2 == 0 {
            Role::Client
        } else {
            Role::Server
        };
        flows.append(&FlowRecord {
            start_ts_ns: ts - 500_000,
            end_ts_ns: ts,
            conn_id: u64::from(i) + 1,
            owner: owner.clone(),
            role,
            endpoints,
            bytes_sent: u64::from(i) * 1000,
            bytes_received: u64::from(i) * 3000,
            open: i == 5,
            health: FlowHealth {
                srtt_us: (i != 1).then_some(50 + u32::from(i)),
                srtt_min_us: (i != 1).then_some(40),
                srtt_max_us: (i != 1).then_some(90),
                retransmits: u32::from(i % 2),
                resets: u32::from(i == 3),
                connect_latency_ns: (role == Role::Client).then_some(120_000),
                close_reason: ["fin", "rst", "timeout", "fin", "unreachable", ""][usize::from(i)],
            },
            tls: TlsInfo {
                sni: (i == 2).then(|| "api.example".to_owned()),
                version: (i == 2).then_some("TLS 1.3"),
                handshake_ns: (i == 2).then_some(900_000),
                library: None,
            },
        });
        calls.append(&CallRecord {
            ts_ns: ts,
            protocol: ["http", "redis", "postgresql", "dns", "mysql", "http"][usize::from(i)],
            role,
            method: ["GET", "SET", "SELECT", "A", "INSERT", "POST"][usize::from(i)].into(),
            resource: [
                "/api/users",
                "SET",
                "SELECT * FROM t WHERE a = ?",
                "example.com",
                "INSERT INTO t VALUES (?)",
                "/submit",
            ][usize::from(i)]
            .to_owned(),
            status: ["200", "OK", "", "NOERROR", "1146", "500"][usize::from(i)].into(),
            is_error: i >= 4,
            error_message: (i == 4).then(|| "Table 'x.nope' doesn't exist".to_owned()),
            request_sent_ns: 1_000 * u64::from(i),
            waiting_ttfb_ns: 20_000 + 7_000 * u64::from(i),
            content_download_ns: 500,
            request_bytes: 100 + u64::from(i),
            response_bytes: 2_000 - u64::from(i),
            endpoints,
            owner: owner.clone(),
            conn_id: u64::from(i) + 1,
            tls: "none",
            trace_id: (i == 0).then(|| "4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
            request_payload: (i == 0).then(|| "GET /api/users HTTP/1.1\r\n".to_owned()),
            response_payload: None,
        });
        dns.append(&DnsRecord {
            ts_ns: ts,
            domain: [
                "example.com",
                "example.com.svc.cluster.local",
                "nope.invalid",
                "a.b",
                "x",
                "www.example.org",
            ][usize::from(i)]
            .to_owned(),
            qtype: ["A", "A", "AAAA", "TXT", "A", "CNAME"][usize::from(i)].to_owned(),
            rcode: [
                "NOERROR", "NXDOMAIN", "NXDOMAIN", "SERVFAIL", "TIMEOUT", "NOERROR",
            ][usize::from(i)]
            .to_owned(),
            latency_ns: (i != 4).then_some(300_000 + u64::from(i)),
            answers: if i == 0 {
                "93.184.216.34".to_owned()
            } else {
                String::new()
            },
            server_ip: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
            transport: if i == 3 { "tcp" } else { "udp" },
            owner: owner.clone(),
            client_ip: endpoints.src_ip,
            search_expansion: i == 1,
            search_misses: u32::from(i == 0),
        });
        let mut row = TcpEventRecord::new(
            ts,
            [
                TcpEventType::Connect,
                TcpEventType::StateChange,
                TcpEventType::Close,
                TcpEventType::Retransmit,
                TcpEventType::Drop,
                TcpEventType::Rtt,
            ][usize::from(i)],
            u64::from(i) + 1,
            role,
            owner,
            endpoints,
        );
        row.syscall_ret = (i == 0).then_some(-115);
        row.old_state = if i == 1 { "SYN_SENT" } else { "" };
        row.new_state = if i == 1 { "ESTABLISHED" } else { "" };
        row.reason = (i == 4).then(|| "NO_SOCKET".to_owned());
        row.srtt_us = (i == 5).then_some(77);
        tcp.append(&row);
        // Two batches per chunk, so that sealing concatenates.
        if i % 2 == 1 {
            store
                .append(schema::FLOWS, flows.finish().expect("flows"))
                .expect("append");
            store
                .append(schema::CALLS, calls.finish().expect("calls"))
                .expect("append");
            store
                .append(schema::DNS, dns.finish().expect("dns"))
                .expect("append");
            store
                .append(schema::TCP_EVENTS, tcp.finish().expect("tcp_events"))
                .expect("append");
        }
    }
    store.compress_sealed().expect("compress");
    store
}
