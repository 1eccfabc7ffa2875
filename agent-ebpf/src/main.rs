//! Kindling's eBPF programs.
//!
//! - `inet_sock_set_state` (tracepoint `sock/inet_sock_set_state`): every TCP state change, with
//!   the socket's addresses; on entry to TCP_CLOSE also the socket's byte counters.
//! - `connect_enter`/`connect_exit` and `accept_enter`/`accept_exit` (the syscall tracepoints of
//!   connect, accept and accept4): which process connected or accepted which socket, found by
//!   walking the task's fd table to the `struct sock`.
//!
//! Events go to user space through one ring buffer. A full ring buffer drops the newest event and
//! bumps the `RINGBUF_FULL` counter; nothing blocks and nothing loops.
// Built for the bpfel target by agent/build.rs. A host build (`cargo clippy --workspace`)
// only type-checks the programs; its `main` says where the real object comes from.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_probe_read_user,
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use kindling_agent_common::{
    AF_INET, AF_INET6, COMM_LEN, EVENTS_RING_BYTES, KernelOffsets, TcpEvent, TcpEventKind, counter,
    tcp_state,
    tp::{SYSCALL_ARG0, set_state},
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
});

#[map]
static TCP_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

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
        skaddr: 0,
        bytes_sent: 0,
        bytes_received: 0,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ret: 0,
        sport: 0,
        dport: 0,
        family: 0,
        kind: 0,
        old_state: 0,
        new_state: 0,
        _pad: [0; 3],
        saddr: [0; 16],
        daddr: [0; 16],
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    let ev = entry.write(ev);
    fill(ev);
    entry.submit(0);
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    match try_inet_sock_set_state(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            bump(counter::READ_FAILED);
            0
        }
    }
}

fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets from the tracepoint's format, checked by the agent before load.
    let protocol: u16 = unsafe { ctx.read_at(set_state::PROTOCOL) }.map_err(|e| e as i64)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    // SAFETY: as above.
    let (skaddr, old_state, new_state, sport, dport, family) = unsafe {
        (
            ctx.read_at::<u64>(set_state::SKADDR)
                .map_err(|e| e as i64)?,
            ctx.read_at::<i32>(set_state::OLDSTATE)
                .map_err(|e| e as i64)?,
            ctx.read_at::<i32>(set_state::NEWSTATE)
                .map_err(|e| e as i64)?,
            ctx.read_at::<u16>(set_state::SPORT).map_err(|e| e as i64)?,
            ctx.read_at::<u16>(set_state::DPORT).map_err(|e| e as i64)?,
            ctx.read_at::<u16>(set_state::FAMILY)
                .map_err(|e| e as i64)?,
        )
    };
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    // SAFETY: as above.
    unsafe {
        if family == AF_INET6 {
            saddr = ctx.read_at(set_state::SADDR_V6).map_err(|e| e as i64)?;
            daddr = ctx.read_at(set_state::DADDR_V6).map_err(|e| e as i64)?;
        } else if family == AF_INET {
            let s: [u8; 4] = ctx.read_at(set_state::SADDR).map_err(|e| e as i64)?;
            let d: [u8; 4] = ctx.read_at(set_state::DADDR).map_err(|e| e as i64)?;
            saddr[..4].copy_from_slice(&s);
            daddr[..4].copy_from_slice(&d);
        } else {
            return Ok(());
        }
    }
    let (mut bytes_sent, mut bytes_received) = (0u64, 0u64);
    if new_state as u8 == tcp_state::CLOSE {
        // tcp_done() sets sk_shutdown only after this transition, so RCV_SHUTDOWN here means
        // the peer's FIN arrived (and advanced bytes_received by one sequence number).
        let off = KERNEL_OFFSETS.load();
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
        ev.sport = sport;
        ev.dport = dport;
        ev.family = family;
        ev.saddr = saddr;
        ev.daddr = daddr;
        ev.bytes_sent = bytes_sent;
        ev.bytes_received = bytes_received;
    });
    Ok(())
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
    emit(|ev| {
        ev.kind = kind as u8;
        ev.skaddr = skaddr;
        ev.ret = ret as i32;
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
