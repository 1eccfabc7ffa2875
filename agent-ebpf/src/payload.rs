//! Socket payload capture: read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg,
//! sendmmsg, recvmmsg and close, on TCP and UDP sockets only.
//!
//! The bytes of a send or receive are taken at the socket layer's BTF-typed tracepoints
//! `sock_send_length` / `sock_recv_length` ([`sock_io`]): they fire only for sockets, with the
//! `struct sock` as an argument, so no file or pipe I/O runs a program and no fd is resolved.
//! The syscall and its arguments come from the registers the kernel saved at entry. sendmmsg
//! and recvmmsg (one tracepoint per message) and close are seen at the syscall instead, their
//! fd resolved through the task's fd table on every call (no cache that a dup2, close_range or
//! exec could leave pointing at the wrong file). The event is built in a per-CPU scratch value
//! and only its header and the bytes captured go to the ring, following the syscall's buffers
//! (iovecs) up to the payload limit and never past a buffer's length.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_probe_read_user as probe_read_user_raw,
            bpf_skc_to_tcp_sock,
        },
    },
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use kindling_agent_common::{
    AF_INET, AF_INET6, COMM_LEN, DATA_HEADER_LEN, DataEvent, IPPROTO_TCP, IPPROTO_UDP,
    NO_PAYLOAD_CGROUP_LEVELS, PAYLOAD_MAX, SOCK_DGRAM, SOCK_STREAM, SocketSyscall, counter,
    tp::SYSCALL_ARG0,
};

use crate::{
    events::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, DATA_WAKEUP_BYTES, bump, done,
    },
    kernel::{fd_file, load, offset, read_kernel, syscall_regs},
    maps::{
        AGENT_TGID, DATA_EVENTS, DATA_SCRATCH, DataScratch, KERNEL_OFFSETS, NO_PAYLOAD_CGROUPS,
        NO_PAYLOAD_CHECK, PAYLOAD_BYTES, PENDING_RECV,
    },
};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
/// sizeof(struct mmsghdr): a 56-byte user_msghdr, the u32 msg_len, padding.
const MMSGHDR_SIZE: u64 = 64;
/// Messages of one sendmmsg/recvmmsg reported (glibc's resolver sends A and AAAA together).
const MMSG_REPORTED: u64 = 2;
/// Buffers of one iovec array followed (nginx answers with two: header and body).
const MAX_IOVECS: u64 = 8;

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

/// A syscall tracepoint's first field after the common header (`ret` at exit, the first
/// argument at entry), loaded from the context directly (no helper call).
#[inline(always)]
fn arg0(ctx: &TracePointContext) -> i64 {
    // SAFETY: the tracepoint's record is at least SYSCALL_ARG0 + 8 bytes (checked against its
    // format at start) and the verifier allows aligned loads from it.
    unsafe { *(ctx.as_ptr().cast::<u8>().add(SYSCALL_ARG0).cast::<i64>()) }
}

/// Whether `pid_tgid` is the agent's own.
#[inline(always)]
fn is_agent(pid_tgid: u64) -> bool {
    (pid_tgid >> 32) as u32 == AGENT_TGID.load()
}

#[inline(always)]
fn read_user<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_user faults safely on a bad address.
    unsafe { bpf_probe_read_user(addr as *const T) }.map_err(|e| e as i64)
}

/// A TCP or UDP socket, with its ends as the event reports them.
#[derive(Clone, Copy)]
struct Sock {
    sk: u64,
    sock_type: u8,
    family: u16,
    /// Remote port, host order.
    dport: u16,
    /// Local port, host order.
    sport: u16,
    /// IPv4 addresses (an IPv6 socket's are read in [`fill_header`]).
    daddr: [u8; 4],
    saddr: [u8; 4],
    /// A TCP socket's stream position for the event (`write_seq` for a send, `copied_seq`
    /// for a receive) when a direct load could read it ([`sock_io`]); otherwise
    /// [`fill_header`] reads it with a helper.
    stream_end: Option<u32>,
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

/// The first fields of `struct sock_common`, read in one copy: daddr, rcv_saddr, hash,
/// dport (network order), num (the local port) and family. The agent checks this layout in
/// the kernel's BTF before loading.
#[derive(Clone, Copy)]
#[repr(C)]
struct SockHead {
    daddr: [u8; 4],
    rcv_saddr: [u8; 4],
    _hash: u32,
    dport: u16,
    num: u16,
    family: u16,
    _state: u16,
}

/// What `fd` of the current task is now: task->files->fdt->fd[fd], a socket file's
/// `struct sock`; None for anything that is not an IPv4/IPv6 TCP or UDP socket.
#[inline(always)]
fn sock_of_fd(fd: u64) -> Result<Option<Sock>, i64> {
    let off = KERNEL_OFFSETS.load();
    let file = fd_file(fd)?;
    if file == 0 {
        return Ok(None);
    }
    let inode: u64 = read_kernel(file + off.file_inode)?;
    let mode: u16 = read_kernel(inode + off.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return Ok(None);
    }
    let socket: u64 = read_kernel(file + off.file_private_data)?;
    let sk: u64 = read_kernel(socket + off.socket_sk)?;
    // sk_protocol and sk_type are adjacent u16s, in this order (checked in BTF): one copy.
    let [protocol, sock_type]: [u16; 2] = read_kernel(sk + off.sock_protocol)?;
    let head: SockHead = read_kernel(sk + off.skc_daddr)?;
    let Some(mut sock) = Sock::of(sk, head.family, sock_type, protocol) else {
        return Ok(None);
    };
    sock.dport = u16::from_be(head.dport);
    sock.sport = head.num;
    sock.daddr = head.daddr;
    sock.saddr = head.rcv_saddr;
    Ok(Some(sock))
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
    ev._pad = [0; 6];
    ev.captured = 0;
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
    // PAYLOAD_MAX spare bytes behind the payload; the helper faults safely on `src`.
    unsafe {
        let dst = (&raw mut (*scratch).ev.payload)
            .cast::<u8>()
            .add(off as usize)
            .cast::<core::ffi::c_void>();
        probe_read_user_raw(dst, n as u32, src as *const core::ffi::c_void) == 0
    }
}

/// Copies up to `limit` bytes from the buffers of the iovec array `iov` (`iovcnt` of them),
/// each only up to its length; returns the bytes copied.
#[inline(always)]
fn copy_iovecs(scratch: *mut DataScratch, iov: u64, iovcnt: u64, limit: u64) -> u64 {
    let mut off = 0u64;
    let mut i = 0u64;
    while i < MAX_IOVECS {
        if i >= iovcnt || off >= limit {
            break;
        }
        // struct iovec { void *base; size_t len; }
        let Ok(v) = read_user::<[u64; 2]>(iov + i * 16) else {
            break;
        };
        let mut n = v[1];
        if n > limit - off {
            n = limit - off;
        }
        if !copy_user(scratch, off, v[0], n) {
            break;
        }
        off += n;
        i += 1;
    }
    off
}

/// Sends `ev` (its header and captured payload) to the data ring.
#[inline(always)]
fn output(ev: *const DataEvent) {
    // SAFETY: `ev` is a whole DataEvent (a scratch or map value); the length is clamped to its
    // header plus at most PAYLOAD_MAX payload bytes.
    let bytes = unsafe {
        let captured = ((*ev).captured as usize) & (2 * PAYLOAD_MAX - 1);
        let n = if captured > PAYLOAD_MAX {
            PAYLOAD_MAX
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

/// Sends a received message, or, when it came to an unconnected UDP socket and the caller
/// asked for the sender's address (`name`), keeps it in `PENDING_RECV` for the syscall's exit
/// ([`pending_exit`]): the kernel writes that address only after the tracepoint.
#[inline(always)]
fn send_received(ev: *const DataEvent, pid_tgid: u64, name: u64) {
    // SAFETY: `ev` is this CPU's scratch event.
    let unconnected_udp = unsafe { (*ev).sock_type == SOCK_DGRAM && (*ev).dport == 0 };
    if !unconnected_udp || name == 0 {
        output(ev);
        return;
    }
    // SAFETY: as above; the map copies the value.
    if PENDING_RECV.insert(&pid_tgid, unsafe { &*ev }, 0).is_err() {
        // Full: the message still counts, without its sender.
        output(ev);
    }
}

/// The exit of recvfrom/recvmsg: a pending UDP receive of this thread ([`send_received`])
/// gets its sender's address, now in the caller's buffer, and goes to the ring.
#[inline(always)]
fn pending_exit(ctx: &TracePointContext, syscall: SocketSyscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(ev) = PENDING_RECV.get_ptr_mut(&pid_tgid) else {
        return Ok(());
    };
    // SAFETY: the map value of this thread, which only this thread's programs touch.
    let pending = unsafe { &mut *ev };
    if arg0(ctx) > 0 && pending.syscall == syscall as u8 {
        let (_, args) = syscall_regs();
        let name = if syscall == SocketSyscall::Recvfrom {
            args[4]
        } else {
            // struct user_msghdr: msg_name at 0.
            read_user(args[1]).unwrap_or(0)
        };
        // An address that cannot be read leaves the event without one; it is still sent.
        let _ = fill_peer(pending, name);
        output(ev);
    }
    let _ = PENDING_RECV.remove(&pid_tgid);
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_recvfrom")]
pub fn recvfrom_exit(ctx: TracePointContext) -> u32 {
    done(pending_exit(&ctx, SocketSyscall::Recvfrom))
}

#[tracepoint(category = "syscalls", name = "sys_exit_recvmsg")]
pub fn recvmsg_exit(ctx: TracePointContext) -> u32 {
    done(pending_exit(&ctx, SocketSyscall::Recvmsg))
}

/// The exit of a socket syscall that moved `ret` bytes (the *mmsg pair; the others are
/// reported by the socket tracepoints, [`sock_io`]).
#[inline(always)]
fn io_exit(ctx: &TracePointContext, syscall: SocketSyscall) -> Result<(), i64> {
    let ret = arg0(ctx);
    let pid_tgid = bpf_get_current_pid_tgid();
    if ret <= 0 || is_agent(pid_tgid) {
        return Ok(());
    }
    let (_, args) = syscall_regs();
    let Some(sock) = sock_of_fd(args[0])? else {
        return Ok(());
    };
    capture(sock, syscall, pid_tgid, args, ret as u64)
}

/// `recvmsg(..., MSG_PEEK)`: the bytes stay queued and are reported when they are read.
const MSG_PEEK: i32 = 2;
/// `task_struct.flags` of a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;

/// The socket syscall a task is in, by its x86_64 number: those whose bytes the socket
/// tracepoints report (*mmsg have their own exit programs; sendfile, splice and io_uring are
/// not captured).
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
    if sk.is_null() || ret <= 0 || (!send && msg_flags & MSG_PEEK != 0) {
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

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> u32 {
    done(sock_io(&ctx, true))
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> u32 {
    done(sock_io(&ctx, false))
}

/// The data event(s) of a socket syscall with `args` that moved `ret` bytes (messages, for
/// *mmsg) on `sock`.
#[inline(always)]
fn capture(
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
    let udp = sock.sock_type == SOCK_DGRAM;
    match syscall {
        SocketSyscall::Read
        | SocketSyscall::Write
        | SocketSyscall::Sendto
        | SocketSyscall::Recvfrom => {
            ev.len = ret;
            let n = payload_limit(ev, ret);
            if copy_user(scratch, 0, args[1], n) {
                ev.captured = n as u16;
            }
            if syscall == SocketSyscall::Sendto && udp {
                fill_peer(ev, args[4])?;
            }
            if syscall == SocketSyscall::Recvfrom {
                send_received(ev, pid_tgid, args[4]);
            } else {
                output(ev);
            }
        }
        SocketSyscall::Readv | SocketSyscall::Writev => {
            ev.len = ret;
            ev.captured = copy_iovecs(scratch, args[1], args[2], payload_limit(ev, ret)) as u16;
            output(ev);
        }
        SocketSyscall::Sendmsg | SocketSyscall::Recvmsg => {
            // struct user_msghdr: msg_name at 0, msg_iov at 16, msg_iovlen at 24.
            let name: u64 = read_user(args[1])?;
            let iov: u64 = read_user(args[1] + 16)?;
            let iovlen: u64 = read_user(args[1] + 24)?;
            ev.len = ret;
            ev.captured = copy_iovecs(scratch, iov, iovlen, payload_limit(ev, ret)) as u16;
            if syscall == SocketSyscall::Recvmsg {
                send_received(ev, pid_tgid, name);
            } else {
                if udp {
                    fill_peer(ev, name)?;
                }
                output(ev);
            }
        }
        SocketSyscall::Sendmmsg | SocketSyscall::Recvmmsg => {
            // ret is the number of messages; each mmsghdr ends with its byte count at 56.
            let mut i = 0u64;
            while i < MMSG_REPORTED {
                if i >= ret {
                    break;
                }
                let hdr = args[1] + i * MMSGHDR_SIZE;
                let name: u64 = read_user(hdr)?;
                let iov: u64 = read_user(hdr + 16)?;
                let iovlen: u64 = read_user(hdr + 24)?;
                let len: u32 = read_user(hdr + 56)?;
                // SAFETY: as above.
                let ev = unsafe { &mut (*scratch).ev };
                ev.len = u64::from(len);
                // At the exit a received message's sender is already in the caller's buffer.
                if udp {
                    fill_peer(ev, name)?;
                }
                ev.captured =
                    copy_iovecs(scratch, iov, iovlen, payload_limit(ev, u64::from(len))) as u16;
                output(ev);
                i += 1;
            }
        }
        SocketSyscall::Close => {}
    }
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn close_enter(ctx: TracePointContext) -> u32 {
    done(try_close_enter(&ctx))
}

/// Tells user space a socket's fd is going away (UDP flows end here).
fn try_close_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let fd = arg0(ctx) as u64;
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_agent(pid_tgid) {
        return Ok(());
    }
    let Some(sock) = sock_of_fd(fd)? else {
        return Ok(());
    };
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's scratch value, exclusively ours while the program runs.
    let ev = unsafe { &mut (*scratch).ev };
    fill_header(ev, sock, fd, SocketSyscall::Close, pid_tgid)?;
    ev.len = 0;
    output(ev);
    Ok(())
}

/// The exit program of one socket syscall.
macro_rules! io_program {
    ($exit:ident, $tp_exit:literal, $kind:expr) => {
        #[tracepoint(category = "syscalls", name = $tp_exit)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            done(io_exit(&ctx, $kind))
        }
    };
}

io_program!(sendmmsg_exit, "sys_exit_sendmmsg", SocketSyscall::Sendmmsg);
io_program!(recvmmsg_exit, "sys_exit_recvmmsg", SocketSyscall::Recvmmsg);
