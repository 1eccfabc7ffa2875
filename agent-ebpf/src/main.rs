//! Kindling's eBPF programs.
//!
//! - `inet_sock_set_state` (raw tracepoint): every TCP state change, with the socket's
//!   addresses; on entry to TCP_CLOSE also the socket's byte counters.
//! - `connect_enter`/`connect_exit` and `accept_enter`/`accept_exit` (the syscall tracepoints of
//!   connect, accept and accept4): which process connected or accepted which socket, found by
//!   walking the task's fd table to the `struct sock`.
//!
//! - `*_enter`/`*_exit` of read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg,
//!   sendmmsg, recvmmsg, and `close_enter`: socket payload capture. Each fd is classified once
//!   per process (TCP or UDP socket, or not) and cached, so other fds cost one map lookup.
//!
//! - `tcp_retransmit_skb`, `tcp_receive_reset`, `kfree_skb` (raw tracepoints) and
//!   `tcp_send_reset` (tracepoint `tcp/tcp_send_reset`, whose addresses the kernel takes from
//!   the packet when no socket sent the RST): network health. Retransmissions, resets and drops of
//!   TCP/UDP packets (with the kernel's reason) are reported as they happen. RTT is read from
//!   the socket at close (and by the agent from sock_diag while it lives); only with
//!   `--rtt-every-segment` does `tcp_probe` keep it per socket in a map (min, max) and sample
//!   it at most once per interval per socket.
//!
//! Lifecycle events and data events go to user space through two ring buffers. A full ring
//! buffer drops the newest event and bumps its counter; nothing blocks and nothing loops
//! unbounded.
// Built for the bpfel target by agent/build.rs. A host build (`cargo clippy --workspace`)
// only type-checks the programs; its `main` says where the real object comes from.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user, generated::bpf_probe_read_user as probe_read_user_raw,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use kindling_agent_common::{
    AF_INET, AF_INET6, COMM_LEN, DATA_RING_BYTES, DataEvent, EVENTS_RING_BYTES, KernelOffsets,
    MAX_NO_PAYLOAD_CGROUPS, NO_PAYLOAD_CGROUP_LEVELS, PAYLOAD_MAX, SocketSyscall, TcpEvent,
    TcpEventKind, counter, tcp_state, tp::SYSCALL_ARG0,
};

const IPPROTO_TCP: u16 = 6;
/// `sk_shutdown` bit for a closed receive side.
const RCV_SHUTDOWN: u8 = 1;

#[unsafe(no_mangle)]
static KERNEL_OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    file_private_data: 0,
    socket_sk: 0,
    tcp_bytes_sent: 0,
    tcp_bytes_retrans: 0,
    tcp_bytes_received: 0,
    sock_shutdown: 0,
    file_inode: 0,
    inode_mode: 0,
    sock_type: 0,
    sock_protocol: 0,
    skc_family: 0,
    skc_daddr: 0,
    skc_rcv_saddr: 0,
    skc_dport: 0,
    skc_num: 0,
    skc_state: 0,
    inet_sport: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    tcp_srtt_us: 0,
    tcp_total_retrans: 0,
    tcp_rtt_min: 0,
    sock_err: 0,
    skb_head: 0,
    skb_network_header: 0,
});

/// A drop reason not reported: `QUEUE_PURGE`, the kernel freeing what a closing socket still
/// held, which is socket teardown rather than a packet lost (its value comes from BTF).
#[unsafe(no_mangle)]
static IGNORED_DROP_REASON: Global<u32> = Global::new(u32::MAX);

/// Shortest time between two RTT samples reported for one socket (`--rtt-sample-interval`).
#[unsafe(no_mangle)]
static RTT_SAMPLE_NS: Global<u64> = Global::new(1_000_000_000);

/// Data waiting in `DATA_EVENTS` that makes a submit wake the agent (an eighth of the ring);
/// below it the agent finds the events on its drain timer (`DATA_POLL_MS` in the pipeline).
const DATA_WAKEUP_BYTES: u64 = DATA_RING_BYTES as u64 / 8;
/// The same for TCP events.
const EVENTS_WAKEUP_BYTES: u64 = EVENTS_RING_BYTES as u64 / 8;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Payload bytes captured per syscall (`--payload-bytes`, at most PAYLOAD_MAX); 0 turns
/// payload capture off while keeping the data events' metadata.
#[unsafe(no_mangle)]
static PAYLOAD_BYTES: Global<u32> = Global::new(PAYLOAD_MAX as u32);

/// The agent's own process id: its Flight traffic is not captured (it would feed itself).
#[unsafe(no_mangle)]
static AGENT_TGID: Global<u32> = Global::new(0);

/// cgroup v2 ids whose tasks' payload is never copied, nor that of any cgroup below them
/// (`--no-payload-cgroup`); filled by the agent before the programs attach.
#[map]
static NO_PAYLOAD_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_NO_PAYLOAD_CGROUPS, 0);

/// Whether `NO_PAYLOAD_CGROUPS` holds anything (else no lookup is made).
#[unsafe(no_mangle)]
static NO_PAYLOAD_CHECK: Global<u32> = Global::new(0);

/// Whether the current task's cgroup, or one above it, is in `NO_PAYLOAD_CGROUPS`.
#[inline(always)]
fn payload_excluded() -> bool {
    if NO_PAYLOAD_CHECK.load() == 0 {
        return false;
    }
    // SAFETY: plain helper calls.
    let own = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value is only tested for presence.
    if unsafe { NO_PAYLOAD_CGROUPS.get(&own) }.is_some() {
        return true;
    }
    let mut level = 0;
    while level < NO_PAYLOAD_CGROUP_LEVELS {
        // SAFETY: plain helper call; 0 past the task's own level.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 || id == own {
            return false;
        }
        // SAFETY: as above.
        if unsafe { NO_PAYLOAD_CGROUPS.get(&id) }.is_some() {
            return true;
        }
        level += 1;
    }
    false
}

#[inline(always)]
fn is_agent() -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == AGENT_TGID.load()
}

#[map]
static TCP_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[map]
static DATA_EVENTS: RingBuf = RingBuf::with_byte_size(DATA_RING_BYTES, 0);

/// fd passed to a connect/accept in flight, keyed by pid_tgid, from enter to exit.
#[map]
static PENDING_FD: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

#[inline(always)]
fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn read_kernel<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel faults safely on a bad address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|e| e as i64)
}

/// Fills the fields every event has and submits it; counts a full ring buffer.
#[inline(always)]
fn emit(fill: impl FnOnce(&mut TcpEvent)) {
    let Some(mut entry) = TCP_EVENTS.reserve::<TcpEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let ev = TcpEvent {
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        // SAFETY: plain helper call.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ..TcpEvent::zeroed()
    };
    let ev = entry.write(ev);
    fill(ev);
    // As for data events, the agent is woken only when the ring fills up; else it drains on
    // its timer. A wakeup is an inter-processor interrupt to this CPU: taken while this program
    // runs in a task, it runs pending softirqs on top of it, whose state changes then find the
    // program busy and are skipped (measured: 8% of a connection storm's state changes).
    let flags = if TCP_EVENTS.query(BPF_RB_AVAIL_DATA) >= EVENTS_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags);
}

// The lifecycle and network-health programs run in softirq context, often on top of another
// eBPF program (an interrupt arriving while a syscall program runs). A classic tracepoint
// program is then skipped: the kernel allows one tracepoint program per CPU at a time. Raw
// tracepoints only refuse to nest a program in itself, so a burst of closes is not lost while
// payload capture is busy; the rare self-nesting skips are counted by the kernel per program
// (`recursion_misses`) and reported by the agent as kernel drops.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> u32 {
    done(try_inet_sock_set_state(&ctx))
}

/// `inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate)`
fn try_inet_sock_set_state(ctx: &RawTracePointContext) -> Result<(), i64> {
    let skaddr: u64 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    let off = KERNEL_OFFSETS.load();
    let protocol: u16 = read_kernel(skaddr + off.sock_protocol)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let Some(ends) = sock_ends(skaddr)? else {
        return Ok(());
    };
    let (mut bytes_sent, mut bytes_received) = (0u64, 0u64);
    let mut close = CloseInfo::default();
    if new_state as u8 == tcp_state::CLOSE {
        close = close_info(skaddr)?;
        // tcp_done() sets sk_shutdown only after this transition, so RCV_SHUTDOWN here means
        // the peer's FIN arrived (and advanced bytes_received by one sequence number).
        let sent: u64 = read_kernel(skaddr + off.tcp_bytes_sent)?;
        let retrans: u64 = read_kernel(skaddr + off.tcp_bytes_retrans)?;
        let received: u64 = read_kernel(skaddr + off.tcp_bytes_received)?;
        let shutdown: u8 = read_kernel(skaddr + off.sock_shutdown)?;
        bytes_sent = sent.saturating_sub(retrans);
        bytes_received = received.saturating_sub(u64::from(shutdown & RCV_SHUTDOWN));
    }
    emit(|ev| {
        ev.kind = TcpEventKind::StateChange as u8;
        ev.skaddr = skaddr;
        ev.old_state = old_state as u8;
        ev.new_state = new_state as u8;
        ev.sport = ends.sport;
        ev.dport = ends.dport;
        ev.family = ends.family;
        ev.saddr = ends.saddr;
        ev.daddr = ends.daddr;
        ev.bytes_sent = bytes_sent;
        ev.bytes_received = bytes_received;
        ev.srtt_us = close.srtt_us;
        ev.rtt_min_us = close.rtt_min_us;
        ev.rtt_max_us = close.rtt_max_us;
        ev.retransmits = close.retransmits;
        ev.sk_err = close.sk_err;
    });
    Ok(())
}

#[derive(Default)]
struct CloseInfo {
    srtt_us: u32,
    rtt_min_us: u32,
    rtt_max_us: u32,
    retransmits: u32,
    sk_err: i32,
}

/// A closing socket's RTT, retransmissions and pending error; forgets its RTT state.
#[inline(always)]
fn close_info(skaddr: u64) -> Result<CloseInfo, i64> {
    let off = KERNEL_OFFSETS.load();
    let srtt8: u32 = read_kernel(skaddr + off.tcp_srtt_us)?;
    let mut info = CloseInfo {
        srtt_us: srtt8 >> 3,
        rtt_min_us: read_kernel(skaddr + off.tcp_rtt_min)?,
        retransmits: read_kernel(skaddr + off.tcp_total_retrans)?,
        sk_err: read_kernel(skaddr + off.sock_err)?,
        ..CloseInfo::default()
    };
    // With --rtt-every-segment, tcp_probe kept the socket's extremes.
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(rtt) = unsafe { RTT.get(&skaddr) } {
        if info.rtt_min_us == 0 || rtt.min_us < info.rtt_min_us {
            info.rtt_min_us = rtt.min_us;
        }
        info.rtt_max_us = rtt.max_us;
        let _ = RTT.remove(&skaddr);
    }
    Ok(info)
}

/// Remembers the fd argument of a connect/accept until its exit.
#[inline(always)]
fn remember_fd(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: first syscall argument, see SYSCALL_ARG0.
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0) }.map_err(|e| e as i64)?;
    PENDING_FD.insert(&bpf_get_current_pid_tgid(), &fd, 0)?;
    Ok(())
}

/// Finds the `struct sock` behind `fd` of the current task:
/// task->files->fdt->fd[fd]->private_data (a `struct socket`)->sk.
#[inline(always)]
fn sock_of_fd(fd: u64) -> Result<u64, i64> {
    let off = KERNEL_OFFSETS.load();
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read_kernel(task + off.task_files)?;
    let fdt: u64 = read_kernel(files + off.files_fdt)?;
    let fd_array: u64 = read_kernel(fdt + off.fdtable_fd)?;
    // Bounded so that a bogus fd cannot point far outside the array.
    let file: u64 = read_kernel(fd_array + (fd & 0xf_ffff) * 8)?;
    let socket: u64 = read_kernel(file + off.file_private_data)?;
    read_kernel(socket + off.socket_sk)
}

/// At connect/accept exit: emits which task owns which socket.
#[inline(always)]
fn socket_owner(ctx: &TracePointContext, kind: TcpEventKind) -> Result<(), i64> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the map can change under us.
    let Some(&arg_fd) = (unsafe { PENDING_FD.get(&key) }) else {
        return Ok(());
    };
    let _ = PENDING_FD.remove(&key);
    // SAFETY: `ret` of the syscall exit tracepoint.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_ARG0) }.map_err(|e| e as i64)?;
    let fd = match kind {
        TcpEventKind::Accept if ret >= 0 => ret as u64,
        // Non-blocking servers see a stream of EAGAIN accepts: nothing to report.
        TcpEventKind::Accept => return Ok(()),
        // A failed connect keeps its socket attached to the fd: report it with its result.
        _ => arg_fd,
    };
    let skaddr = sock_of_fd(fd)?;
    // The socket's addresses: a connecting socket's local port is bound only after its
    // CLOSE -> SYN_SENT transition, so this is where a client's port is first known.
    let Some(ends) = sock_ends(skaddr)? else {
        return Ok(());
    };
    emit(|ev| {
        ev.kind = kind as u8;
        ev.skaddr = skaddr;
        ev.ret = ret as i32;
        ev.family = ends.family;
        ev.sport = ends.sport;
        ev.dport = ends.dport;
        ev.saddr = ends.saddr;
        ev.daddr = ends.daddr;
    });
    Ok(())
}

fn done(result: Result<(), i64>) -> u32 {
    if result.is_err() {
        bump(counter::READ_FAILED);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn connect_enter(ctx: TracePointContext) -> u32 {
    done(try_connect_enter(&ctx))
}

/// Only IP connects are followed: unix-socket connects are frequent and never TCP.
fn try_connect_enter(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: second argument of connect(2), the user's sockaddr.
    let uservaddr: u64 = unsafe { ctx.read_at(SYSCALL_ARG0 + 8) }.map_err(|e| e as i64)?;
    // SAFETY: bpf_probe_read_user faults safely.
    let family: u16 =
        unsafe { bpf_probe_read_user(uservaddr as *const u16) }.map_err(|e| e as i64)?;
    if family != AF_INET && family != AF_INET6 {
        return Ok(());
    }
    remember_fd(ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn connect_exit(ctx: TracePointContext) -> u32 {
    done(socket_owner(&ctx, TcpEventKind::Connect))
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept4")]
pub fn accept4_enter(ctx: TracePointContext) -> u32 {
    done(remember_fd(&ctx))
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn accept4_exit(ctx: TracePointContext) -> u32 {
    done(socket_owner(&ctx, TcpEventKind::Accept))
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept")]
pub fn accept_enter(ctx: TracePointContext) -> u32 {
    done(remember_fd(&ctx))
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn accept_exit(ctx: TracePointContext) -> u32 {
    done(socket_owner(&ctx, TcpEventKind::Accept))
}

// ---------------------------------------------------------------------------------------------
// Network health: retransmissions, resets, RTT samples and packet drops. These fire only when
// the event happens (tcp_probe: per received segment of an established socket, one map
// update, an event at most once per RTT_SAMPLE_NS per socket).
// ---------------------------------------------------------------------------------------------

const IPPROTO_UDP_U8: u8 = 17;
const IPPROTO_TCP_U8: u8 = 6;

/// RTT seen for one socket since it was first sampled.
#[derive(Clone, Copy)]
#[repr(C)]
struct RttState {
    min_us: u32,
    max_us: u32,
    last_report_ns: u64,
}

/// skaddr -> RttState, removed when the socket enters TCP_CLOSE.
#[map]
static RTT: LruHashMap<u64, RttState> = LruHashMap::with_max_entries(65536, 0);

/// A socket's addresses as a tracepoint reports them, local end first.
struct Ends {
    family: u16,
    sport: u16,
    dport: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
}

/// A socket's addresses from its `sock_common`, ports in host order (what the `sock` and `tcp`
/// tracepoints report); None for a family other than IPv4 and IPv6.
#[inline(always)]
fn sock_ends(sk: u64) -> Result<Option<Ends>, i64> {
    let off = KERNEL_OFFSETS.load();
    let family: u16 = read_kernel(sk + off.skc_family)?;
    let dport: u16 = read_kernel(sk + off.skc_dport)?;
    // What the tracepoints report: the local port of `inet_sock`, which (unlike skc_num) a
    // socket keeps when it hands its port to a TIME_WAIT socket at close.
    let sport: u16 = read_kernel(sk + off.inet_sport)?;
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if family == AF_INET6 {
        saddr = read_kernel(sk + off.skc_v6_rcv_saddr)?;
        daddr = read_kernel(sk + off.skc_v6_daddr)?;
    } else if family == AF_INET {
        let s: [u8; 4] = read_kernel(sk + off.skc_rcv_saddr)?;
        let d: [u8; 4] = read_kernel(sk + off.skc_daddr)?;
        saddr[..4].copy_from_slice(&s);
        daddr[..4].copy_from_slice(&d);
    } else {
        return Ok(None);
    }
    Ok(Some(Ends {
        family,
        sport: u16::from_be(sport),
        dport: u16::from_be(dport),
        saddr,
        daddr,
    }))
}

/// Emits a network-health event of socket `skaddr` in TCP state `state`.
#[inline(always)]
fn emit_socket(kind: TcpEventKind, skaddr: u64, state: u8, reason: u32, ends: &Ends) {
    emit(|ev| {
        ev.kind = kind as u8;
        ev.skaddr = skaddr;
        ev.old_state = state;
        ev.new_state = state;
        ev.reason = reason;
        ev.family = ends.family;
        ev.sport = ends.sport;
        ev.dport = ends.dport;
        ev.saddr = ends.saddr;
        ev.daddr = ends.daddr;
    });
}

#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> u32 {
    done(try_retransmit(&ctx))
}

/// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb)`
fn try_retransmit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let skaddr: u64 = ctx.arg(0);
    let state: u8 = read_kernel(skaddr + KERNEL_OFFSETS.load().skc_state)?;
    if let Some(ends) = sock_ends(skaddr)? {
        emit_socket(TcpEventKind::Retransmit, skaddr, state, 0, &ends);
    }
    Ok(())
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> u32 {
    done(try_receive_reset(&ctx))
}

/// `tcp_receive_reset(struct sock *sk)`
fn try_receive_reset(ctx: &RawTracePointContext) -> Result<(), i64> {
    let skaddr: u64 = ctx.arg(0);
    if let Some(ends) = sock_ends(skaddr)? {
        emit_socket(TcpEventKind::ResetReceived, skaddr, 0, 0, &ends);
    }
    Ok(())
}

/// Reads a `struct sockaddr_in`/`sockaddr_in6` stored in a tracepoint field.
#[inline(always)]
fn read_tp_sockaddr(ctx: &TracePointContext, at: usize) -> Result<(u16, u16, [u8; 16]), i64> {
    let mut addr = [0u8; 16];
    // SAFETY: offsets from the tracepoint's format, checked by the agent before load.
    unsafe {
        let family: u16 = ctx.read_at(at).map_err(|e| e as i64)?;
        let port: u16 = u16::from_be(ctx.read_at(at + 2).map_err(|e| e as i64)?);
        if family == AF_INET6 {
            addr = ctx.read_at(at + 8).map_err(|e| e as i64)?;
        } else {
            let a: [u8; 4] = ctx.read_at(at + 4).map_err(|e| e as i64)?;
            addr[..4].copy_from_slice(&a);
        }
        Ok((family, port, addr))
    }
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    done(try_send_reset(&ctx))
}

fn try_send_reset(ctx: &TracePointContext) -> Result<(), i64> {
    use kindling_agent_common::tp::send_reset as f;
    // SAFETY: offsets from the tracepoint's format, checked by the agent before load.
    let (skaddr, state, reason) = unsafe {
        (
            ctx.read_at::<u64>(f::SKADDR).map_err(|e| e as i64)?,
            ctx.read_at::<i32>(f::STATE).map_err(|e| e as i64)?,
            ctx.read_at::<u32>(f::REASON).map_err(|e| e as i64)?,
        )
    };
    let (family, sport, saddr) = read_tp_sockaddr(ctx, f::SADDR)?;
    let (_, dport, daddr) = read_tp_sockaddr(ctx, f::DADDR)?;
    if family != AF_INET && family != AF_INET6 {
        return Ok(());
    }
    let ends = Ends {
        family,
        sport,
        dport,
        saddr,
        daddr,
    };
    emit_socket(TcpEventKind::ResetSent, skaddr, state as u8, reason, &ends);
    Ok(())
}

#[raw_tracepoint(tracepoint = "tcp_probe")]
pub fn tcp_probe(ctx: RawTracePointContext) -> u32 {
    done(try_tcp_probe(&ctx))
}

/// `tcp_probe(struct sock *sk, const struct sk_buff *skb)`; the tracepoint's `srtt` is
/// `srtt_us >> 3`.
fn try_tcp_probe(ctx: &RawTracePointContext) -> Result<(), i64> {
    let skaddr: u64 = ctx.arg(0);
    let srtt8: u32 = read_kernel(skaddr + KERNEL_OFFSETS.load().tcp_srtt_us)?;
    let srtt = srtt8 >> 3;
    if srtt == 0 {
        return Ok(());
    }
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    match RTT.get_ptr_mut(&skaddr) {
        Some(state) => {
            // SAFETY: a live map value; concurrent updates of one socket only blur min/max.
            let state = unsafe { &mut *state };
            if srtt < state.min_us {
                state.min_us = srtt;
            }
            if srtt > state.max_us {
                state.max_us = srtt;
            }
            if now.wrapping_sub(state.last_report_ns) < RTT_SAMPLE_NS.load() {
                return Ok(());
            }
            state.last_report_ns = now;
        }
        None => {
            let state = RttState {
                min_us: srtt,
                max_us: srtt,
                last_report_ns: now,
            };
            RTT.insert(&skaddr, &state, 0)?;
        }
    }
    emit(|ev| {
        ev.kind = TcpEventKind::Rtt as u8;
        ev.skaddr = skaddr;
        ev.srtt_us = srtt;
    });
    Ok(())
}

#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn kfree_skb(ctx: RawTracePointContext) -> u32 {
    done(try_kfree_skb(&ctx))
}

/// Reports drops of IPv4/IPv6 TCP and UDP packets with their addresses, read from the
/// packet's headers (the network header must be set, as it is past the device layer).
/// `kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`
fn try_kfree_skb(ctx: &RawTracePointContext) -> Result<(), i64> {
    let skb: u64 = ctx.arg(0);
    let reason: u32 = ctx.arg(2);
    if reason == IGNORED_DROP_REASON.load() {
        return Ok(());
    }
    let off = KERNEL_OFFSETS.load();
    let head: u64 = read_kernel(skb + off.skb_head)?;
    let network_header: u16 = read_kernel(skb + off.skb_network_header)?;
    if network_header == 0xffff {
        return Ok(());
    }
    let ip = head + u64::from(network_header);
    let first: u8 = read_kernel(ip)?;
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    let (family, protocol, l4) = match first >> 4 {
        4 => {
            let protocol: u8 = read_kernel(ip + 9)?;
            let s: [u8; 4] = read_kernel(ip + 12)?;
            let d: [u8; 4] = read_kernel(ip + 16)?;
            saddr[..4].copy_from_slice(&s);
            daddr[..4].copy_from_slice(&d);
            (AF_INET, protocol, ip + u64::from(first & 0x0f) * 4)
        }
        6 => {
            let protocol: u8 = read_kernel(ip + 6)?;
            saddr = read_kernel(ip + 8)?;
            daddr = read_kernel(ip + 24)?;
            (AF_INET6, protocol, ip + 40)
        }
        _ => return Ok(()),
    };
    if protocol != IPPROTO_TCP_U8 && protocol != IPPROTO_UDP_U8 {
        return Ok(());
    }
    let ports: [u8; 4] = read_kernel(l4)?;
    emit(|ev| {
        ev.kind = TcpEventKind::Drop as u8;
        ev.reason = reason;
        ev.ip_protocol = protocol;
        ev.family = family;
        ev.saddr = saddr;
        ev.daddr = daddr;
        ev.sport = u16::from_be_bytes([ports[0], ports[1]]);
        ev.dport = u16::from_be_bytes([ports[2], ports[3]]);
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Socket payload capture: read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg,
// sendmmsg, recvmmsg and close, on TCP and UDP sockets only.
// ---------------------------------------------------------------------------------------------

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
const IPPROTO_UDP: u16 = 17;
/// sizeof(struct mmsghdr): a 56-byte user_msghdr, the u32 msg_len, padding.
const MMSGHDR_SIZE: u64 = 64;
/// Messages of one sendmmsg/recvmmsg reported (glibc's resolver sends A and AAAA together).
const MMSG_REPORTED: u64 = 2;

/// A socket an fd refers to: `sk` 0 means "not a TCP or UDP socket" (cached too, so other
/// fds cost one map lookup per syscall).
#[derive(Clone, Copy)]
#[repr(C)]
struct SockRef {
    sk: u64,
    sock_type: u16,
    family: u16,
    _pad: u32,
}

/// (tgid << 32 | fd) -> SockRef; entries are removed at close(2).
#[map]
static SOCK_FDS: LruHashMap<u64, SockRef> = LruHashMap::with_max_entries(65536, 0);

/// A socket syscall in flight, from enter to exit, keyed by pid_tgid.
#[derive(Clone, Copy)]
#[repr(C)]
struct PendingIo {
    ts_enter_ns: u64,
    sk: u64,
    /// Buffer, iovec array, msghdr or mmsghdr array, depending on the syscall.
    arg_ptr: u64,
    /// sockaddr of sendto/recvfrom (0 if none).
    addr_ptr: u64,
    fd: i32,
    syscall: u8,
    sock_type: u8,
    family: u16,
}

#[map]
static PENDING_IO: LruHashMap<u64, PendingIo> = LruHashMap::with_max_entries(16384, 0);

/// Looks up (and caches) what `fd` of the current process is.
#[inline(always)]
fn sock_ref(fd: u64) -> Result<SockRef, i64> {
    let key = (bpf_get_current_pid_tgid() & 0xffff_ffff_0000_0000) | (fd & 0xffff_ffff);
    // SAFETY: the value is copied out.
    if let Some(r) = unsafe { SOCK_FDS.get(&key) } {
        return Ok(*r);
    }
    let r = classify_fd(fd).unwrap_or(SockRef {
        sk: 0,
        sock_type: 0,
        family: 0,
        _pad: 0,
    });
    SOCK_FDS.insert(&key, &r, 0)?;
    Ok(r)
}

#[inline(always)]
fn classify_fd(fd: u64) -> Result<SockRef, i64> {
    let off = KERNEL_OFFSETS.load();
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read_kernel(task + off.task_files)?;
    let fdt: u64 = read_kernel(files + off.files_fdt)?;
    let fd_array: u64 = read_kernel(fdt + off.fdtable_fd)?;
    let file: u64 = read_kernel(fd_array + (fd & 0xf_ffff) * 8)?;
    let inode: u64 = read_kernel(file + off.file_inode)?;
    let mode: u16 = read_kernel(inode + off.inode_mode)?;
    let none = SockRef {
        sk: 0,
        sock_type: 0,
        family: 0,
        _pad: 0,
    };
    if mode & S_IFMT != S_IFSOCK {
        return Ok(none);
    }
    let socket: u64 = read_kernel(file + off.file_private_data)?;
    let sk: u64 = read_kernel(socket + off.socket_sk)?;
    let sock_type: u16 = read_kernel(sk + off.sock_type)?;
    let protocol: u16 = read_kernel(sk + off.sock_protocol)?;
    let family: u16 = read_kernel(sk + off.skc_family)?;
    let ip = family == AF_INET || family == AF_INET6;
    let tcp = sock_type == SOCK_STREAM && protocol == IPPROTO_TCP;
    let udp = sock_type == SOCK_DGRAM && protocol == IPPROTO_UDP;
    if !ip || !(tcp || udp) {
        return Ok(none);
    }
    Ok(SockRef {
        sk,
        sock_type,
        family,
        _pad: 0,
    })
}

#[inline(always)]
fn io_enter(ctx: &TracePointContext, syscall: SocketSyscall) -> Result<(), i64> {
    // SAFETY: syscall arguments at their format offsets (checked at start).
    let (fd, arg_ptr): (u64, u64) = unsafe {
        (
            ctx.read_at(SYSCALL_ARG0).map_err(|e| e as i64)?,
            ctx.read_at(SYSCALL_ARG0 + 8).map_err(|e| e as i64)?,
        )
    };
    if is_agent() {
        return Ok(());
    }
    let r = sock_ref(fd)?;
    if r.sk == 0 {
        return Ok(());
    }
    let addr_ptr: u64 = match syscall {
        // SAFETY: fifth argument of sendto/recvfrom.
        SocketSyscall::Sendto | SocketSyscall::Recvfrom => unsafe {
            ctx.read_at(SYSCALL_ARG0 + 32).map_err(|e| e as i64)?
        },
        _ => 0,
    };
    let pending = PendingIo {
        // SAFETY: plain helper call.
        ts_enter_ns: unsafe { bpf_ktime_get_ns() },
        sk: r.sk,
        arg_ptr,
        addr_ptr,
        fd: fd as i32,
        syscall: syscall as u8,
        sock_type: r.sock_type as u8,
        family: r.family,
    };
    PENDING_IO.insert(&bpf_get_current_pid_tgid(), &pending, 0)?;
    Ok(())
}

#[inline(always)]
fn read_user<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_user faults safely on a bad address.
    unsafe { bpf_probe_read_user(addr as *const T) }.map_err(|e| e as i64)
}

/// Fills the socket addresses of `ev` from the socket; for an unconnected UDP socket, the
/// remote end comes from the syscall's sockaddr when it has one.
#[inline(always)]
fn fill_addresses(ev: &mut DataEvent, p: &PendingIo, sockaddr: u64) -> Result<(), i64> {
    let off = KERNEL_OFFSETS.load();
    let sk = p.sk;
    let dport: u16 = read_kernel(sk + off.skc_dport)?;
    ev.dport = u16::from_be(dport);
    ev.sport = read_kernel(sk + off.skc_num)?;
    if p.family == AF_INET6 {
        ev.saddr = read_kernel(sk + off.skc_v6_rcv_saddr)?;
        ev.daddr = read_kernel(sk + off.skc_v6_daddr)?;
    } else {
        let s: [u8; 4] = read_kernel(sk + off.skc_rcv_saddr)?;
        let d: [u8; 4] = read_kernel(sk + off.skc_daddr)?;
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
    }
    if sockaddr != 0 {
        // struct sockaddr_in{,6}: family u16, port be16, then the address (v4 at 4, v6 at 8).
        let family: u16 = read_user(sockaddr)?;
        let port: u16 = read_user(sockaddr + 2)?;
        if family == AF_INET {
            let a: [u8; 4] = read_user(sockaddr + 4)?;
            ev.daddr = [0; 16];
            ev.daddr[..4].copy_from_slice(&a);
            ev.dport = u16::from_be(port);
        } else if family == AF_INET6 {
            ev.daddr = read_user(sockaddr + 8)?;
            ev.dport = u16::from_be(port);
        }
    }
    Ok(())
}

/// Reserves, fills and submits one data event for `len` bytes at user address `buf`.
#[inline(always)]
fn emit_data(p: &PendingIo, buf: u64, len: u64, sockaddr: u64) -> Result<(), i64> {
    let Some(mut entry) = DATA_EVENTS.reserve::<DataEvent>(0) else {
        bump(counter::DATA_RINGBUF_FULL);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `ev` points at a reserved, exclusively owned DataEvent-sized slot; every field is
    // written before submit, the payload only up to `captured`.
    let result = unsafe {
        (*ev).ts_enter_ns = p.ts_enter_ns;
        (*ev).ts_exit_ns = bpf_ktime_get_ns();
        (*ev).skaddr = p.sk;
        (*ev).len = len;
        (*ev).cgroup_id = bpf_get_current_cgroup_id();
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).fd = p.fd;
        (*ev).syscall = p.syscall;
        (*ev).sock_type = p.sock_type;
        (*ev).family = p.family;
        (*ev)._pad = [0; 2];
        (*ev).saddr = [0; 16];
        (*ev).daddr = [0; 16];
        (*ev).sport = 0;
        (*ev).dport = 0;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        let mut n = if payload_excluded() {
            0
        } else {
            PAYLOAD_BYTES.load() as u64
        };
        if n > len {
            n = len;
        }
        if n > PAYLOAD_MAX as u64 {
            n = PAYLOAD_MAX as u64;
        }
        let copied = if n > 0 && buf != 0 {
            let dst = (&raw mut (*ev).payload).cast::<core::ffi::c_void>();
            probe_read_user_raw(dst, n as u32, buf as *const core::ffi::c_void) == 0
        } else {
            false
        };
        (*ev).captured = if copied { n as u16 } else { 0 };
        fill_addresses(&mut *ev, p, sockaddr)
    };
    // Waking the agent from inside the application's syscall costs more than the copy: wake it
    // only when the ring holds DATA_WAKEUP_BYTES; it also drains on a short timer.
    let flags = if DATA_EVENTS.query(BPF_RB_AVAIL_DATA) >= DATA_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags);
    result
}

#[inline(always)]
fn io_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let Some(&p) = (unsafe { PENDING_IO.get(&key) }) else {
        return Ok(());
    };
    let _ = PENDING_IO.remove(&key);
    // SAFETY: `ret` of the syscall exit tracepoint.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_ARG0) }.map_err(|e| e as i64)?;
    if ret <= 0 {
        return Ok(());
    }
    let syscall = SocketSyscall::from_u8(p.syscall).ok_or(-1i64)?;
    match syscall {
        SocketSyscall::Read | SocketSyscall::Write => emit_data(&p, p.arg_ptr, ret as u64, 0),
        SocketSyscall::Sendto | SocketSyscall::Recvfrom => {
            emit_data(&p, p.arg_ptr, ret as u64, p.addr_ptr)
        }
        SocketSyscall::Readv | SocketSyscall::Writev => {
            // The first iovec: { void *base; size_t len; }.
            let base: u64 = read_user(p.arg_ptr)?;
            emit_data(&p, base, ret as u64, 0)
        }
        SocketSyscall::Sendmsg | SocketSyscall::Recvmsg => {
            // struct user_msghdr: msg_name at 0, msg_iov at 16.
            let name: u64 = read_user(p.arg_ptr)?;
            let iov: u64 = read_user(p.arg_ptr + 16)?;
            let base: u64 = read_user(iov)?;
            emit_data(&p, base, ret as u64, name)
        }
        SocketSyscall::Sendmmsg | SocketSyscall::Recvmmsg => {
            // ret is the number of messages; each mmsghdr ends with its byte count at 56.
            let mut i = 0u64;
            while i < MMSG_REPORTED {
                if i >= ret as u64 {
                    break;
                }
                let hdr = p.arg_ptr + i * MMSGHDR_SIZE;
                let name: u64 = read_user(hdr)?;
                let iov: u64 = read_user(hdr + 16)?;
                let base: u64 = read_user(iov)?;
                let len: u32 = read_user(hdr + 56)?;
                emit_data(&p, base, u64::from(len), name)?;
                i += 1;
            }
            Ok(())
        }
        SocketSyscall::Close => Ok(()),
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn close_enter(ctx: TracePointContext) -> u32 {
    done(try_close_enter(&ctx))
}

/// Forgets the fd and tells user space the socket's fd is gone (UDP flows end here).
fn try_close_enter(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: first syscall argument.
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0) }.map_err(|e| e as i64)?;
    let key = (bpf_get_current_pid_tgid() & 0xffff_ffff_0000_0000) | (fd & 0xffff_ffff);
    // SAFETY: copied out before removal.
    let Some(&r) = (unsafe { SOCK_FDS.get(&key) }) else {
        return Ok(());
    };
    let _ = SOCK_FDS.remove(&key);
    if r.sk == 0 {
        return Ok(());
    }
    let p = PendingIo {
        // SAFETY: plain helper call.
        ts_enter_ns: unsafe { bpf_ktime_get_ns() },
        sk: r.sk,
        arg_ptr: 0,
        addr_ptr: 0,
        fd: fd as i32,
        syscall: SocketSyscall::Close as u8,
        sock_type: r.sock_type as u8,
        family: r.family,
    };
    emit_data(&p, 0, 0, 0)
}

/// An enter/exit program pair for one socket syscall.
macro_rules! io_programs {
    ($enter:ident, $exit:ident, $tp_enter:literal, $tp_exit:literal, $kind:expr) => {
        #[tracepoint(category = "syscalls", name = $tp_enter)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            done(io_enter(&ctx, $kind))
        }

        #[tracepoint(category = "syscalls", name = $tp_exit)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            done(io_exit(&ctx))
        }
    };
}

io_programs!(
    read_enter,
    read_exit,
    "sys_enter_read",
    "sys_exit_read",
    SocketSyscall::Read
);
io_programs!(
    write_enter,
    write_exit,
    "sys_enter_write",
    "sys_exit_write",
    SocketSyscall::Write
);
io_programs!(
    readv_enter,
    readv_exit,
    "sys_enter_readv",
    "sys_exit_readv",
    SocketSyscall::Readv
);
io_programs!(
    writev_enter,
    writev_exit,
    "sys_enter_writev",
    "sys_exit_writev",
    SocketSyscall::Writev
);
io_programs!(
    sendto_enter,
    sendto_exit,
    "sys_enter_sendto",
    "sys_exit_sendto",
    SocketSyscall::Sendto
);
io_programs!(
    recvfrom_enter,
    recvfrom_exit,
    "sys_enter_recvfrom",
    "sys_exit_recvfrom",
    SocketSyscall::Recvfrom
);
io_programs!(
    sendmsg_enter,
    sendmsg_exit,
    "sys_enter_sendmsg",
    "sys_exit_sendmsg",
    SocketSyscall::Sendmsg
);
io_programs!(
    recvmsg_enter,
    recvmsg_exit,
    "sys_enter_recvmsg",
    "sys_exit_recvmsg",
    SocketSyscall::Recvmsg
);
io_programs!(
    sendmmsg_enter,
    sendmmsg_exit,
    "sys_enter_sendmmsg",
    "sys_exit_sendmmsg",
    SocketSyscall::Sendmmsg
);
io_programs!(
    recvmmsg_enter,
    recvmmsg_exit,
    "sys_enter_recvmmsg",
    "sys_exit_recvmmsg",
    SocketSyscall::Recvmmsg
);

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("kindling-probes is an eBPF object: agent/build.rs builds it for bpfel-unknown-none");
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
