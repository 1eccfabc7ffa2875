//! Capture: loads the eBPF programs of `agent-ebpf`, attaches them to their tracepoints and
//! drains their ring buffer.
//!
//! Before loading, every precondition is checked so that a failure names what is missing:
//! root, tracefs, the tracepoints' field offsets and the kernel's BTF. The programs stay
//! attached while [`TcpCapture`] lives; dropping it detaches and unloads everything (aya owns
//! the links; nothing is pinned).

pub mod btf;
mod tracefs;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use kindling_agent_common::{KernelOffsets, TcpEvent, counter};

/// Errors that stop capture from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not running as root.
    #[error("kindling-agent must run as root (it loads eBPF programs); effective uid is {0}")]
    NotRoot(u32),
    /// tracefs is absent and could not be mounted.
    #[error("tracefs is not available at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(std::io::Error),
    /// A tracepoint's format differs from what the programs were built for.
    #[error("tracepoint {tracepoint}: {detail}")]
    TracepointFormat {
        /// category/name
        tracepoint: String,
        /// What differs.
        detail: String,
    },
    /// Kernel BTF could not provide an offset.
    #[error(transparent)]
    Btf(#[from] btf::Error),
    /// The kernel refused the programs or maps.
    #[error("loading eBPF programs failed (is BPF available to this process?): {0}")]
    Load(#[from] aya::EbpfError),
    /// Attaching a program failed.
    #[error("attaching {program} to tracepoint {tracepoint} failed: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// category/name
        tracepoint: String,
        /// Why.
        source: aya::programs::ProgramError,
    },
    /// A map the programs declare is missing or of another type.
    #[error("eBPF map {0} missing or of the wrong type")]
    Map(&'static str),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The compiled programs, built by build.rs.
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kindling-probes"));

/// (program, category, tracepoint)
const ATTACHMENTS: [(&str, &str, &str); 7] = [
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("connect_enter", "syscalls", "sys_enter_connect"),
    ("connect_exit", "syscalls", "sys_exit_connect"),
    ("accept4_enter", "syscalls", "sys_enter_accept4"),
    ("accept4_exit", "syscalls", "sys_exit_accept4"),
    ("accept_enter", "syscalls", "sys_enter_accept"),
    ("accept_exit", "syscalls", "sys_exit_accept"),
];

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events lost to a full ring buffer.
    pub ringbuf_full: u64,
    /// Events lost to failed kernel reads.
    pub read_failed: u64,
}

/// Loaded and attached TCP capture.
pub struct TcpCapture {
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    // Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for TcpCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpCapture")
            .field("counters", &self.kernel_counters())
            .finish_non_exhaustive()
    }
}

impl TcpCapture {
    /// Checks preconditions, loads and attaches the programs.
    pub fn start() -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(Error::NotRoot(euid));
        }
        let tracing = tracefs::ensure_mounted().map_err(Error::Tracefs)?;
        tracefs::check_offsets(&tracing)?;
        let offsets: KernelOffsets = btf::KernelBtf::from_sys_fs()?.kernel_offsets()?;
        raise_memlock_limit();

        let mut ebpf = EbpfLoader::new()
            .override_global("KERNEL_OFFSETS", &offsets, true)
            .load(PROBES)?;
        for (program, category, name) in ATTACHMENTS {
            let attach_err = |source| Error::Attach {
                program,
                tracepoint: format!("{category}/{name}"),
                source,
            };
            let tp: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or(Error::Map(program))?
                .try_into()
                .map_err(attach_err)?;
            tp.load().map_err(attach_err)?;
            tp.attach(category, name).map_err(attach_err)?;
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("TCP_EVENTS")
                .ok_or(Error::Map("TCP_EVENTS"))?,
        )
        .map_err(|_| Error::Map("TCP_EVENTS"))?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").ok_or(Error::Map("COUNTERS"))?)
                .map_err(|_| Error::Map("COUNTERS"))?;
        Ok(Self {
            ring,
            counters,
            _ebpf: ebpf,
        })
    }

    /// The ring buffer's fd, readable when events are waiting.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }

    /// Hands every waiting event to `on_event`; returns how many there were. Records of the
    /// wrong size (a build mismatch) are skipped and counted in the return's second value.
    pub fn drain(&mut self, mut on_event: impl FnMut(&TcpEvent)) -> (u64, u64) {
        let (mut ok, mut bad) = (0, 0);
        while let Some(item) = self.ring.next() {
            match decode(&item) {
                Some(ev) => {
                    on_event(&ev);
                    ok += 1;
                }
                None => bad += 1,
            }
        }
        (ok, bad)
    }

    /// The kernel-side counters now.
    pub fn kernel_counters(&self) -> KernelCounters {
        let sum = |i: u32| {
            self.counters
                .get(&i, 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            ringbuf_full: sum(counter::RINGBUF_FULL),
            read_failed: sum(counter::READ_FAILED),
        }
    }

    /// Waits up to `timeout_ms` for the ring buffer to become readable.
    pub fn wait(&self, timeout_ms: i32) {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a failed poll (EINTR) only shortens the wait.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }
}

/// Reads a [`TcpEvent`] from ring-buffer bytes, or None if the size is wrong.
pub fn decode(bytes: &[u8]) -> Option<TcpEvent> {
    if bytes.len() != size_of::<TcpEvent>() {
        return None;
    }
    // SAFETY: TcpEvent is repr(C) plain data, every bit pattern is valid, and the length was
    // checked; read_unaligned copes with any alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<TcpEvent>()) })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones ignore it.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to a local; failure just leaves the old limit.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        tracing::debug!("Could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_wrong_sizes() {
        assert!(decode(&[0u8; 10]).is_none());
        assert!(decode(&[0u8; size_of::<TcpEvent>() + 1]).is_none());
        let mut raw = [0u8; size_of::<TcpEvent>()];
        raw[0] = 7; // ts_ns little-endian
        assert_eq!(decode(&raw).unwrap().ts_ns, 7);
    }
}
