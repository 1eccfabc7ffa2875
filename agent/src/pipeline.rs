//! The capture pipeline: ring buffer -> [`ConnTracker`] -> row builders -> [`Store`].
//!
//! It runs on a thread of its own, apart from the query runtime, so that a heavy query never
//! starves capture (and a capture burst never stalls queries beyond sharing the CPU). Builders
//! are flushed into the store every `flush_interval` or when `flush_rows` rows are waiting, so
//! rows become queryable within a flush interval.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use kindling_agent_common::DataEvent;
use kindling_wire::schema;

use crate::{
    capture::{Capture, KernelCounters},
    cgroups::CgroupNames,
    conntrack::{Clock, ConnTracker, RecordSink, TrackerStats},
    dns_search::DnsSearch,
    k8s::Kubernetes,
    records::{
        CallRecord, CallsBuilder, DnsBuilder, DnsRecord, Endpoints, Ends, FlowRecord, FlowsBuilder,
        Owner, Role, TcpEventRecord, TcpEventsBuilder,
    },
    sessions::{self, CallSink, ProtocolCounters, SessionStats, Sessionizer},
    sockdiag,
    store::Store,
};

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Fills the `node` column.
    pub node: String,
    /// Longest time rows wait in a builder before they reach the store.
    pub flush_interval: Duration,
    /// Flush as soon as this many rows wait.
    pub flush_rows: usize,
    /// Bound of the connection table.
    pub max_conns: usize,
    /// Period of the `flows` rows with status `open` for long-lived connections.
    pub open_flow_interval: Duration,
    /// Bound of the L7 session table.
    pub max_sessions: usize,
    /// DNS queries unanswered this long are recorded as TIMEOUT.
    pub dns_timeout: Duration,
    /// Keep calls' captured payload prefixes (`--store-payloads`).
    pub store_payloads: bool,
    /// How long an NXDOMAIN row waits to be recognized as a search-list expansion.
    pub dns_search_window: Duration,
    /// Period of the `rtt` rows read from sock_diag for every live connection (None: none).
    pub rtt_sample_interval: Option<Duration>,
    /// The first `conn_id` given out (after those of reloaded rows).
    pub first_conn_id: u64,
    /// Names rows' ends by pod and Service (None: host mode).
    pub kubernetes: Option<Arc<Kubernetes>>,
    /// Names the local process's cgroup (None: the `cgroup` column stays empty).
    pub cgroups: Option<Arc<CgroupNames>>,
}

/// Longest sleep between two drains of the rings (the data programs do not wake the thread
/// for every event).
const DATA_POLL_MS: i32 = 10;

/// Data events taken off the ring per round (then TCP events get their turn again).
const DATA_BATCH: usize = 4096;

/// Counters shared between the pipeline thread and the query side.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Events taken off the ring buffer.
    pub events_received: AtomicU64,
    /// Ring-buffer records of the wrong size.
    pub events_malformed: AtomicU64,
    /// Kernel: events lost to a full ring buffer.
    pub kernel_ringbuf_full: AtomicU64,
    /// Kernel: events lost to failed reads of kernel memory.
    pub kernel_read_failed: AtomicU64,
    /// Kernel: program runs skipped because the program was already running on that CPU.
    pub kernel_program_misses: AtomicU64,
    /// User space: new connections not tracked (table full).
    pub conn_table_full: AtomicU64,
    /// User space: connect/accept events for unknown sockets.
    pub unmatched_syscalls: AtomicU64,
    /// Rows the store refused (schema mismatch, a bug) and that were therefore lost.
    pub rows_lost: AtomicU64,
    /// Kernel: data events lost to a full data ring buffer.
    pub kernel_data_ringbuf_full: AtomicU64,
    /// Data events taken off the data ring buffer.
    pub data_events_received: AtomicU64,
    /// User space: L7 sessions not tracked (table full).
    pub sessions_full: AtomicU64,
    /// User space: data events the sessionizer could not read (unknown syscall byte).
    pub data_events_malformed: AtomicU64,
    /// L7 sessions whose protocol was not recognized.
    pub sessions_undetected: AtomicU64,
    /// L7 counters per protocol, published by the capture thread.
    pub protocols: std::sync::Mutex<BTreeMap<&'static str, ProtocolCounters>>,
}

impl PipelineCounters {
    /// Events dropped in the kernel.
    pub fn dropped_kernel(&self) -> u64 {
        self.kernel_ringbuf_full.load(Ordering::Relaxed)
            + self.kernel_read_failed.load(Ordering::Relaxed)
            + self.kernel_data_ringbuf_full.load(Ordering::Relaxed)
            + self.kernel_program_misses.load(Ordering::Relaxed)
    }

    /// Events and rows dropped in user space.
    pub fn dropped_user(&self) -> u64 {
        self.events_malformed.load(Ordering::Relaxed)
            + self.conn_table_full.load(Ordering::Relaxed)
            + self.rows_lost.load(Ordering::Relaxed)
            + self.sessions_full.load(Ordering::Relaxed)
            + self.data_events_malformed.load(Ordering::Relaxed)
    }

    fn publish(&self, kernel: KernelCounters, tracker: TrackerStats, sessions: &SessionStats) {
        self.kernel_data_ringbuf_full
            .store(kernel.data_ringbuf_full, Ordering::Relaxed);
        self.sessions_full
            .store(sessions.sessions_full, Ordering::Relaxed);
        self.data_events_malformed
            .store(sessions.malformed, Ordering::Relaxed);
        self.sessions_undetected
            .store(sessions.undetected, Ordering::Relaxed);
        *self.protocols.lock().unwrap_or_else(|e| e.into_inner()) = sessions.per_protocol.clone();
        self.kernel_ringbuf_full
            .store(kernel.ringbuf_full, Ordering::Relaxed);
        self.kernel_read_failed
            .store(kernel.read_failed, Ordering::Relaxed);
        self.kernel_program_misses
            .store(kernel.program_misses, Ordering::Relaxed);
        self.conn_table_full
            .store(tracker.table_full + tracker.malformed, Ordering::Relaxed);
        self.unmatched_syscalls
            .store(tracker.unmatched_syscalls, Ordering::Relaxed);
    }
}

/// Row builders of every captured table; the trackers' sink.
#[derive(Debug)]
pub struct Batcher {
    tcp_events: TcpEventsBuilder,
    flows: FlowsBuilder,
    calls: CallsBuilder,
    dns: DnsBuilder,
    dns_search: DnsSearch,
    kubernetes: Option<Arc<Kubernetes>>,
    cgroups: Option<Arc<CgroupNames>>,
}

/// Most NXDOMAIN rows held back at once by [`DnsSearch`].
const DNS_HELD_MAX: usize = 4096;

impl Batcher {
    /// Empty builders for `node`; `dns` rows are stored as they come.
    pub fn new(node: &str) -> Self {
        Self::with_dns_search(node, Duration::ZERO)
    }

    /// Empty builders for `node`; NXDOMAIN rows wait up to `window` to be recognized as
    /// search-list expansions (see [`crate::dns_search`]).
    pub fn with_dns_search(node: &str, window: Duration) -> Self {
        Self {
            tcp_events: TcpEventsBuilder::new(node),
            flows: FlowsBuilder::new(node),
            calls: CallsBuilder::new(node),
            dns: DnsBuilder::new(node),
            dns_search: DnsSearch::new(window.as_nanos() as i64, DNS_HELD_MAX),
            kubernetes: None,
            cgroups: None,
        }
    }

    /// Names every row's ends from `kubernetes`.
    pub fn with_kubernetes(mut self, kubernetes: Option<Arc<Kubernetes>>) -> Self {
        self.kubernetes = kubernetes;
        self
    }

    /// Names every row's local cgroup from `cgroups`.
    pub fn with_cgroups(mut self, cgroups: Option<Arc<CgroupNames>>) -> Self {
        self.cgroups = cgroups;
        self
    }

    /// Releases NXDOMAIN rows held since before `now_ns` minus the window (all with `all`).
    pub fn expire_dns(&mut self, now_ns: i64, all: bool) {
        let names = Names {
            kubernetes: self.kubernetes.as_deref(),
            cgroups: self.cgroups.as_deref(),
        };
        let dns = &mut self.dns;
        self.dns_search.expire(now_ns, all, &mut |r| {
            dns.append_with(&r, names.dns(&r).as_ref().unwrap_or(Ends::none()))
        });
    }

    fn names(&self) -> Names<'_> {
        Names {
            kubernetes: self.kubernetes.as_deref(),
            cgroups: self.cgroups.as_deref(),
        }
    }

    /// Rows waiting.
    pub fn pending(&self) -> usize {
        self.tcp_events.len() + self.flows.len() + self.calls.len() + self.dns.len()
    }

    /// Moves every waiting row into the store; returns rows the store refused.
    pub fn flush(&mut self, store: &Store) -> u64 {
        let mut lost = 0;
        let batches = [
            (
                schema::TCP_EVENTS,
                self.tcp_events.len(),
                self.tcp_events.finish(),
            ),
            (schema::FLOWS, self.flows.len(), self.flows.finish()),
            (schema::CALLS, self.calls.len(), self.calls.finish()),
            (schema::DNS, self.dns.len(), self.dns.finish()),
        ];
        for (table, rows, batch) in batches {
            if rows == 0 {
                continue;
            }
            let result = batch
                .map_err(crate::store::Error::from)
                .and_then(|b| store.append(table, b));
            if let Err(e) = result {
                tracing::error!(table, rows, error = %e, "Rows lost: the store refused a batch");
                lost += rows as u64;
            }
        }
        lost
    }
}

/// Port of DNS servers (`dns` rows have no port columns).
const DNS_PORT: u16 = 53;

/// What names rows' ends: the cgroup walk and Kubernetes, either of them absent.
#[derive(Clone, Copy)]
struct Names<'a> {
    kubernetes: Option<&'a Kubernetes>,
    cgroups: Option<&'a CgroupNames>,
}

impl Names<'_> {
    /// The ends of a row that `owner`'s process made or served as `role` (None: nothing
    /// names them).
    fn of(self, owner: &Owner, role: Role, endpoints: &Endpoints, ts_ns: i64) -> Option<Ends> {
        if self.kubernetes.is_none() && self.cgroups.is_none() {
            return None;
        }
        let mut ends = match self.kubernetes {
            Some(k) => k.resolve(owner, role, endpoints, ts_ns),
            None => Ends::default(),
        };
        if let Some(name) = self.cgroups.and_then(|c| c.name(owner.cgroup_id)) {
            ends.cgroup = name;
        }
        Some(ends)
    }

    /// The ends of a `dns` row: the querying end and the server (None: nothing names them).
    fn dns(self, r: &DnsRecord) -> Option<Ends> {
        let endpoints = Endpoints {
            src_ip: r.client_ip,
            src_port: 0,
            dst_ip: r.server_ip,
            dst_port: DNS_PORT,
        };
        self.of(&r.owner, Role::Client, &endpoints, r.ts_ns)
    }
}

impl CallSink for Batcher {
    fn call(&mut self, r: CallRecord) {
        let ends = self.names().of(&r.owner, r.role, &r.endpoints, r.ts_ns);
        self.calls
            .append_with(&r, ends.as_ref().unwrap_or(Ends::none()));
    }

    fn dns(&mut self, record: DnsRecord) {
        let names = Names {
            kubernetes: self.kubernetes.as_deref(),
            cgroups: self.cgroups.as_deref(),
        };
        let dns = &mut self.dns;
        self.dns_search.on_record(record, &mut |r| {
            dns.append_with(&r, names.dns(&r).as_ref().unwrap_or(Ends::none()))
        });
    }
}

impl RecordSink for Batcher {
    fn tcp_event(&mut self, r: TcpEventRecord) {
        let ends = self.names().of(&r.owner, r.role, &r.endpoints, r.ts_ns);
        self.tcp_events
            .append_with(&r, ends.as_ref().unwrap_or(Ends::none()));
    }

    fn flow(&mut self, r: FlowRecord) {
        // A connection's ends at its start: a pod deleted since keeps its row.
        let ends = self
            .names()
            .of(&r.owner, r.role, &r.endpoints, r.start_ts_ns);
        self.flows
            .append_with(&r, ends.as_ref().unwrap_or(Ends::none()));
    }
}

/// A running pipeline thread; stop it with [`Pipeline::stop`].
#[derive(Debug)]
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the pipeline on its own thread, consuming `capture`.
    pub fn spawn(
        capture: Capture,
        store: Arc<Store>,
        counters: Arc<PipelineCounters>,
        config: PipelineConfig,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(capture, &store, &counters, &config, &thread_stop)
                }));
                // An agent that serves without capturing would lose everything silently: a
                // bug in capture ends the process (its orchestrator restarts it), after the
                // panic message.
                if ran.is_err() {
                    tracing::error!("Capture thread panicked; exiting so that the agent restarts");
                    std::process::exit(70);
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Flushes what is waiting, detaches the eBPF programs and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("Capture thread panicked");
        }
    }
}

fn run(
    mut capture: Capture,
    store: &Store,
    counters: &PipelineCounters,
    config: &PipelineConfig,
    stop: &AtomicBool,
) {
    let clock = Clock::now();
    let mut tracker = ConnTracker::new(clock, config.max_conns)
        .with_reasons(capture.reason_names().clone())
        .with_first_conn_id(config.first_conn_id);
    match sockdiag::tcp_listening_ports() {
        Ok(ports) => tracker.seed_listen_ports(ports),
        Err(e) => {
            tracing::warn!(error = %e, "Listing listening sockets failed; roles of connections that predate the agent are guessed")
        }
    }
    let mut sessions = Sessionizer::new(clock, config.max_sessions, config.dns_timeout)
        .with_payloads(config.store_payloads);
    let mut last_sweep = Instant::now();
    let mut data_batch: Vec<DataEvent> = Vec::with_capacity(DATA_BATCH);
    let mut order: Vec<(u64, usize)> = Vec::with_capacity(DATA_BATCH);
    let mut batcher = Batcher::with_dns_search(&config.node, config.dns_search_window)
        .with_kubernetes(config.kubernetes.clone())
        .with_cgroups(config.cgroups.clone());
    let mut last_flush = Instant::now();
    let mut last_open_report = Instant::now();
    let mut last_rtt_sample = Instant::now();
    // The data programs wake this thread only when their ring is an eighth full; below that
    // the thread drains every DATA_POLL_MS.
    let wait_ms = (config.flush_interval.as_millis() as i32).clamp(1, DATA_POLL_MS);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let (received, malformed) = capture.drain(|ev| tracker.on_event(ev, &mut batcher));
        counters
            .events_received
            .fetch_add(received, Ordering::Relaxed);
        counters
            .events_malformed
            .fetch_add(malformed, Ordering::Relaxed);
        tracker.finish_closed(Clock::monotonic_now(), &mut batcher);
        for (sk, conn_id) in tracker.take_closed() {
            sessions.on_tcp_closed(sk, conn_id);
        }
        // TCP events first: a data event's connection was announced on the other ring.
        // Events of one connection can reach the ring out of order when its threads run on
        // different CPUs (a reader's exit may be reserved before the writer's); within a
        // batch they go to the sessionizer in the order their bytes moved.
        data_batch.clear();
        let (data, data_malformed) = capture.drain_data(DATA_BATCH, |ev| data_batch.push(*ev));
        // Sort (key, index) pairs, not the 1 KiB events, and only when the batch is out of
        // order (it mostly is not).
        order.clear();
        order.extend(
            data_batch
                .iter()
                .enumerate()
                .map(|(i, ev)| (sessions::moved_at(ev), i)),
        );
        if !order.is_sorted() {
            order.sort_unstable();
        }
        for ev in order.iter().map(|&(_, i)| &data_batch[i]) {
            let conn = tracker.conn_ref(ev.skaddr);
            sessions.on_event(ev, conn, tracker.listen_ports(), &mut batcher);
        }
        counters
            .data_events_received
            .fetch_add(data, Ordering::Relaxed);
        counters
            .events_malformed
            .fetch_add(data_malformed, Ordering::Relaxed);
        if last_sweep.elapsed() >= Duration::from_millis(500) {
            last_sweep = Instant::now();
            sessions.sweep(&mut batcher);
            batcher.expire_dns(clock.wall_now(), false);
        }
        let report_open = last_open_report.elapsed() >= config.open_flow_interval;
        let sample_rtt = config
            .rtt_sample_interval
            .is_some_and(|every| last_rtt_sample.elapsed() >= every);
        if report_open || sample_rtt {
            match sockdiag::tcp_infos() {
                Ok(infos) => {
                    if sample_rtt {
                        last_rtt_sample = Instant::now();
                        tracker.sample_rtt(&infos, &mut batcher);
                    }
                    if report_open {
                        last_open_report = Instant::now();
                        let min_age = config.open_flow_interval.as_nanos() as i64;
                        tracker.report_open(min_age, &infos, &mut batcher);
                    }
                }
                Err(e) => {
                    // Retried at the next interval, not at every round.
                    last_rtt_sample = Instant::now();
                    last_open_report = Instant::now();
                    tracing::warn!(error = %e, "Cannot read TCP counters from sock_diag");
                }
            }
        }
        if stopping {
            tracker.finish_all_closed(&mut batcher);
            batcher.expire_dns(0, true);
        }
        if stopping
            || batcher.pending() >= config.flush_rows
            || last_flush.elapsed() >= config.flush_interval
        {
            let lost = batcher.flush(store);
            counters.rows_lost.fetch_add(lost, Ordering::Relaxed);
            counters.publish(capture.kernel_counters(), tracker.stats(), sessions.stats());
            if let Err(e) = store.roll() {
                tracing::error!(error = %e, "Sealing chunks failed");
            }
            last_flush = Instant::now();
        }
        if stopping {
            break;
        }
        if received == 0 && data == 0 {
            capture.wait(wait_ms);
        }
    }
    tracing::info!(live_connections = tracker.live(), "Capture stopped");
}
