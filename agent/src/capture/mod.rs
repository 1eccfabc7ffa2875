//! Capture: loads the eBPF programs of `agent-ebpf`, attaches them to their tracepoints and to
//! the cgroup v2 root's socket hooks, and drains their two ring buffers: TCP lifecycle events
//! and socket data events.
//!
//! Before loading, every precondition is checked so that a failure names what is missing:
//! root, tracefs, the tracepoints' field offsets, the kernel's BTF and the cgroup v2 root
//! (`--cgroup-root`). The programs stay
//! attached while [`Capture`] lives; dropping it detaches and unloads everything (aya owns
//! the links; nothing is pinned).

pub mod btf;
pub mod exclusions;
mod ring;
pub mod tls;
mod tracefs;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSock, CgroupSockAddr, RawTracePoint, TracePoint,
    },
};
use kindling_agent_common::{
    KernelOffsets, MAX_NO_PAYLOAD_CGROUPS, PAYLOAD_MAX, TcpEvent, counter,
};

use exclusions::PayloadExclusions;
use ring::DataRing;

use crate::{
    counters::KernelCounters,
    decode::{self, DataBatch, ReasonNames},
};

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
    #[error("attaching {program} to {tracepoint} failed: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Where: tracepoint category/name, raw_tp/, tp_btf/ or the cgroup
        tracepoint: String,
        /// Why.
        source: aya::programs::ProgramError,
    },
    /// A map the programs declare is missing or of another type.
    #[error("eBPF map {0} missing or of the wrong type")]
    Map(&'static str),
    /// A ring buffer's pages could not be mapped.
    #[error("mapping the pages of ring buffer {0} failed: {1}")]
    RingMap(&'static str, std::io::Error),
    /// The cgroup v2 root for the socket hooks cannot be opened.
    #[error(
        "cannot open the cgroup v2 root {path} for the socket hooks: {source} (--cgroup-root \
         names the host's cgroup v2 tree, as `mount -t cgroup2` shows it)"
    )]
    CgroupRoot {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// More cgroups to exclude from payload capture than the map holds.
    #[error("{0} cgroups given without payload capture; at most {MAX_NO_PAYLOAD_CGROUPS}")]
    TooManyCgroups(usize),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The compiled programs, built by build.rs.
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kindling-probes"));

/// Raw tracepoint programs (program = tracepoint): the socket lifecycle. They run in softirq
/// context, where a classic tracepoint program is skipped whenever another eBPF program was
/// interrupted on that CPU; raw tracepoints are only skipped when nested in themselves.
const RAW_ATTACHMENTS: [&str; 1] = ["inet_sock_set_state"];

/// BTF-typed tracepoint programs (program = tracepoint): the bytes of every socket send and
/// receive, with the `struct sock` as a typed argument (see `agent-ebpf/src/payload.rs`).
const BTF_ATTACHMENTS: [&str; 2] = ["sock_send_length", "sock_recv_length"];

/// cgroup v2 socket hooks, attached to the root of the host's tree
/// ([`CaptureOptions::cgroup_root`]) through BPF links, which run beside any other program
/// there (a link's "single" mode sets no flag; links always coexist): a UDP sender's address
/// (`recvmsg4`/`recvmsg6`) and a socket's release. No program is attached to a syscall
/// tracepoint: one would put every syscall of every task on the kernel's slow path.
const CGROUP_SOCK_ADDR_ATTACHMENTS: [&str; 2] = ["udp_recvmsg4", "udp_recvmsg6"];
const CGROUP_SOCK_ATTACHMENTS: [&str; 1] = ["sock_release"];

/// Network-health programs, attached unless [`CaptureOptions::net_health`] is off. None of
/// them runs on a connection without retransmissions, resets or drops. `tcp_send_reset` stays
/// a classic tracepoint: without a socket, the kernel fills its addresses from the packet.
const NET_HEALTH_ATTACHMENTS: [(&str, &str, &str); 1] =
    [("tcp_send_reset", "tcp", "tcp_send_reset")];
const NET_HEALTH_RAW_ATTACHMENTS: [&str; 3] =
    ["tcp_retransmit_skb", "tcp_receive_reset", "kfree_skb"];

/// RTT on every received segment (a raw tracepoint), with
/// [`CaptureOptions::rtt_every_segment`].
const RTT_EVERY_SEGMENT: &str = "tcp_probe";

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Payload bytes captured per socket syscall (clamped to [`PAYLOAD_MAX`]); 0 keeps the data
    /// events' metadata but no payload.
    pub payload_bytes: u32,
    /// Attach the network-health programs (retransmits, resets, drops).
    pub net_health: bool,
    /// Attach `tcp_probe`: RTT min/max on every received segment, and samples from the kernel.
    pub rtt_every_segment: bool,
    /// With `rtt_every_segment`: shortest time between two RTT samples of one socket.
    pub rtt_sample_interval: std::time::Duration,
    /// cgroup v2 ids (see [`cgroup_id`]) whose tasks' payload is not copied, nor that of the
    /// cgroups below them: their data events keep their metadata only.
    pub no_payload_cgroups: Vec<u64>,
    /// The set of excluded cgroups changes while capture runs
    /// ([`Capture::take_payload_exclusions`]): the check is on even while it is empty.
    pub no_payload_updates: bool,
    /// The root of the host's cgroup v2 tree, where the socket hooks attach (they then see
    /// every socket of the host).
    pub cgroup_root: std::path::PathBuf,
    /// Probe the OpenSSL libraries for TLS plaintext ([`tls`]).
    pub tls_uprobes: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            payload_bytes: PAYLOAD_MAX as u32,
            net_health: true,
            rtt_every_segment: false,
            rtt_sample_interval: std::time::Duration::from_secs(1),
            no_payload_cgroups: Vec::new(),
            no_payload_updates: false,
            cgroup_root: crate::cgroups::default_root(),
            tls_uprobes: true,
        }
    }
}

/// Loaded and attached capture programs.
pub struct Capture {
    ring: RingBuf<MapData>,
    data_ring: DataRing,
    counters: PerCpuArray<MapData, u64>,
    reasons: ReasonNames,
    /// The last sum of the programs' `recursion_misses` and when it was read (it costs a
    /// syscall per program, so it is read at most once per [`MISSES_EVERY`]).
    misses: std::cell::Cell<(Option<std::time::Instant>, u64)>,
    /// The excluded-cgroup map, while nobody took it to update it.
    exclusions: Option<PayloadExclusions>,
    /// The OpenSSL libraries and Go programs found and probed.
    tls: Tls,
    // Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
}

/// The TLS uprobes: the libraries looked for and what attaching to them did.
#[derive(Debug, Default)]
struct Tls {
    enabled: bool,
    scan: tls::LibraryScan,
    attach: tls::TlsAttach,
    last_scan: Option<std::time::Instant>,
}

impl Tls {
    /// Finds libraries not probed yet and probes them.
    fn rescan(&mut self, ebpf: &mut Ebpf) {
        let dirs = tls::HOST_LIBRARY_DIRS.map(std::path::Path::new);
        let found = self.scan.scan(std::path::Path::new("/proc"), &dirs);
        self.attach.attach(ebpf, &found);
        self.last_scan = Some(std::time::Instant::now());
    }
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("counters", &self.kernel_counters())
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Checks preconditions, loads and attaches the programs.
    pub fn start(options: CaptureOptions) -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(Error::NotRoot(euid));
        }
        let tracing = tracefs::ensure_mounted().map_err(Error::Tracefs)?;
        tracefs::check_offsets(&tracing, options.net_health).map_err(|m| {
            Error::TracepointFormat {
                tracepoint: m.tracepoint,
                detail: m.detail,
            }
        })?;
        let kernel_btf = btf::KernelBtf::from_sys_fs()?;
        let offsets: KernelOffsets = kernel_btf.kernel_offsets()?;
        kernel_btf.check_fixed_layouts(&offsets)?;
        let reasons = ReasonNames {
            drop: kernel_btf.enum_names("skb_drop_reason", "SKB_DROP_REASON_"),
            reset: kernel_btf.enum_names("sk_rst_reason", "SK_RST_REASON_"),
        };
        drop(kernel_btf);
        let rtt_sample_ns = options.rtt_sample_interval.as_nanos() as u64;
        let ignored_drop = reasons
            .drop
            .iter()
            .find(|(_, name)| *name == "QUEUE_PURGE")
            .map_or(u32::MAX, |(&code, _)| code);
        raise_memlock_limit();

        let payload_bytes = options.payload_bytes.min(PAYLOAD_MAX as u32);
        let agent_tgid = std::process::id();
        let mut ebpf = EbpfLoader::new()
            .override_global("KERNEL_OFFSETS", &offsets, true)
            .override_global("PAYLOAD_BYTES", &payload_bytes, true)
            .override_global("AGENT_TGID", &agent_tgid, true)
            .override_global("RTT_SAMPLE_NS", &rtt_sample_ns, true)
            .override_global("IGNORED_DROP_REASON", &ignored_drop, true)
            .override_global("TLS_UPROBES", &u32::from(options.tls_uprobes), true)
            .override_global(
                "NO_PAYLOAD_CHECK",
                &u32::from(!options.no_payload_cgroups.is_empty() || options.no_payload_updates),
                true,
            )
            .load(PROBES)?;
        // Before any program attaches, so no byte of an excluded cgroup is ever copied.
        if options.no_payload_cgroups.len() > MAX_NO_PAYLOAD_CGROUPS as usize {
            return Err(Error::TooManyCgroups(options.no_payload_cgroups.len()));
        }
        let mut excluded: HashMap<_, u64, u8> = HashMap::try_from(
            ebpf.map_mut("NO_PAYLOAD_CGROUPS")
                .ok_or(Error::Map("NO_PAYLOAD_CGROUPS"))?,
        )
        .map_err(|_| Error::Map("NO_PAYLOAD_CGROUPS"))?;
        for id in &options.no_payload_cgroups {
            excluded
                .insert(id, &1, 0)
                .map_err(|_| Error::Map("NO_PAYLOAD_CGROUPS"))?;
        }
        let exclusions = if options.no_payload_updates {
            let map = ebpf
                .take_map("NO_PAYLOAD_CGROUPS")
                .ok_or(Error::Map("NO_PAYLOAD_CGROUPS"))?;
            Some(PayloadExclusions {
                map: HashMap::try_from(map).map_err(|_| Error::Map("NO_PAYLOAD_CGROUPS"))?,
                fixed: options.no_payload_cgroups.iter().copied().collect(),
                dynamic: std::collections::HashSet::new(),
            })
        } else {
            None
        };
        let (health, health_raw): (&[_], &[_]) = if options.net_health {
            (&NET_HEALTH_ATTACHMENTS, &NET_HEALTH_RAW_ATTACHMENTS)
        } else {
            (&[], &[])
        };
        let per_segment: &[_] = if options.net_health && options.rtt_every_segment {
            &[RTT_EVERY_SEGMENT]
        } else {
            &[]
        };
        let cgroup = std::fs::File::open(&options.cgroup_root).map_err(|e| Error::CgroupRoot {
            path: options.cgroup_root.clone(),
            source: e,
        })?;
        let at_root = format!("cgroup {}", options.cgroup_root.display());
        for &program in &CGROUP_SOCK_ADDR_ATTACHMENTS {
            attach(
                &mut ebpf,
                program,
                at_root.clone(),
                |p: &mut CgroupSockAddr| {
                    p.load()?;
                    p.attach(&cgroup, CgroupAttachMode::Single).map(drop)
                },
            )?;
        }
        for &program in &CGROUP_SOCK_ATTACHMENTS {
            attach(&mut ebpf, program, at_root.clone(), |p: &mut CgroupSock| {
                p.load()?;
                p.attach(&cgroup, CgroupAttachMode::Single).map(drop)
            })?;
        }
        for &(program, category, name) in health {
            attach(
                &mut ebpf,
                program,
                format!("tracepoint {category}/{name}"),
                |tp: &mut TracePoint| {
                    tp.load()?;
                    tp.attach(category, name).map(drop)
                },
            )?;
        }
        for &program in RAW_ATTACHMENTS.iter().chain(health_raw).chain(per_segment) {
            attach(
                &mut ebpf,
                program,
                format!("raw_tp/{program}"),
                |tp: &mut RawTracePoint| {
                    tp.load()?;
                    tp.attach(program).map(drop)
                },
            )?;
        }
        let btf = aya::Btf::from_sys_fs().map_err(|e| Error::Attach {
            program: BTF_ATTACHMENTS[0],
            tracepoint: "tp_btf (kernel BTF)".into(),
            source: aya::programs::ProgramError::Btf(e),
        })?;
        for &program in &BTF_ATTACHMENTS {
            attach(
                &mut ebpf,
                program,
                format!("tp_btf/{program}"),
                |tp: &mut BtfTracePoint| {
                    tp.load(program, &btf)?;
                    tp.attach().map(drop)
                },
            )?;
        }
        let mut tls = Tls::default();
        if options.tls_uprobes {
            tls::load(&mut ebpf).map_err(|source| Error::Attach {
                program: "ssl_write",
                tracepoint: "uprobe (libssl)".into(),
                source,
            })?;
            tls.enabled = true;
            tls.rescan(&mut ebpf);
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("TCP_EVENTS")
                .ok_or(Error::Map("TCP_EVENTS"))?,
        )
        .map_err(|_| Error::Map("TCP_EVENTS"))?;
        let data_ring = DataRing::new(
            ebpf.take_map("DATA_EVENTS")
                .ok_or(Error::Map("DATA_EVENTS"))?,
        )
        .map_err(|e| Error::RingMap("DATA_EVENTS", e))?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").ok_or(Error::Map("COUNTERS"))?)
                .map_err(|_| Error::Map("COUNTERS"))?;
        Ok(Self {
            ring,
            data_ring,
            counters,
            reasons,
            misses: std::cell::Cell::new((None, 0)),
            exclusions,
            tls,
            _ebpf: ebpf,
        })
    }

    /// The map of cgroups whose payload is not captured, to update while capture runs (with
    /// [`CaptureOptions::no_payload_updates`] only; once).
    pub fn take_payload_exclusions(&mut self) -> Option<PayloadExclusions> {
        self.exclusions.take()
    }

    /// Names of the kernel's drop and reset reasons.
    pub fn reason_names(&self) -> &ReasonNames {
        &self.reasons
    }

    /// Hands every waiting TCP event to `on_event`; returns how many there were. Records of
    /// the wrong size (a build mismatch) are skipped and counted in the return's second value.
    pub fn drain(&mut self, mut on_event: impl FnMut(&TcpEvent)) -> (u64, u64) {
        let (mut ok, mut bad) = (0, 0);
        while let Some(item) = self.ring.next() {
            match decode::tcp_event(&item) {
                Some(ev) => {
                    on_event(&ev);
                    ok += 1;
                }
                None => bad += 1,
            }
        }
        (ok, bad)
    }

    /// Decodes waiting data events into `batch`, at most `max` of them (so TCP events,
    /// drained in between, are not starved); returns (decoded, malformed).
    pub fn drain_data(&mut self, max: usize, batch: &mut DataBatch) -> (u64, u64) {
        let (mut ok, mut bad) = (0, 0);
        self.data_ring
            .drain(max, |record| match batch.push_record(record) {
                Some(_) => ok += 1,
                None => bad += 1,
            });
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
            data_ringbuf_full: sum(counter::DATA_RINGBUF_FULL),
            program_misses: self.program_misses(),
            tls_untracked: sum(counter::TLS_UNTRACKED),
            tls_libraries_found: self.tls.attach.libraries.found,
            tls_libraries_probed: self.tls.attach.libraries.attached,
            tls_libraries_failed: self.tls.attach.libraries.failed.len() as u64,
            tls_go_binaries_found: self.tls.attach.go.found,
            tls_go_binaries_probed: self.tls.attach.go.attached,
            tls_go_binaries_failed: self.tls.attach.go.failed.len() as u64,
        }
    }

    /// The kernel's count of skipped runs, summed over every loaded program.
    fn program_misses(&self) -> u64 {
        let (read_at, last) = self.misses.get();
        if read_at.is_some_and(|t| t.elapsed() < MISSES_EVERY) {
            return last;
        }
        let total = self
            ._ebpf
            .programs()
            .filter_map(|(_, program)| program.fd().ok())
            .map(|fd| recursion_misses(fd.as_fd()))
            .sum();
        self.misses.set((Some(std::time::Instant::now()), total));
        total
    }

    /// With the TLS uprobes on, once every [`tls::RESCAN_EVERY`]: probes the libraries that
    /// processes started since the last look have mapped (a container image's own libssl).
    pub fn rescan_tls_if_due(&mut self) {
        let tls = &mut self.tls;
        if tls.enabled
            && tls
                .last_scan
                .is_none_or(|at| at.elapsed() >= tls::RESCAN_EVERY)
        {
            tls.rescan(&mut self._ebpf);
        }
    }

    /// Waits up to `timeout_ms` for either ring buffer to become readable.
    pub fn wait(&self, timeout_ms: i32) {
        let pfd = |fd: BorrowedFd<'_>| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [pfd(self.ring.as_fd()), pfd(self.data_ring.as_fd())];
        // SAFETY: two valid pollfds; a failed poll (EINTR) only shortens the wait.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    }
}

/// Loads and attaches the program `program` of type `P` with `load_attach`; a failure names
/// the program and `tracepoint`.
fn attach<P>(
    ebpf: &mut Ebpf,
    program: &'static str,
    tracepoint: String,
    load_attach: impl FnOnce(&mut P) -> std::result::Result<(), aya::programs::ProgramError>,
) -> Result<()>
where
    for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog: &mut P = ebpf
        .program_mut(program)
        .ok_or(Error::Map(program))?
        .try_into()
        .map_err(|source| Error::Attach {
            program,
            tracepoint: tracepoint.clone(),
            source,
        })?;
    load_attach(prog).map_err(|source| Error::Attach {
        program,
        tracepoint,
        source,
    })
}

/// The id of the cgroup v2 directory `path` (its inode number, which is what
/// `bpf_get_current_cgroup_id` returns), or why it is not one.
pub fn cgroup_id(path: &std::path::Path) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: a NUL byte in the path", path.display()))?;
    // SAFETY: an all-zero statfs is valid; the path is NUL-terminated.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `fs` is written by the call.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut fs) } != 0 {
        return Err(format!(
            "{}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    if !meta.is_dir() || fs.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return Err(format!(
            "{} is not a cgroup v2 directory (on this host cgroup v2 is mounted where \
             `mount -t cgroup2` says, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified)",
            path.display()
        ));
    }
    Ok(meta.ino())
}

/// How often the programs' skip counts are read.
const MISSES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `recursion_misses` of one program (`BPF_OBJ_GET_INFO_BY_FD`); 0 if the kernel refuses.
fn recursion_misses(fd: BorrowedFd<'_>) -> u64 {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    /// The `info` member of `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: a plain C struct of integers, for which zero is valid.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of_val(&info) as u32,
        info: &raw mut info as u64,
    };
    // SAFETY: attr points at a buffer of info_len bytes that lives through the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw mut attr,
            size_of::<InfoAttr>(),
        )
    };
    if ret == 0 { info.recursion_misses } else { 0 }
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
