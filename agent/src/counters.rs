//! The agent's counters: what capture took in and what it dropped, by cause. The capture
//! thread counts and publishes; `agent_stats` and `protocol_stats` ([`crate::query`]) read.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crate::{
    conntrack::TrackerStats,
    sessions::{PerProtocol, SessionStats},
};

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events lost to a full ring buffer.
    pub ringbuf_full: u64,
    /// Events lost to failed kernel reads.
    pub read_failed: u64,
    /// Data events lost because the data ring buffer was full.
    pub data_ringbuf_full: u64,
    /// Program runs the kernel skipped because the program was already running on the CPU
    /// (`recursion_misses`, summed over the programs): each is an event not seen.
    pub program_misses: u64,
    /// OpenSSL and Go TLS calls whose plaintext was not captured (the calls table full, or no socket
    /// known under the connection).
    pub tls_untracked: u64,
    /// OpenSSL libraries found.
    pub tls_libraries_found: u64,
    /// OpenSSL libraries probed.
    pub tls_libraries_probed: u64,
    /// OpenSSL libraries that could not be probed.
    pub tls_libraries_failed: u64,
    /// Go executables with `crypto/tls` found.
    pub tls_go_binaries_found: u64,
    /// Go executables probed.
    pub tls_go_binaries_probed: u64,
    /// Go executables that could not be probed (no symbol table, an old Go, an attach error).
    pub tls_go_binaries_failed: u64,
}

/// Counters shared between the capture thread and the query side (`agent_stats`).
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
    /// User space: TCP events of an unknown kind (a build mismatch with the eBPF object).
    pub tcp_events_malformed: AtomicU64,
    /// Rows the store refused (schema mismatch, a bug) and that were therefore lost.
    pub rows_lost: AtomicU64,
    /// Kernel: data events lost to a full data ring buffer.
    pub kernel_data_ringbuf_full: AtomicU64,
    /// Kernel: OpenSSL calls whose plaintext was not captured.
    pub kernel_tls_untracked: AtomicU64,
    /// OpenSSL libraries found, probed and failed to probe; then Go executables, the same.
    pub tls_libraries: [AtomicU64; 6],
    /// Data events taken off the data ring buffer.
    pub data_events_received: AtomicU64,
    /// User space: L7 sessions not tracked (table full).
    pub sessions_full: AtomicU64,
    /// User space: data events the sessionizer could not read (unknown syscall byte).
    pub data_events_malformed: AtomicU64,
    /// L7 sessions whose protocol was not recognized.
    pub sessions_undetected: AtomicU64,
    /// Containers whose payload is not captured (`--no-payload-namespace`), published by
    /// `capture::exclusions`.
    pub kubernetes_payload_excluded: Arc<AtomicU64>,
    /// L7 counters per protocol, published by the capture thread.
    pub protocols: std::sync::Mutex<PerProtocol>,
    /// The `open_calls` rows of the capture thread's last sweep (None: no call was open long
    /// enough).
    pub open_calls: std::sync::Mutex<Option<datafusion::arrow::record_batch::RecordBatch>>,
}

impl PipelineCounters {
    /// Events dropped in the kernel.
    pub fn dropped_kernel(&self) -> u64 {
        self.kernel_ringbuf_full.load(Ordering::Relaxed)
            + self.kernel_read_failed.load(Ordering::Relaxed)
            + self.kernel_data_ringbuf_full.load(Ordering::Relaxed)
            + self.kernel_program_misses.load(Ordering::Relaxed)
            + self.kernel_tls_untracked.load(Ordering::Relaxed)
    }

    /// Events and rows dropped in user space.
    pub fn dropped_user(&self) -> u64 {
        self.events_malformed.load(Ordering::Relaxed)
            + self.conn_table_full.load(Ordering::Relaxed)
            + self.tcp_events_malformed.load(Ordering::Relaxed)
            + self.rows_lost.load(Ordering::Relaxed)
            + self.sessions_full.load(Ordering::Relaxed)
            + self.data_events_malformed.load(Ordering::Relaxed)
    }

    /// Counts a drain of a ring: `handed` records into `received`, `malformed` ones (of the
    /// wrong size) into `events_malformed`.
    pub fn drained(&self, received: &AtomicU64, handed: u64, malformed: u64) {
        received.fetch_add(handed, Ordering::Relaxed);
        self.events_malformed
            .fetch_add(malformed, Ordering::Relaxed);
    }

    /// Publishes the capture thread's own counts (they are the source of truth; the query
    /// side only reads these).
    pub fn publish(&self, kernel: KernelCounters, tracker: TrackerStats, sessions: &SessionStats) {
        self.kernel_data_ringbuf_full
            .store(kernel.data_ringbuf_full, Ordering::Relaxed);
        self.kernel_tls_untracked
            .store(kernel.tls_untracked, Ordering::Relaxed);
        for (held, value) in self.tls_libraries.iter().zip([
            kernel.tls_libraries_found,
            kernel.tls_libraries_probed,
            kernel.tls_libraries_failed,
            kernel.tls_go_binaries_found,
            kernel.tls_go_binaries_probed,
            kernel.tls_go_binaries_failed,
        ]) {
            held.store(value, Ordering::Relaxed);
        }
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
            .store(tracker.table_full, Ordering::Relaxed);
        self.tcp_events_malformed
            .store(tracker.malformed, Ordering::Relaxed);
    }
}
