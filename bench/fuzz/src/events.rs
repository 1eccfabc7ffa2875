//! The `events` target: ring-buffer records through the agent's user-space capture path, in
//! the agent's own capture rounds ([`CaptureState::round`], the step `pipeline::run` repeats):
//! TCP records through [`decode::tcp_event`] into the connection tracker, data records through
//! [`decode::data_event`] (a header and its captured bytes, as the data ring holds them) into
//! the sessionizer, then what the round's timers say is due, and flushes of the pending rows
//! into a small [`Store`]. The harness plays the kernel ([`Kernel`]): its rings and sock_diag.
//!
//! Input format:
//!
//! ```text
//! config: u8            bit 0: keep payloads (`--store-payloads`)
//! then, until the input runs out, one of:
//!   tag & 3 == 0 | 1    a record of the TCP ring (0) or the data ring (1):
//!                         size: u16 LE, then `size` bytes (clamped to what is left)
//!                         tag bit 2 clear: padded with zeros or cut to the struct's size
//!                         (data: to the header and the bytes its `captured` counts)
//!                         tag bit 2 set:   exactly `size` bytes (a wrong size is malformed)
//!   tag & 3 == 2 | 3    end of a round; what the pipeline's timers say is due:
//!                         bit 2: sweep (500 ms passed), bit 3: open-flow report,
//!                         bit 4: RTT sample, bit 5: flush interval passed;
//!                         3: the store's compressor thread then compresses sealed chunks
//! ```
//!
//! The end of the input is a last round that stops the pipeline (everything flushed).
//!
//! A few fields are brought back inside what the kernel side can write (see [`kernel_limits`]),
//! so that findings are reachable from real rings; everything else reaches the agent as given.

use std::{
    collections::{HashMap, VecDeque},
    io,
    time::Duration,
};

use kindling_agent::{
    counters::{KernelCounters, PipelineCounters},
    decode::{self, Clock, DataBatch, ReasonNames, ip},
    records::Endpoints,
    round::{self, CaptureConfig, CaptureState, Due, Kernel},
    sockdiag::TcpInfo,
    store::{Compression, Store, StoreConfig},
};
use kindling_agent_common::{
    CAPTURE_MAX, DATA_HEADER_LEN, DataEvent, SocketSyscall, TAIL_MAX, TcpEvent, TcpEventKind,
};
use kindling_wire::schema;

/// Bound of the connection table (`--max-connections`).
pub const MAX_CONNS: usize = 64;
/// Bound of the session table.
pub const MAX_SESSIONS: usize = 64;
/// Rows waiting that force a flush (the agent's is 8192; small here so that flushes happen).
pub const FLUSH_ROWS: usize = 64;
/// The store's budget: small, so that appends evict.
pub const STORE_BUDGET: u64 = 512 << 10;
/// Rows per chunk: small, so that chunks are sealed and compressed.
pub const CHUNK_ROWS: usize = 16;
/// `--open-flow-interval`, the least age of a connection reported open.
pub const OPEN_FLOW_INTERVAL: Duration = Duration::from_secs(1);
/// `--dns-timeout`.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// `--dns-search-window`.
pub const DNS_SEARCH_WINDOW: Duration = Duration::from_secs(2);
/// Ports listening before the agent started (the pipeline reads them from sock_diag).
pub const LISTEN_PORTS: [u16; 5] = [80, 3306, 5432, 6379, 8080];
/// Distinct socket addresses: records name one of these (or 0), so that events of one
/// socket meet; more than [`MAX_CONNS`], so that the table can fill.
pub const SOCKETS: u64 = 80;
/// Most distinct endpoints the simulated sock_diag reports.
const SOCK_DIAG_MAX: usize = 64;

// make_seeds.py writes records at these offsets.
const _: () = {
    assert!(size_of::<TcpEvent>() == 136);
    assert!(std::mem::offset_of!(TcpEvent, skaddr) == 8);
    assert!(std::mem::offset_of!(TcpEvent, pid) == 32);
    assert!(std::mem::offset_of!(TcpEvent, kind) == 50);
    assert!(std::mem::offset_of!(TcpEvent, saddr) == 56);
    assert!(std::mem::offset_of!(TcpEvent, comm) == 88);
    assert!(std::mem::offset_of!(TcpEvent, srtt_us) == 104);
    assert!(std::mem::offset_of!(TcpEvent, reason) == 124);
    assert!(size_of::<DataEvent>() == 112 + CAPTURE_MAX);
    assert!(std::mem::offset_of!(DataEvent, len) == 16);
    assert!(std::mem::offset_of!(DataEvent, captured) == 48);
    assert!(std::mem::offset_of!(DataEvent, sport) == 52);
    assert!(std::mem::offset_of!(DataEvent, tail) == 58);
    assert!(std::mem::offset_of!(DataEvent, saddr) == 64);
    assert!(std::mem::offset_of!(DataEvent, payload) == 112);
};

/// Timestamps are `bpf_ktime_get_ns()`, nanoseconds since boot: kept below 2^56 (2.3 years
/// of uptime). Larger ones overflow `Clock::wall` (`monotonic as i64 + offset`), which no
/// kernel can make happen.
const TS_MASK: u64 = (1 << 56) - 1;
/// A data event's `len` is a syscall's positive return value (at most `MAX_RW_COUNT`, just
/// under 2^31) or an mmsghdr's u32 `msg_len`.
const LEN_MAX: u64 = u32::MAX as u64;

/// What the kernel side guarantees about the fields user space relies on.
pub fn kernel_limits_tcp(ev: &mut TcpEvent) {
    ev.ts_ns &= TS_MASK;
    ev.skaddr = socket(ev.skaddr);
}

/// As [`kernel_limits_tcp`], for data events: also `captured <= len` (the program copies at
/// most `len` bytes); `captured > CAPTURE_MAX` and a `tail` past `captured` are left to the
/// agent's own checks.
pub fn kernel_limits(ev: &mut DataEvent) {
    ev.ts_exit_ns &= TS_MASK;
    ev.skaddr = socket(ev.skaddr);
    ev.len %= LEN_MAX + 1;
    if u64::from(ev.captured) > ev.len {
        ev.captured = ev.len as u16;
    }
}

/// One of [`SOCKETS`] kernel addresses, or 0 (drops and resets without a socket).
fn socket(raw: u64) -> u64 {
    if raw == 0 {
        0
    } else {
        0xffff_8880_1000_0000 + (raw % SOCKETS) * 0x800
    }
}

/// The kernel as the harness plays it: the rings' records, sock_diag's sockets, and the
/// counts of what the agent must find malformed.
#[derive(Debug, Default)]
struct FuzzKernel {
    /// Records waiting in each ring.
    tcp_ring: Vec<Vec<u8>>,
    data_ring: VecDeque<Vec<u8>>,
    /// What sock_diag would report: the local view of sockets seen in TCP events.
    sock_diag: HashMap<Endpoints, TcpInfo>,
    /// Expected counters, to check the tracker's and the sessionizer's.
    unknown_kinds: u64,
    unknown_syscalls: u64,
}

impl Kernel for FuzzKernel {
    /// Every TCP record, each through `decode::tcp_event`.
    fn drain_tcp(&mut self, mut on_event: impl FnMut(&TcpEvent)) -> (u64, u64) {
        let (mut ok, mut bad) = (0, 0);
        for raw in std::mem::take(&mut self.tcp_ring) {
            let decoded = decode::tcp_event(&raw);
            assert_eq!(
                decoded.is_some(),
                raw.len() == size_of::<TcpEvent>(),
                "decode must accept exactly the records of TcpEvent's size ({} bytes given)",
                raw.len()
            );
            let Some(mut ev) = decoded else {
                bad += 1;
                continue;
            };
            kernel_limits_tcp(&mut ev);
            if TcpEventKind::from_u8(ev.kind).is_none() {
                self.unknown_kinds += 1;
            }
            self.note_sock_diag(&ev);
            on_event(&ev);
            ok += 1;
        }
        (ok, bad)
    }

    /// At most `max` data records, each through `DataBatch::push_record`.
    fn drain_data(&mut self, max: usize, batch: &mut DataBatch) -> (u64, u64) {
        let (mut ok, mut bad) = (0, 0);
        let n = self.data_ring.len().min(max);
        for raw in self.data_ring.drain(..n) {
            let decoded = batch.push_record(&raw);
            assert_eq!(
                decoded.is_some(),
                well_formed_data(&raw),
                "data_event must accept exactly a header and its `captured` bytes ({} bytes)",
                raw.len()
            );
            let Some(ev) = decoded else {
                bad += 1;
                continue;
            };
            kernel_limits(ev);
            if SocketSyscall::from_u8(ev.syscall).is_none() {
                self.unknown_syscalls += 1;
            }
            ok += 1;
        }
        (ok, bad)
    }

    fn tcp_infos(&mut self) -> io::Result<HashMap<Endpoints, TcpInfo>> {
        Ok(self.sock_diag.clone())
    }

    fn counters(&self) -> KernelCounters {
        KernelCounters::default()
    }
}

impl FuzzKernel {
    /// A socket of a TCP event as sock_diag would list it (local view, `src` = local end).
    fn note_sock_diag(&mut self, ev: &TcpEvent) {
        if self.sock_diag.len() >= SOCK_DIAG_MAX {
            return;
        }
        let key = Endpoints {
            src_ip: ip(ev.family, &ev.saddr),
            src_port: ev.sport,
            dst_ip: ip(ev.family, &ev.daddr),
            dst_port: ev.dport,
        };
        self.sock_diag.insert(
            key,
            TcpInfo {
                bytes_sent: ev.bytes_sent,
                bytes_received: ev.bytes_received,
                srtt_us: ev.srtt_us,
                min_rtt_us: ev.rtt_min_us,
                retransmits: ev.retransmits,
            },
        );
    }
}

/// The capture thread's state for one input.
#[derive(Debug)]
pub struct Harness {
    state: CaptureState,
    kernel: FuzzKernel,
    store: Store,
    counters: PipelineCounters,
    rounds: u64,
}

impl Harness {
    /// A fresh capture state, as `pipeline::run` sets it up, with this harness's limits.
    pub fn new(store_payloads: bool) -> Self {
        let config = CaptureConfig {
            node: "fuzz".into(),
            flush_interval: Duration::from_secs(1),
            flush_rows: FLUSH_ROWS,
            max_conns: MAX_CONNS,
            open_flow_interval: OPEN_FLOW_INTERVAL,
            max_sessions: MAX_SESSIONS,
            dns_timeout: DNS_TIMEOUT,
            store_payloads,
            dns_search_window: DNS_SEARCH_WINDOW,
            rtt_sample_interval: Some(Duration::from_secs(1)),
            first_conn_id: 1,
            kubernetes: None,
            cgroups: None,
            yield_after: None,
            own_port: None,
        };
        let state = CaptureState::new(&config, Clock::now(), ReasonNames::default(), LISTEN_PORTS);
        let store = Store::new(
            StoreConfig {
                budget_bytes: STORE_BUDGET,
                chunk_rows: CHUNK_ROWS,
                // Sealing by age would make runs depend on the wall clock.
                chunk_duration: Duration::from_secs(3600),
                compression: Compression::Lz4,
                history_budget: None,
            },
            schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).expect("known"))),
        );
        Self {
            state,
            kernel: FuzzKernel::default(),
            store,
            counters: PipelineCounters::default(),
            rounds: 0,
        }
    }

    /// Runs a whole input (see the module docs).
    pub fn run(input: &[u8]) {
        let Some((&config, mut input)) = input.split_first() else {
            return;
        };
        let mut h = Self::new(config & 1 != 0);
        while let Some((&tag, rest)) = input.split_first() {
            input = rest;
            match tag & 3 {
                ring @ (0 | 1) => {
                    let size = match input {
                        [a, b, rest @ ..] => {
                            input = rest;
                            usize::from(u16::from_le_bytes([*a, *b]))
                        }
                        _ => input.len(),
                    };
                    let (body, rest) = input.split_at(size.min(input.len()));
                    input = rest;
                    let exact = tag & 4 != 0;
                    if ring == 0 {
                        h.kernel
                            .tcp_ring
                            .push(record(body, size_of::<TcpEvent>(), exact));
                    } else {
                        h.kernel.data_ring.push_back(data_record(body, exact));
                    }
                }
                end => h.round(
                    Due {
                        sweep: tag & 4 != 0,
                        open_report: tag & 8 != 0,
                        rtt_sample: tag & 16 != 0,
                        flush: tag & 32 != 0,
                        stopping: false,
                    },
                    end == 3,
                ),
            }
        }
        // Drained until the rings are empty, as the loop does before it stops.
        while !h.kernel.data_ring.is_empty() {
            h.round(Due::default(), false);
        }
        h.round(
            Due {
                stopping: true,
                ..Due::default()
            },
            false,
        );
        if crate::ticket::debug() {
            eprintln!(
                "events: {} rounds, tracker {:?}, sessions {:?}, store {:#?}",
                h.rounds,
                h.state.tracker().stats(),
                h.state.sessions().stats(),
                h.store.stats()
            );
        }
    }

    /// One round of the agent's capture (`CaptureState::round`), then the store's compressor
    /// when `compress`.
    pub fn round(&mut self, due: Due, compress: bool) {
        self.rounds += 1;
        let report = self
            .state
            .round(&mut self.kernel, due, &self.store, &self.counters);
        assert!(report.data_events <= round::DATA_BATCH as u64);
        if let Some(flush) = &report.flushed {
            assert_eq!(
                flush.lost, 0,
                "the store refused {} of {} rows: a row builder's batch does not match its table's schema",
                flush.lost, flush.rows
            );
            assert_eq!(flush.seal_error, None, "sealing chunks");
            assert!(
                self.state.rows().is_empty(),
                "rows left in the builders after a flush"
            );
        }
        if compress {
            self.store
                .compress_sealed()
                .expect("compressing sealed chunks");
        }
        self.check(due.stopping);
    }

    /// Cheap invariants after every round.
    fn check(&self, stopping: bool) {
        let (tracker, sessions) = (self.state.tracker(), self.state.sessions());
        assert!(
            tracker.live() <= MAX_CONNS,
            "{} connections tracked, limit {MAX_CONNS}",
            tracker.live()
        );
        assert!(
            sessions.live() <= MAX_SESSIONS,
            "{} sessions, limit {MAX_SESSIONS}",
            sessions.live()
        );
        let held = self.store.bytes_held();
        assert!(
            held <= STORE_BUDGET,
            "the store holds {held} bytes after an append, over its budget of {STORE_BUDGET}"
        );
        assert_eq!(
            tracker.stats().malformed,
            self.kernel.unknown_kinds,
            "tracker's malformed count vs TCP events of unknown kind"
        );
        assert_eq!(
            sessions.stats().malformed,
            self.kernel.unknown_syscalls,
            "sessionizer's malformed count vs data events of unknown syscall"
        );
        if stopping {
            assert!(self.state.rows().is_empty(), "rows left unflushed at stop");
            assert_eq!(
                self.counters
                    .rows_lost
                    .load(std::sync::atomic::Ordering::Relaxed),
                0
            );
        }
    }
}

/// A ring record: `body` as given (`exact`), else padded with zeros or cut to `size`.
/// Whether a data ring record is a [`DataEvent`] header followed by exactly its `captured`
/// bytes (at most `CAPTURE_MAX`), of which the last `tail` (at most `TAIL_MAX`) are its tail.
fn well_formed_data(raw: &[u8]) -> bool {
    let field = |at: usize| usize::from(u16::from_le_bytes([raw[at], raw[at + 1]]));
    if raw.len() < DATA_HEADER_LEN {
        return false;
    }
    let captured = field(std::mem::offset_of!(DataEvent, captured));
    let tail = field(std::mem::offset_of!(DataEvent, tail));
    captured == raw.len() - DATA_HEADER_LEN
        && captured <= CAPTURE_MAX
        && tail <= captured
        && tail <= TAIL_MAX
}

/// A data ring record from `body`: exactly `body` when `exact`, else padded with zeros or cut
/// to the header and the bytes its `captured` field counts (at most `CAPTURE_MAX`).
fn data_record(body: &[u8], exact: bool) -> Vec<u8> {
    let mut r = body.to_vec();
    if !exact {
        r.resize(r.len().max(DATA_HEADER_LEN), 0);
        let at = std::mem::offset_of!(DataEvent, captured);
        let captured = usize::from(u16::from_le_bytes([r[at], r[at + 1]])).min(CAPTURE_MAX);
        r[at..at + 2].copy_from_slice(&(captured as u16).to_le_bytes());
        r.resize(DATA_HEADER_LEN + captured, 0);
    }
    r
}

fn record(body: &[u8], size: usize, exact: bool) -> Vec<u8> {
    let mut r = body.to_vec();
    if !exact {
        r.resize(size, 0);
    }
    r
}
