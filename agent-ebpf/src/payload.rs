//! Socket payload capture: read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg,
//! sendmmsg, recvmmsg and close, on TCP and UDP sockets only. Each fd is classified once per
//! process (TCP or UDP socket, or not) and cached in `SOCK_FDS`, so other fds cost one map
//! lookup; the syscall's arguments wait in `PENDING_IO` from its enter to its exit.

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_probe_read_user as probe_read_user_raw,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use kindling_agent_common::{
    AF_INET, AF_INET6, COMM_LEN, DataEvent, IPPROTO_TCP, IPPROTO_UDP, NO_PAYLOAD_CGROUP_LEVELS,
    PAYLOAD_MAX, SOCK_DGRAM, SOCK_STREAM, SocketSyscall, counter, tp::SYSCALL_ARG0,
};

use crate::{
    events::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, DATA_WAKEUP_BYTES, bump, done,
    },
    kernel::read_kernel,
    maps::{
        AGENT_TGID, DATA_EVENTS, KERNEL_OFFSETS, NO_PAYLOAD_CGROUPS, NO_PAYLOAD_CHECK,
        PAYLOAD_BYTES, PENDING_IO, PendingIo, SOCK_FDS, SockRef,
    },
};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
/// sizeof(struct mmsghdr): a 56-byte user_msghdr, the u32 msg_len, padding.
const MMSGHDR_SIZE: u64 = 64;
/// Messages of one sendmmsg/recvmmsg reported (glibc's resolver sends A and AAAA together).
const MMSG_REPORTED: u64 = 2;

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
    let tcp = sock_type == u16::from(SOCK_STREAM) && protocol == u16::from(IPPROTO_TCP);
    let udp = sock_type == u16::from(SOCK_DGRAM) && protocol == u16::from(IPPROTO_UDP);
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
