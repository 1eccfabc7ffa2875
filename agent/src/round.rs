//! The capture round: one step of the capture thread, as a value.
//!
//! [`CaptureState`] owns what capture keeps between rounds: the connection tracker, the
//! sessionizer and the rows waiting for the store. [`CaptureState::round`] takes the kernel's
//! events in their order (TCP events, then data events sorted by when their syscalls
//! returned), runs what the timers say is due ([`Due`]: sweeps, sock_diag reports, flushes)
//! and moves rows into the store. Everything it reads from the kernel comes through
//! [`Kernel`], so the same round runs on the real rings (`pipeline`) and on a fuzzer's records
//! (`bench/fuzz`); the timers, the waiting and the thread stay in the pipeline.

use std::{
    collections::HashMap,
    sync::Arc,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use kindling_agent_common::TcpEvent;

use crate::{
    cgroups::CgroupNames,
    conntrack::ConnTracker,
    counters::{KernelCounters, PipelineCounters},
    decode::{Clock, DataBatch, ReasonNames},
    enrich::Enricher,
    k8s::Kubernetes,
    records::{Endpoints, pending::PendingRows},
    sessions::Sessionizer,
    sockdiag::TcpInfo,
    store::Store,
};

/// How long a call is in flight before `open_calls` lists it.
const OPEN_CALL_MIN_AGE_NS: i64 = 1_000_000_000;
/// Most `open_calls` rows (the oldest sessions' calls are not preferred: a bound, not a
/// ranking).
const OPEN_CALLS_MAX: usize = 10_000;

/// Data events taken off the ring per round (then TCP events get their turn again).
pub const DATA_BATCH: usize = 4096;

/// Tuning of capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
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
    /// Longest run of capture work before the thread yields its CPU (None: never yields).
    pub yield_after: Option<Duration>,
    /// The agent's own query port (`--listen`): connections to or from it are the agent's own
    /// query traffic (the CLI, the coordinator), not the applications', and are not parsed.
    pub own_port: Option<u16>,
}

/// What a round reads from the kernel.
pub trait Kernel {
    /// Hands every waiting TCP event to `on_event`; returns (handed, malformed).
    fn drain_tcp(&mut self, on_event: impl FnMut(&TcpEvent)) -> (u64, u64);
    /// Decodes at most `max` waiting data events into `batch`; returns (decoded, malformed).
    fn drain_data(&mut self, max: usize, batch: &mut DataBatch) -> (u64, u64);
    /// TCP counters of every live socket, by its local view (sock_diag).
    fn tcp_infos(&mut self) -> std::io::Result<HashMap<Endpoints, TcpInfo>>;
    /// The kernel side's drop counters.
    fn counters(&self) -> KernelCounters;
}

/// What the timers say is due in a round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Due {
    /// Sessions' idle sweep and the release of held NXDOMAIN rows (every 500 ms).
    pub sweep: bool,
    /// `flows` rows of long-lived connections (every `open_flow_interval`).
    pub open_report: bool,
    /// `rtt` rows of every live connection (every `rtt_sample_interval`).
    pub rtt_sample: bool,
    /// The flush interval passed: waiting rows go to the store.
    pub flush: bool,
    /// The last round: every connection closing is finished, every held row released and
    /// flushed.
    pub stopping: bool,
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// TCP events handed to the tracker.
    pub tcp_events: u64,
    /// Data events handed to the sessionizer.
    pub data_events: u64,
    /// sock_diag was due and could not be read.
    pub sock_diag_failed: bool,
    /// The flush of this round, if there was one.
    pub flushed: Option<Flush>,
}

/// A flush of waiting rows into the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flush {
    /// Rows that were waiting.
    pub rows: usize,
    /// Rows the store refused (a builder's batch that does not match its schema: a bug).
    pub lost: u64,
    /// Sealing the store's chunks afterwards failed.
    pub seal_error: Option<String>,
}

/// What capture keeps between rounds.
#[derive(Debug)]
pub struct CaptureState {
    clock: Clock,
    tracker: ConnTracker,
    sessions: Sessionizer,
    rows: PendingRows,
    flush_rows: usize,
    open_flow_min_age_ns: i64,
    /// The round's data events (first those the last round left, see [`CaptureState::round`]),
    /// and the (ts_exit_ns, index) order of those it handles: kept to reuse their allocations.
    data_batch: DataBatch,
    order: Vec<(u64, usize)>,
    pacer: Pacer,
}

/// Data events handled between two looks at the clock for [`Pacer::check`].
const PACE_EVERY: usize = 64;

/// Keeps the capture thread's runs of work short, so that an application it displaced waits
/// at most about that long.
///
/// The scheduler takes the CPU back from a thread only at its tick (4 ms at HZ=250) unless
/// the thread sleeps or yields, whatever time slice the thread asked for; a capture round at
/// saturation is a few milliseconds of work, during which the application on that CPU (and
/// every client waiting on it) stood still. Yielding after `after` of work lets it run
/// again, and lets the scheduler move capture to a CPU with idle time.
#[derive(Debug)]
struct Pacer {
    after: Option<Duration>,
    since: Instant,
}

impl Pacer {
    /// Yields the CPU when the thread has worked `after` since it last slept or yielded.
    fn check(&mut self) {
        let Some(after) = self.after else { return };
        if self.since.elapsed() >= after {
            std::thread::yield_now();
            self.since = Instant::now();
        }
    }

    /// The thread is about to sleep: its next run of work starts when it wakes.
    fn rested(&mut self) {
        self.since = Instant::now();
    }
}

impl CaptureState {
    /// Capture as `config` says, with the kernel's reason names and the ports that were
    /// listening before the agent started (they decide the role of sockets it never saw
    /// open).
    pub fn new(
        config: &CaptureConfig,
        clock: Clock,
        reasons: ReasonNames,
        listen_ports: impl IntoIterator<Item = u16>,
    ) -> Self {
        let mut tracker = ConnTracker::new(clock, config.max_conns)
            .with_reasons(reasons)
            .with_first_conn_id(config.first_conn_id);
        tracker.seed_listen_ports(listen_ports);
        let sessions = Sessionizer::new(clock, config.max_sessions, config.dns_timeout)
            .with_payloads(config.store_payloads)
            .ignoring_port(config.own_port);
        let rows =
            PendingRows::with_dns_search(&config.node, config.dns_search_window).with_enricher(
                Enricher::new(config.kubernetes.clone(), config.cgroups.clone()),
            );
        Self {
            clock,
            tracker,
            sessions,
            rows,
            flush_rows: config.flush_rows,
            open_flow_min_age_ns: config.open_flow_interval.as_nanos() as i64,
            data_batch: DataBatch::with_capacity(DATA_BATCH),
            order: Vec::with_capacity(DATA_BATCH),
            pacer: Pacer {
                after: config.yield_after,
                since: Instant::now(),
            },
        }
    }

    /// The capture thread goes to sleep (the pacer counts its next run of work from when it
    /// wakes).
    pub fn resting(&mut self) {
        self.pacer.rested();
    }

    /// One round: the kernel's events through the tracker and the sessionizer, what is `due`,
    /// and a flush into `store` when rows waited long enough or are many (`counters` count
    /// and publish as it goes).
    pub fn round(
        &mut self,
        kernel: &mut impl Kernel,
        due: Due,
        store: &Store,
        counters: &PipelineCounters,
    ) -> RoundReport {
        // The horizon: the TCP events written before it are drained now, so the data events
        // that returned before it find their connection known; those that returned after it
        // (their connection may have opened while this round drained) wait for the next round.
        let horizon = if due.stopping {
            u64::MAX
        } else {
            Clock::monotonic_now()
        };
        let (tracker, rows) = (&mut self.tracker, &mut self.rows);
        let (received, malformed) = kernel.drain_tcp(|ev| tracker.on_event(ev, rows));
        counters.drained(&counters.events_received, received, malformed);
        self.tracker
            .finish_closed(Clock::monotonic_now(), &mut self.rows);
        for (sk, conn_id) in self.tracker.take_closed() {
            self.sessions.on_tcp_closed(sk, conn_id);
        }
        // TCP events first: a data event's connection was announced on the other ring.
        // Events of one connection can reach the ring out of order when its threads run on
        // different CPUs (a reader's exit may be reserved before the writer's); within a
        // batch they go to the sessionizer in the order their syscalls returned. The batch
        // starts with the events the last round left for this one.
        let room = DATA_BATCH.saturating_sub(self.data_batch.events().len());
        let (data, data_malformed) = kernel.drain_data(room, &mut self.data_batch);
        // Sort (key, index) pairs, not the 1 KiB events, and only when the batch is out of
        // order (it mostly is not).
        self.order.clear();
        self.order.extend(
            self.data_batch
                .events()
                .iter()
                .enumerate()
                .filter(|(_, ev)| ev.ts_exit_ns <= horizon)
                .map(|(i, ev)| (ev.ts_exit_ns, i)),
        );
        if !self.order.is_sorted() {
            self.order.sort_unstable();
        }
        let events = self.data_batch.events();
        for (n, ev) in self.order.iter().map(|&(_, i)| &events[i]).enumerate() {
            if n % PACE_EVERY == PACE_EVERY - 1 {
                self.pacer.check();
            }
            let conn = self.tracker.conn_for_data(ev, &mut self.rows);
            self.sessions
                .on_event(ev, conn, self.tracker.listen_ports(), &mut self.rows);
        }
        self.data_batch.keep_after(horizon);
        counters.drained(&counters.data_events_received, data, data_malformed);
        for (sk, conn_id, tls) in self.sessions.take_tls_updates() {
            self.tracker.note_tls(sk, conn_id, tls);
        }
        if due.sweep {
            self.sessions.sweep(&mut self.rows);
            let now = self.clock.wall_now();
            self.rows.expire_dns(now, false);
            let open = self
                .sessions
                .open_calls(now, OPEN_CALL_MIN_AGE_NS, OPEN_CALLS_MAX);
            *counters
                .open_calls
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = self.rows.open_calls(&open);
        }
        let mut report = RoundReport {
            tcp_events: received,
            data_events: data,
            ..RoundReport::default()
        };
        if due.open_report || due.rtt_sample {
            match kernel.tcp_infos() {
                Ok(infos) => {
                    if due.rtt_sample {
                        self.tracker.sample_rtt(&infos, &mut self.rows);
                    }
                    if due.open_report {
                        self.tracker
                            .report_open(self.open_flow_min_age_ns, &infos, &mut self.rows);
                    }
                }
                Err(e) => {
                    report.sock_diag_failed = true;
                    tracing::warn!(error = %e, "Cannot read TCP counters from sock_diag");
                }
            }
        }
        if due.stopping {
            self.tracker.finish_all_closed(&mut self.rows);
            self.rows.expire_dns(0, true);
        }
        if due.stopping || due.flush || self.rows.len() >= self.flush_rows {
            self.pacer.check();
            let waiting = self.rows.len();
            let lost = self.rows.flush(store);
            counters.rows_lost.fetch_add(lost, Ordering::Relaxed);
            counters.publish(
                kernel.counters(),
                self.tracker.stats(),
                self.sessions.stats(),
            );
            let seal_error = store.roll().err().map(|e| {
                tracing::error!(error = %e, "Sealing chunks failed");
                e.to_string()
            });
            report.flushed = Some(Flush {
                rows: waiting,
                lost,
                seal_error,
            });
        }
        report
    }

    /// The connection tracker.
    pub fn tracker(&self) -> &ConnTracker {
        &self.tracker
    }

    /// The sessionizer.
    pub fn sessions(&self) -> &Sessionizer {
        &self.sessions
    }

    /// The rows waiting for the store.
    pub fn rows(&self) -> &PendingRows {
        &self.rows
    }
}
