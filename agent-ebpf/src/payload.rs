//! Socket payload capture: read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg,
//! sendmmsg and recvmmsg on TCP and UDP sockets, and their release.
//!
//! The bytes of a send or receive are taken at the socket layer's BTF-typed tracepoints
//! `sock_send_length` / `sock_recv_length` ([`sock_io`]): they fire only for sockets, with the
//! `struct sock` as an argument, so no file or pipe I/O runs a program and no fd is resolved.
//! The syscall and its arguments come from the registers the kernel saved at entry; a
//! sendmmsg/recvmmsg fires them once per message, and a per-thread cursor says which
//! ([`next_message`]). The event is built in a per-CPU scratch value and only its header and
//! the bytes captured go to the ring, following the syscall's buffers (iovecs) up to the payload
//! limit and never past a buffer's length. A TCP syscall that moved more than that also gives
//! its last bytes, up to `TAIL_MAX` ([`capture_tail`]): an HTTP/2 write of a few KiB ends with
//! the frames that close its streams.
//!
//! No program is attached to a syscall tracepoint: one such program makes every syscall of
//! every task take the kernel's slow path (measured, BENCHMARKS.md). What the syscall exits
//! used to give comes from the cgroup v2 socket hooks instead: a UDP sender's address from
//! `recvmsg4`/`recvmsg6` ([`remember_peer`]), and the end of a socket from `sock_release`.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_loop, bpf_probe_read_user as probe_read_user_raw,
            bpf_skc_to_tcp_sock,
        },
    },
    macros::{btf_tracepoint, cgroup_sock, cgroup_sock_addr},
    programs::{BtfTracePointContext, SockAddrContext, SockContext},
};
use kindling_agent_common::{
    AF_INET, AF_INET6, CAPTURE_MAX, COMM_LEN, DATA_HEADER_LEN, DataEvent, IPPROTO_TCP, IPPROTO_UDP,
    NO_PAYLOAD_CGROUP_LEVELS, PAYLOAD_MAX, SOCK_DGRAM, SOCK_STREAM, SocketSyscall, TAIL_MAX,
    TcpEventKind, counter,
};

use crate::{
    events::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, DATA_WAKEUP_BYTES, bump, done,
        emit,
    },
    kernel::{load, offset, read_kernel, syscall_regs},
    maps::{
        AGENT_TGID, DATA_EVENTS, DATA_SCRATCH, DataScratch, IovWalk, KERNEL_OFFSETS, MMSG_CURSORS,
        MmsgCursor, NO_PAYLOAD_CGROUPS, NO_PAYLOAD_CHECK, PAYLOAD_BYTES, SSL_CALLS, SSL_ON_CPU,
        SslSock, TLS_UPROBES, TailWalk, UDP_PEERS, UdpPeer,
    },
};

/// sizeof(struct mmsghdr): a 56-byte user_msghdr, the u32 msg_len, padding.
const MMSGHDR_SIZE: u64 = 64;
/// Buffers of one iovec array followed: UIO_MAXIOV, all a syscall may pass (nginx answers with
/// two, header and body; gRPC's C core writes an HTTP/2 request as 13 to 31 slices). The walk
/// stops at the payload limit.
const MAX_IOVECS: u32 = 1024;
/// Iovecs copied in line before the rest are walked with `bpf_loop` ([`copy_iovecs`]).
const INLINE_IOVECS: u64 = 2;

/// Whether the current task's cgroup (`own`), or one above it, is in `NO_PAYLOAD_CGROUPS`.
#[inline(always)]
fn payload_excluded(own: u64) -> bool {
    if NO_PAYLOAD_CHECK.load() == 0 {
        return false;
    }
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

/// Whether `pid_tgid` is the agent's own.
#[inline(always)]
pub(crate) fn is_agent(pid_tgid: u64) -> bool {
    (pid_tgid >> 32) as u32 == AGENT_TGID.load()
}

#[inline(always)]
pub(crate) fn read_user<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_user faults safely on a bad address.
    unsafe { bpf_probe_read_user(addr as *const T) }.map_err(|e| e as i64)
}

/// A TCP or UDP socket, with its ends as the event reports them.
#[derive(Clone, Copy)]
pub(crate) struct Sock {
    pub(crate) sk: u64,
    pub(crate) sock_type: u8,
    pub(crate) family: u16,
    /// Remote port, host order.
    pub(crate) dport: u16,
    /// Local port, host order.
    pub(crate) sport: u16,
    /// IPv4 addresses (an IPv6 socket's are read in [`fill_header`]).
    pub(crate) daddr: [u8; 4],
    pub(crate) saddr: [u8; 4],
    /// A TCP socket's stream position for the event (`write_seq` for a send, `copied_seq`
    /// for a receive) when a direct load could read it ([`sock_io`]); otherwise
    /// [`fill_header`] reads it with a helper.
    pub(crate) stream_end: Option<u32>,
}

impl Sock {
    /// The socket `sk` if its family, type and protocol make it an IPv4/IPv6 TCP or UDP one.
    #[inline(always)]
    fn of(sk: u64, family: u16, sock_type: u16, protocol: u16) -> Option<Sock> {
        let ip = family == AF_INET || family == AF_INET6;
        let tcp = sock_type == u16::from(SOCK_STREAM) && protocol == u16::from(IPPROTO_TCP);
        let udp = sock_type == u16::from(SOCK_DGRAM) && protocol == u16::from(IPPROTO_UDP);
        if !ip || !(tcp || udp) {
            return None;
        }
        Some(Sock {
            sk,
            sock_type: sock_type as u8,
            family,
            dport: 0,
            sport: 0,
            daddr: [0; 4],
            saddr: [0; 4],
            stream_end: None,
        })
    }
}

/// The socket a `sock_send_length` / `sock_recv_length` tracepoint reports, its fields read
/// by direct loads through the typed pointer (no helper call); None as in [`sock_of_fd`].
#[inline(always)]
fn sock_of_sk(sk: *const u8) -> Option<Sock> {
    // SAFETY: `sk` is the tracepoint's `struct sock *`, checked non-null by the caller; every
    // offset is a `sock` field of the load's size (the agent read them from BTF).
    unsafe {
        let family: u16 = load(sk, offset!(skc_family));
        let sock_type: u16 = load(sk, offset!(sock_type));
        let protocol: u16 = load(sk, offset!(sock_protocol));
        let mut sock = Sock::of(sk as u64, family, sock_type, protocol)?;
        sock.dport = u16::from_be(load(sk, offset!(skc_dport)));
        sock.sport = load(sk, offset!(skc_num));
        sock.daddr = load::<u32>(sk, offset!(skc_daddr)).to_ne_bytes();
        sock.saddr = load::<u32>(sk, offset!(skc_rcv_saddr)).to_ne_bytes();
        Some(sock)
    }
}

/// Fills the header of `ev` (everything but the payload and `len`) for `sock`.
#[inline(always)]
fn fill_header(
    ev: &mut DataEvent,
    sock: Sock,
    fd: u64,
    syscall: SocketSyscall,
    pid_tgid: u64,
) -> Result<(), i64> {
    let off = KERNEL_OFFSETS.load();
    // SAFETY: plain helper calls.
    unsafe {
        ev.ts_exit_ns = bpf_ktime_get_ns();
        ev.cgroup_id = bpf_get_current_cgroup_id();
    }
    ev.skaddr = sock.sk;
    ev.pid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    ev.fd = fd as i32;
    ev.syscall = syscall as u8;
    ev.sock_type = sock.sock_type;
    ev.family = sock.family;
    ev._pad = [0; 4];
    ev.captured = 0;
    ev.tail = 0;
    ev.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    ev.dport = sock.dport;
    ev.sport = sock.sport;
    if sock.family == AF_INET6 {
        ev.saddr = read_kernel(sock.sk + off.skc_v6_rcv_saddr)?;
        ev.daddr = read_kernel(sock.sk + off.skc_v6_daddr)?;
    } else {
        ev.saddr = [0; 16];
        ev.daddr = [0; 16];
        ev.saddr[..4].copy_from_slice(&sock.saddr);
        ev.daddr[..4].copy_from_slice(&sock.daddr);
    }
    ev.stream_end = 0;
    if let Some(end) = sock.stream_end {
        ev.stream_end = end;
    } else if sock.sock_type == SOCK_STREAM && syscall != SocketSyscall::Close {
        let field = if syscall.is_send() {
            off.tcp_write_seq
        } else {
            off.tcp_copied_seq
        };
        ev.stream_end = read_kernel(sock.sk + field)?;
    }
    Ok(())
}

/// For an unconnected UDP socket: the remote end from the syscall's sockaddr, when it has one.
#[inline(always)]
fn fill_peer(ev: &mut DataEvent, sockaddr: u64) -> Result<(), i64> {
    if sockaddr == 0 {
        return Ok(());
    }
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
    Ok(())
}

/// Payload bytes to capture of a syscall that moved `len` bytes, for the event's task.
#[inline(always)]
fn payload_limit(ev: &DataEvent, len: u64) -> u64 {
    if payload_excluded(ev.cgroup_id) {
        return 0;
    }
    let mut n = PAYLOAD_BYTES.load() as u64;
    if n > len {
        n = len;
    }
    if n > PAYLOAD_MAX as u64 {
        n = PAYLOAD_MAX as u64;
    }
    n
}

/// Copies `n` bytes of user memory at `src` to `off` bytes into the scratch payload.
#[inline(always)]
fn copy_user(scratch: *mut DataScratch, off: u64, src: u64, n: u64) -> bool {
    let off = off & (PAYLOAD_MAX as u64 - 1);
    if n == 0 {
        return true;
    }
    if n > PAYLOAD_MAX as u64 || src == 0 {
        return false;
    }
    // SAFETY: `off` < PAYLOAD_MAX and `n` <= PAYLOAD_MAX, and the scratch value has
    // PAYLOAD_MAX spare bytes behind the payload.
    unsafe { read_user_into(scratch, off, src, n) }
}

/// Reads `n` bytes of user memory at `src` to `off` bytes into the scratch payload.
///
/// # Safety
/// `off + n` must lie within the scratch value's payload and the room behind it, by bounds the
/// verifier can see in the caller (it checks this function inlined).
#[inline(always)]
unsafe fn read_user_into(scratch: *mut DataScratch, off: u64, src: u64, n: u64) -> bool {
    // SAFETY: the caller's bounds; the helper faults safely on `src`.
    unsafe {
        let dst = (&raw mut (*scratch).ev.payload)
            .cast::<u8>()
            .add(off as usize)
            .cast::<core::ffi::c_void>();
        probe_read_user_raw(dst, n as u32, src as *const core::ffi::c_void) == 0
    }
}

/// Copies `n` (at most `TAIL_MAX`) bytes of user memory at `src` to `off` (at most
/// `CAPTURE_MAX`) bytes into the scratch payload: a piece of a syscall's tail.
#[inline(always)]
fn copy_user_tail(scratch: *mut DataScratch, off: u64, src: u64, n: u64) -> bool {
    if n == 0 {
        return true;
    }
    if off > CAPTURE_MAX as u64 || n > TAIL_MAX as u64 || src == 0 {
        return false;
    }
    // SAFETY: `off` <= CAPTURE_MAX and `n` <= TAIL_MAX, and the scratch value has
    // PAYLOAD_MAX (> TAIL_MAX) spare bytes behind the payload.
    unsafe { read_user_into(scratch, off, src, n) }
}

/// One step of [`capture_tail`]'s walk of an iovec array, a `bpf_loop` callback: the part of
/// iovec `index` that lies in the tail, copied to its place; 1 stops the loop (past the tail,
/// past the array, or a read failed).
#[inline(never)]
extern "C" fn copy_tail_iovec(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch value, exclusively ours while the program runs.
    let walk = unsafe { &mut (*scratch).tail_walk };
    if index >= walk.iovcnt || walk.pos >= walk.to {
        return 1;
    }
    // struct iovec { void *base; size_t len; }
    let Ok(v) = read_user::<[u64; 2]>(walk.iov + index * 16) else {
        return 1;
    };
    let start = walk.pos;
    let end = start.saturating_add(v[1]);
    walk.pos = end;
    if end <= walk.from {
        return 0;
    }
    let a = if start > walk.from { start } else { walk.from };
    let b = if end < walk.to { end } else { walk.to };
    if !copy_user_tail(
        scratch,
        walk.dst + (a - walk.from),
        v[0] + (a - start),
        b - a,
    ) {
        return 1;
    }
    0
}

/// Copies the last `n` (at most `TAIL_MAX`) of the `len` bytes a syscall moved to `dst` bytes
/// into the scratch payload, from its one buffer `buf` or its iovec array; whether they were
/// copied.
#[inline(always)]
fn capture_tail(
    scratch: *mut DataScratch,
    dst: u64,
    buf: u64,
    iovecs: Option<(u64, u64)>,
    len: u64,
    n: u64,
) -> bool {
    let Some((iov, iovcnt)) = iovecs else {
        return copy_user_tail(scratch, dst, buf + (len - n), n);
    };
    // SAFETY: this CPU's scratch value, exclusively ours while the program runs.
    unsafe {
        (*scratch).tail_walk = TailWalk {
            iov,
            iovcnt,
            pos: 0,
            from: len - n,
            to: len,
            dst,
        };
    }
    // SAFETY: the callback is a BPF subprogram of the signature bpf_loop expects; it takes
    // no context.
    unsafe {
        bpf_loop(
            MAX_IOVECS,
            copy_tail_iovec as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        (*scratch).tail_walk.pos >= len
    }
}

/// Copies iovec `index` of the array at `iov` (`iovcnt` of them) to `off` bytes into the
/// scratch payload, up to its length and the `limit` bytes wanted in all; returns the bytes
/// copied, or `None` when the walk is over (every iovec, or `limit` bytes, or a read failed).
#[inline(always)]
fn copy_iovec_at(
    scratch: *mut DataScratch,
    iov: u64,
    iovcnt: u64,
    index: u64,
    off: u64,
    limit: u64,
) -> Option<u64> {
    if index >= iovcnt || off >= limit {
        return None;
    }
    // struct iovec { void *base; size_t len; }
    let v = read_user::<[u64; 2]>(iov + index * 16).ok()?;
    let mut n = v[1];
    if n > limit - off {
        n = limit - off;
    }
    copy_user(scratch, off, v[0], n).then_some(n)
}

/// One step of [`copy_iovecs`], a `bpf_loop` callback: the walk's next iovec
/// ([`copy_iovec_at`]); 1 stops the loop.
#[inline(never)]
extern "C" fn copy_iovec(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch value, exclusively ours while the program runs.
    let walk = unsafe { &mut (*scratch).walk };
    match copy_iovec_at(scratch, walk.iov, walk.iovcnt, index, walk.off, walk.limit) {
        Some(n) => {
            walk.off += n;
            0
        }
        None => 1,
    }
}

/// Copies up to `limit` bytes from the buffers of the iovec array `iov` (`iovcnt` of them,
/// at most [`MAX_IOVECS`] followed), each only up to its length, into the scratch payload;
/// returns the bytes copied. The first [`INLINE_IOVECS`] are copied in line (most callers pass
/// one or two: nginx a header and a body, and a `bpf_loop` call costs more than they do); the
/// rest by a `bpf_loop` whose state lives in the scratch value ([`IovWalk`]), so the verifier
/// checks its step once, where an open-coded loop of that many iterations exceeds its budget.
#[inline(always)]
fn copy_iovecs(scratch: *mut DataScratch, iov: u64, iovcnt: u64, limit: u64) -> u64 {
    let mut off = 0u64;
    let mut i = 0u64;
    while i < INLINE_IOVECS {
        match copy_iovec_at(scratch, iov, iovcnt, i, off, limit) {
            Some(n) => off += n,
            None => return off,
        }
        i += 1;
    }
    if i >= iovcnt || off >= limit {
        return off;
    }
    // SAFETY: this CPU's scratch value, exclusively ours while the program runs.
    unsafe {
        (*scratch).walk = IovWalk {
            iov: iov + INLINE_IOVECS * 16,
            iovcnt: iovcnt - INLINE_IOVECS,
            limit,
            off,
        };
    }
    // SAFETY: the callback is a BPF subprogram of the signature bpf_loop expects; it takes
    // no context.
    unsafe {
        bpf_loop(
            MAX_IOVECS - INLINE_IOVECS as u32,
            copy_iovec as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        (*scratch).walk.off
    }
}

/// Sends `ev` (its header and captured payload) to the data ring.
#[inline(always)]
fn output(ev: *const DataEvent) {
    // SAFETY: `ev` is a whole DataEvent (a scratch or map value); the length is clamped to its
    // header plus at most CAPTURE_MAX payload bytes.
    let bytes = unsafe {
        let captured = ((*ev).captured as usize) & (2 * PAYLOAD_MAX - 1);
        let n = if captured > CAPTURE_MAX {
            CAPTURE_MAX
        } else {
            captured
        };
        core::slice::from_raw_parts(ev.cast::<u8>(), DATA_HEADER_LEN + n)
    };
    // Waking the agent from inside the application's syscall costs more than the copy: wake it
    // only when the ring holds DATA_WAKEUP_BYTES; it also drains on a short timer.
    let flags = if DATA_EVENTS.query(BPF_RB_AVAIL_DATA) >= DATA_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if DATA_EVENTS.output(bytes, flags).is_err() {
        bump(counter::DATA_RINGBUF_FULL);
    }
}

/// For a message received on an unconnected UDP socket: the sender's address, which the
/// `recvmsg4`/`recvmsg6` program of this thread kept just before ([`remember_peer`]); the
/// entry is taken either way. No entry (the caller asked for no address) leaves the event
/// without one.
#[inline(always)]
fn take_peer(ev: &mut DataEvent, pid_tgid: u64) {
    let Some(peer) = UDP_PEERS.get_ptr(&pid_tgid) else {
        return;
    };
    // SAFETY: this thread's entry, which only this thread's programs write; copied out
    // before it is removed.
    let peer = unsafe { *peer };
    let _ = UDP_PEERS.remove(&pid_tgid);
    if peer.sk == ev.skaddr {
        ev.daddr = peer.addr;
        ev.dport = peer.port;
    }
}

/// `recvmsg(..., MSG_PEEK)`: the bytes stay queued and are reported when they are read.
const MSG_PEEK: i32 = 2;
/// `task_struct.flags` of a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;
/// x86_64 syscall numbers of recvmmsg and sendmmsg.
const NR_RECVMMSG: u64 = 299;
const NR_SENDMMSG: u64 = 307;

/// The socket syscall a task is in, by its x86_64 number: those whose bytes the socket
/// tracepoints report (sendfile, splice and io_uring are not captured).
#[inline(always)]
fn socket_syscall(nr: u64) -> Option<SocketSyscall> {
    Some(match nr {
        0 => SocketSyscall::Read,
        1 => SocketSyscall::Write,
        19 => SocketSyscall::Readv,
        20 => SocketSyscall::Writev,
        44 => SocketSyscall::Sendto,
        45 => SocketSyscall::Recvfrom,
        46 => SocketSyscall::Sendmsg,
        47 => SocketSyscall::Recvmsg,
        NR_RECVMMSG => SocketSyscall::Recvmmsg,
        NR_SENDMMSG => SocketSyscall::Sendmmsg,
        _ => return None,
    })
}

/// `sock_sendmsg` / `sock_recvmsg` moved `ret` bytes on `sk` (tracepoints `sock_send_length`,
/// `sock_recv_length`): the socket is the tracepoint's typed argument, so there is no fd to
/// resolve, and the syscall and its arguments are the task's saved registers, read directly.
#[inline(always)]
fn sock_io(ctx: &BtfTracePointContext, send: bool) -> Result<(), i64> {
    let sk: *const u8 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let msg_flags: i32 = ctx.arg(2);
    if ret <= 0 {
        // A failed message ends a sendmmsg/recvmmsg: the thread's next one starts at its first
        // message again.
        let nr = syscall_regs().0;
        if nr == NR_RECVMMSG || nr == NR_SENDMMSG {
            let _ = MMSG_CURSORS.remove(&bpf_get_current_pid_tgid());
        }
        return Ok(());
    }
    if sk.is_null() || (!send && msg_flags & MSG_PEEK != 0) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_agent(pid_tgid) {
        return Ok(());
    }
    // SAFETY: the current task is a BTF-typed pointer from a helper that cannot fail;
    // `task_flags` is the offset of its u32 `flags`.
    let task_flags = unsafe { load::<u32>(bpf_get_current_task_btf().cast(), offset!(task_flags)) };
    if task_flags & PF_KTHREAD != 0 {
        return Ok(());
    }
    let (nr, args) = syscall_regs();
    let Some(syscall) = socket_syscall(nr) else {
        return Ok(());
    };
    if syscall.is_send() != send {
        return Ok(());
    }
    let Some(mut sock) = sock_of_sk(sk) else {
        return Ok(());
    };
    if TLS_UPROBES.load() != 0 && inside_ssl_call(pid_tgid, &sock, args[0]) {
        // Ciphertext of an OpenSSL call: its plaintext is captured when the call returns.
        return Ok(());
    }
    if sock.sock_type == SOCK_STREAM {
        // SAFETY: `sk` is the tracepoint's BTF-typed socket; the helper returns it typed as a
        // `tcp_sock` (or null when it is not one), so the verifier checks the load against that
        // type; the offsets are u32 fields of `tcp_sock`.
        unsafe {
            let tcp = bpf_skc_to_tcp_sock(sk.cast_mut().cast()) as *const u8;
            if !tcp.is_null() {
                let field = if send {
                    offset!(tcp_write_seq)
                } else {
                    offset!(tcp_copied_seq)
                };
                sock.stream_end = Some(load(tcp, field));
            }
        }
    }
    capture(sock, syscall, pid_tgid, args, ret as u64)
}

/// Whether the thread that moved bytes on `sock` (file descriptor `fd`) is inside an OpenSSL
/// call (`tls.rs`), which then owns the socket's bytes; the socket is noted in the call.
#[inline(always)]
fn inside_ssl_call(pid_tgid: u64, sock: &Sock, fd: u64) -> bool {
    if SSL_ON_CPU.get(0).is_none_or(|&t| t != pid_tgid) {
        return false;
    }
    let Some(call) = SSL_CALLS.get_ptr_mut(&pid_tgid) else {
        return false;
    };
    if sock.sock_type != SOCK_STREAM {
        return false;
    }
    // SAFETY: this thread's entry, which only this thread's programs touch.
    unsafe {
        (*call).sock = SslSock {
            sk: sock.sk,
            fd,
            family: sock.family,
            sport: sock.sport,
            dport: sock.dport,
            saddr: sock.saddr,
            daddr: sock.daddr,
        };
    }
    true
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> u32 {
    done(sock_io(&ctx, true))
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> u32 {
    done(sock_io(&ctx, false))
}

/// Which message of the thread's sendmmsg/recvmmsg (whose `struct mmsghdr` array is at `vec`,
/// `vlen` long) the socket tracepoint reports now, and the cursor moved past it. The kernel
/// sends or receives the messages in order, one tracepoint each, and the syscall ends after
/// the last one or at the first that fails (which resets the cursor, see [`sock_io`]).
#[inline(always)]
fn next_message(pid_tgid: u64, vec: u64, vlen: u64) -> u64 {
    let index = match MMSG_CURSORS.get_ptr(&pid_tgid) {
        // SAFETY: this thread's entry, which only this thread's programs touch.
        Some(cursor) if unsafe { (*cursor).vec } == vec => unsafe { (*cursor).next },
        _ => 0,
    };
    if index + 1 >= vlen {
        let _ = MMSG_CURSORS.remove(&pid_tgid);
    } else {
        let cursor = MmsgCursor {
            vec,
            next: index + 1,
        };
        let _ = MMSG_CURSORS.insert(&pid_tgid, &cursor, 0);
    }
    index
}

/// The data event of a socket syscall with `args` that moved `ret` bytes on `sock` (for
/// sendmmsg/recvmmsg, one message of it).
#[inline(always)]
pub(crate) fn capture(
    sock: Sock,
    syscall: SocketSyscall,
    pid_tgid: u64,
    args: [u64; 5],
    ret: u64,
) -> Result<(), i64> {
    let fd = args[0];
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's scratch value, exclusively ours while the program runs.
    let ev = unsafe { &mut (*scratch).ev };
    fill_header(ev, sock, fd, syscall, pid_tgid)?;
    ev.len = ret;
    let udp = sock.sock_type == SOCK_DGRAM;
    let limit = payload_limit(ev, ret);
    // The message's user_msghdr (msg_name at 0, msg_iov at 16, msg_iovlen at 24).
    let msghdr = match syscall {
        SocketSyscall::Sendmsg | SocketSyscall::Recvmsg => args[1],
        SocketSyscall::Sendmmsg | SocketSyscall::Recvmmsg => {
            args[1] + next_message(pid_tgid, args[1], args[2]) * MMSGHDR_SIZE
        }
        _ => 0,
    };
    // The buffers: one, or an iovec array (followed from a single place: the verifier walks
    // its loop once per call site).
    let (sockaddr, iovecs) = match syscall {
        SocketSyscall::Read
        | SocketSyscall::Write
        | SocketSyscall::Sendto
        | SocketSyscall::Recvfrom
        | SocketSyscall::SslWrite
        | SocketSyscall::SslRead
        | SocketSyscall::GoTlsWrite
        | SocketSyscall::GoTlsRead => {
            if copy_user(scratch, 0, args[1], limit) {
                ev.captured = limit as u16;
            }
            (args[4], None)
        }
        SocketSyscall::Readv | SocketSyscall::Writev => (0, Some((args[1], args[2]))),
        _ => {
            let iov: u64 = read_user(msghdr + 16)?;
            let iovlen: u64 = read_user(msghdr + 24)?;
            (read_user(msghdr)?, Some((iov, iovlen)))
        }
    };
    if let Some((iov, iovlen)) = iovecs {
        ev.captured = copy_iovecs(scratch, iov, iovlen, limit) as u16;
    }
    let head = u64::from(ev.captured);
    if !udp && head == limit && limit > 0 && ret > limit {
        let mut n = ret - limit;
        if n > TAIL_MAX as u64 {
            n = TAIL_MAX as u64;
        }
        if capture_tail(scratch, head, args[1], iovecs, ret, n) {
            ev.captured = (head + n) as u16;
            ev.tail = n as u16;
        }
    }
    if udp && ev.dport == 0 {
        // An unconnected UDP socket: a send names its receiver in the syscall's sockaddr, a
        // receive's sender was kept by the recvmsg4/6 program.
        if syscall.is_send() {
            fill_peer(ev, sockaddr)?;
        } else {
            take_peer(ev, pid_tgid);
        }
    }
    output(ev);
    Ok(())
}

/// The sender of a UDP message to an unconnected socket, kept for the socket tracepoint that
/// follows in the same thread ([`take_peer`]): `udp_recvmsg` runs the cgroup `recvmsg4`/`6`
/// programs once it has written the address for the caller (only when the caller asked for
/// it), and returns to `sock_recvmsg`, which fires `sock_recv_length`.
#[inline(always)]
fn remember_peer(ctx: &SockAddrContext, family: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_agent(pid_tgid) {
        return;
    }
    // SAFETY: the program's context, whose fields the verifier checks; `sk` is always set
    // for these attach types.
    unsafe {
        let sa = &*ctx.sock_addr;
        let sk = sa.__bindgen_anon_1.sk;
        if sk.is_null() || (*sk).dst_port != 0 {
            return;
        }
        let mut peer = UdpPeer {
            sk: sk as u64,
            port: u16::from_be(sa.user_port as u16),
            _pad: [0; 6],
            addr: [0; 16],
        };
        if family == AF_INET {
            peer.addr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
        } else {
            let mut i = 0;
            while i < 4 {
                peer.addr[i * 4..i * 4 + 4].copy_from_slice(&sa.user_ip6[i].to_ne_bytes());
                i += 1;
            }
        }
        let _ = UDP_PEERS.insert(&pid_tgid, &peer, 0);
    }
}

#[cgroup_sock_addr(recvmsg4)]
pub fn udp_recvmsg4(ctx: SockAddrContext) -> i32 {
    remember_peer(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub fn udp_recvmsg6(ctx: SockAddrContext) -> i32 {
    remember_peer(&ctx, AF_INET6);
    1
}

/// A TCP or UDP socket released by its last file (its last close, or the exit of the last
/// process that held it), in the releasing task: user space ends the socket's sessions (UDP
/// flows end here), and for TCP learns who held it (an accepted socket's owner when it moved no
/// data; see `Release` in the TCP events).
#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    // SAFETY: the program's context, whose fields the verifier checks.
    let (family, sock_type, protocol) = unsafe {
        let sk = &*ctx.sock;
        (sk.family as u16, sk.type_ as u16, sk.protocol as u16)
    };
    let skaddr = ctx.sock as u64;
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(sock) = Sock::of(skaddr, family, sock_type, protocol) else {
        return 1;
    };
    if is_agent(pid_tgid) {
        return 1;
    }
    // Header only, written in place: no payload and no shared scratch (this program can be
    // preempted).
    match DATA_EVENTS.reserve::<[u8; DATA_HEADER_LEN]>(0) {
        Some(mut entry) => {
            let ev = entry.as_mut_ptr().cast::<DataEvent>();
            // SAFETY: the reservation holds DATA_HEADER_LEN bytes, every field written here
            // lies in them (the payload is not touched).
            unsafe {
                core::ptr::write_bytes(ev.cast::<u8>(), 0, DATA_HEADER_LEN);
                (*ev).ts_exit_ns = bpf_ktime_get_ns();
                (*ev).skaddr = skaddr;
                (*ev).pid = (pid_tgid >> 32) as u32;
                (*ev).tid = pid_tgid as u32;
                (*ev).fd = -1;
                (*ev).syscall = SocketSyscall::Close as u8;
                (*ev).sock_type = sock.sock_type;
                (*ev).family = family;
            }
            entry.submit(BPF_RB_NO_WAKEUP);
        }
        None => bump(counter::DATA_RINGBUF_FULL),
    }
    if sock.sock_type == SOCK_STREAM {
        emit(|ev| {
            ev.kind = TcpEventKind::Release as u8;
            ev.skaddr = skaddr;
            ev.family = family;
        });
    }
    1
}
