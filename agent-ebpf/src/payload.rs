//! Socket payload capture: read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg,
//! sendmmsg, recvmmsg and close, on TCP and UDP sockets only.
//!
//! Each program runs once per syscall, at its exit: the arguments are read from the
//! registers the kernel saved at entry (`kernel::syscall_args`), so nothing waits in a map
//! between enter and exit. The fd is resolved through the task's fd table on every call (no
//! cache that a dup2, close_range or exec could leave pointing at the wrong file). The event is
//! built in a per-CPU scratch value and only its header and the bytes captured go to the ring,
//! following the syscall's buffers (iovecs) up to the payload limit and never past a buffer's
//! length.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_probe_read_user as probe_read_user_raw,
    },
    macros::tracepoint,
    programs::TracePointContext,
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
    kernel::{fd_file, read_kernel, syscall_args},
    maps::{
        AGENT_TGID, DATA_EVENTS, DATA_SCRATCH, DataScratch, KERNEL_OFFSETS, NO_PAYLOAD_CGROUPS,
        NO_PAYLOAD_CHECK, PAYLOAD_BYTES,
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

/// A TCP or UDP socket an fd refers to, with the head of its `sock_common`.
#[derive(Clone, Copy)]
struct Sock {
    sk: u64,
    sock_type: u8,
    head: SockHead,
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
    let ip = head.family == AF_INET || head.family == AF_INET6;
    let tcp = sock_type == u16::from(SOCK_STREAM) && protocol == u16::from(IPPROTO_TCP);
    let udp = sock_type == u16::from(SOCK_DGRAM) && protocol == u16::from(IPPROTO_UDP);
    if !ip || !(tcp || udp) {
        return Ok(None);
    }
    Ok(Some(Sock {
        sk,
        sock_type: sock_type as u8,
        head,
    }))
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
    let head = sock.head;
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
    ev.family = head.family;
    ev._pad = [0; 6];
    ev.captured = 0;
    ev.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    ev.dport = u16::from_be(head.dport);
    ev.sport = head.num;
    if head.family == AF_INET6 {
        ev.saddr = read_kernel(sock.sk + off.skc_v6_rcv_saddr)?;
        ev.daddr = read_kernel(sock.sk + off.skc_v6_daddr)?;
    } else {
        ev.saddr = [0; 16];
        ev.daddr = [0; 16];
        ev.saddr[..4].copy_from_slice(&head.rcv_saddr);
        ev.daddr[..4].copy_from_slice(&head.daddr);
    }
    ev.stream_end = 0;
    if sock.sock_type == SOCK_STREAM && syscall != SocketSyscall::Close {
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

/// Sends the scratch event (header and captured payload) to the data ring.
#[inline(always)]
fn output(scratch: *mut DataScratch) {
    // SAFETY: the scratch value is this CPU's own; `captured` <= PAYLOAD_MAX.
    let bytes = unsafe {
        let captured = ((*scratch).ev.captured as usize) & (2 * PAYLOAD_MAX - 1);
        let n = if captured > PAYLOAD_MAX {
            PAYLOAD_MAX
        } else {
            captured
        };
        core::slice::from_raw_parts(scratch.cast::<u8>(), DATA_HEADER_LEN + n)
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

/// The exit of a socket syscall that moved `ret` bytes.
#[inline(always)]
fn io_exit(ctx: &TracePointContext, syscall: SocketSyscall) -> Result<(), i64> {
    let ret = arg0(ctx);
    let pid_tgid = bpf_get_current_pid_tgid();
    if ret <= 0 || is_agent(pid_tgid) {
        return Ok(());
    }
    let args = syscall_args()?;
    let fd = args[0];
    let Some(sock) = sock_of_fd(fd)? else {
        return Ok(());
    };
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's scratch value, exclusively ours while the program runs.
    let ev = unsafe { &mut (*scratch).ev };
    fill_header(ev, sock, fd, syscall, pid_tgid)?;
    let ret = ret as u64;
    match syscall {
        SocketSyscall::Read
        | SocketSyscall::Write
        | SocketSyscall::Sendto
        | SocketSyscall::Recvfrom => {
            ev.len = ret;
            if matches!(syscall, SocketSyscall::Sendto | SocketSyscall::Recvfrom) {
                fill_peer(ev, args[4])?;
            }
            let n = payload_limit(ev, ret);
            if copy_user(scratch, 0, args[1], n) {
                ev.captured = n as u16;
            }
            output(scratch);
        }
        SocketSyscall::Readv | SocketSyscall::Writev => {
            ev.len = ret;
            ev.captured = copy_iovecs(scratch, args[1], args[2], payload_limit(ev, ret)) as u16;
            output(scratch);
        }
        SocketSyscall::Sendmsg | SocketSyscall::Recvmsg => {
            // struct user_msghdr: msg_name at 0, msg_iov at 16, msg_iovlen at 24.
            let name: u64 = read_user(args[1])?;
            let iov: u64 = read_user(args[1] + 16)?;
            let iovlen: u64 = read_user(args[1] + 24)?;
            ev.len = ret;
            fill_peer(ev, name)?;
            ev.captured = copy_iovecs(scratch, iov, iovlen, payload_limit(ev, ret)) as u16;
            output(scratch);
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
                fill_peer(ev, name)?;
                ev.captured =
                    copy_iovecs(scratch, iov, iovlen, payload_limit(ev, u64::from(len))) as u16;
                output(scratch);
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
    output(scratch);
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

io_program!(read_exit, "sys_exit_read", SocketSyscall::Read);
io_program!(write_exit, "sys_exit_write", SocketSyscall::Write);
io_program!(readv_exit, "sys_exit_readv", SocketSyscall::Readv);
io_program!(writev_exit, "sys_exit_writev", SocketSyscall::Writev);
io_program!(sendto_exit, "sys_exit_sendto", SocketSyscall::Sendto);
io_program!(recvfrom_exit, "sys_exit_recvfrom", SocketSyscall::Recvfrom);
io_program!(sendmsg_exit, "sys_exit_sendmsg", SocketSyscall::Sendmsg);
io_program!(recvmsg_exit, "sys_exit_recvmsg", SocketSyscall::Recvmsg);
io_program!(sendmmsg_exit, "sys_exit_sendmmsg", SocketSyscall::Sendmmsg);
io_program!(recvmmsg_exit, "sys_exit_recvmmsg", SocketSyscall::Recvmmsg);
