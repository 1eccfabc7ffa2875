//! The capture thread: the kernel's rings -> [`CaptureState::round`] -> [`Store`], with the
//! timers and the waiting around the rounds.
//!
//! It runs on a thread of its own, apart from the query runtime, so that a heavy query never
//! starves capture (and a capture burst never stalls queries beyond sharing the CPU). Rows are
//! flushed into the store every `flush_interval` or when `flush_rows` rows are waiting, so
//! they become queryable within a flush interval.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use kindling_agent_common::TcpEvent;

use crate::{
    capture::Capture,
    counters::{KernelCounters, PipelineCounters},
    decode::{Clock, DataBatch},
    records::Endpoints,
    round::{CaptureConfig, CaptureState, Due, Kernel},
    sockdiag::{self, TcpInfo},
    store::Store,
};

/// Longest sleep between two drains of the rings (the data programs do not wake the thread
/// for every event). Rounds of 50 ms of events cost 15-25% less CPU at 10k calls/s than
/// rounds of 10 ms (BENCHMARKS.md); the round's pacer keeps the longer runs of work from
/// stalling the applications.
const DATA_POLL_MS: i32 = 50;

/// Period of the sessions' idle sweep and of the release of held NXDOMAIN rows.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl Kernel for Capture {
    fn drain_tcp(&mut self, on_event: impl FnMut(&TcpEvent)) -> (u64, u64) {
        self.drain(on_event)
    }

    fn drain_data(&mut self, max: usize, batch: &mut DataBatch) -> (u64, u64) {
        Capture::drain_data(self, max, batch)
    }

    fn tcp_infos(&mut self) -> std::io::Result<HashMap<Endpoints, TcpInfo>> {
        sockdiag::tcp_infos()
    }

    fn counters(&self) -> KernelCounters {
        self.kernel_counters()
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
        config: CaptureConfig,
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
    config: &CaptureConfig,
    stop: &AtomicBool,
) {
    let listen_ports = sockdiag::tcp_listening_ports().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "Listing listening sockets failed; roles of connections that predate the agent are guessed");
        Default::default()
    });
    let mut state = CaptureState::new(
        config,
        Clock::now(),
        capture.reason_names().clone(),
        listen_ports,
    );
    let mut last_sweep = Instant::now();
    let mut last_flush = Instant::now();
    let mut last_open_report = Instant::now();
    let mut last_rtt_sample = Instant::now();
    // The data programs wake this thread only when their ring is an eighth full; below that
    // the thread drains every DATA_POLL_MS.
    let wait_ms = (config.flush_interval.as_millis() as i32).clamp(1, DATA_POLL_MS);
    loop {
        let due = Due {
            sweep: last_sweep.elapsed() >= SWEEP_EVERY,
            open_report: last_open_report.elapsed() >= config.open_flow_interval,
            rtt_sample: config
                .rtt_sample_interval
                .is_some_and(|every| last_rtt_sample.elapsed() >= every),
            flush: last_flush.elapsed() >= config.flush_interval,
            stopping: stop.load(Ordering::Relaxed),
        };
        capture.rescan_tls_if_due();
        let report = state.round(&mut capture, due, store, counters);
        let now = Instant::now();
        if due.sweep {
            last_sweep = now;
        }
        // A failed sock_diag read is retried at the next interval, not at every round.
        if due.rtt_sample || report.sock_diag_failed {
            last_rtt_sample = now;
        }
        if due.open_report || report.sock_diag_failed {
            last_open_report = now;
        }
        if report.flushed.is_some() {
            last_flush = now;
        }
        if due.stopping {
            break;
        }
        if report.tcp_events == 0 && report.data_events == 0 {
            state.resting();
            capture.wait(wait_ms);
        }
    }
    tracing::info!(live_connections = state.tracker().live(), "Capture stopped");
}
