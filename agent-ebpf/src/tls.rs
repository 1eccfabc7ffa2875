//! TLS plaintext from OpenSSL (`libssl.so.3` and compatible): uprobes on `SSL_write`,
//! `SSL_read`, `SSL_write_ex` and `SSL_read_ex`, and one uretprobe on all four; or, where user
//! space finds them (`agent/src/capture/tls.rs`), on the internal write and read functions each
//! pair of them calls, with the `_ex` programs (same arguments).
//!
//! An entry probe keeps the call's arguments per thread (`SSL_CALLS`) and marks its CPU as
//! running the thread's call (`SSL_ON_CPU`). While the call runs, its own syscalls on the TCP
//! socket under the connection (the ciphertext) fire the socket programs, which only note the
//! socket in the call (`payload::inside_ssl_call`) and capture nothing; any other socket event sees at
//! once, from the per-CPU mark, that it is in no call, without a hash lookup.
//! At the return, the bytes the call moved (its return value, or `*written`/`*readbytes` for the
//! `_ex` forms) are captured from its buffer as a data event of that socket, with the syscall
//! `SslWrite` or `SslRead`, so user space parses plaintext on the same session, addresses and
//! task as a plaintext connection's. A call that moved no ciphertext itself (a read served from
//! a record already decrypted, a write buffered) takes the socket last seen under the same
//! `SSL *` in the process (`SSL_SOCKS`); without one it is counted (`TLS_UNTRACKED`).
//! Ciphertext outside these calls (the handshake, alerts) is captured as any socket's bytes, and
//! user space leaves it unparsed once the session has carried plaintext.
//!
//! Go's `crypto/tls.(*Conn).Write` and `Read` (register ABI, Go >= 1.17): an entry uprobe past
//! the stack check (once per call) and, since a uretprobe rewrites the return address on a stack
//! that Go may move, a uprobe on each of `Read`'s `ret` instructions (found by user space). The entry reads the connection's fd out of the `*Conn` (`conn net.Conn` ->
//! `*net.TCPConn` -> `*netFD` -> `pfd.Sysfd`, a layout Go has kept since 1.9) and its TCP socket
//! from the task's fd table. A write's plaintext is taken there, all of `b` (a Write writes all
//! of it or fails; at its return the response may already have been read by another goroutine,
//! whose event would come first); a read is kept per goroutine (`GO_TLS_CALLS`, keyed by the
//! `g` in r14: a goroutine can park in a read and resume on another thread) and its plaintext
//! taken at a return. The socket programs are not involved: a Go connection's ciphertext is
//! captured as any socket's bytes and left unparsed by user space once its plaintext arrived
//! (nothing on the socket path costs more for it). A `net.Conn` that is not a `*net.TCPConn`
//! yields an fd that is not a TCP socket, or another one's: counted in `TLS_UNTRACKED` in the
//! first case.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use kindling_agent_common::{IPPROTO_TCP, SOCK_STREAM, SocketSyscall, counter};

use crate::{
    events::{bump, done},
    kernel::{fd_file, offset, read_kernel, sock_ends},
    maps::{GO_TLS_CALLS, GoTlsCall, SSL_CALLS, SSL_ON_CPU, SSL_SOCKS, SslCall, SslSock},
    payload::{Sock, capture, is_agent, read_user},
};

/// Entry of an OpenSSL read or write: `(SSL *ssl, void *buf, int num[, size_t *moved])`.
#[inline(always)]
fn enter(ctx: &ProbeContext, send: bool, ex: bool) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_agent(pid_tgid) {
        return 0;
    }
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    let len_ptr = if ex {
        ctx.arg::<u64>(3).unwrap_or(0)
    } else {
        0
    };
    let call = SslCall {
        ssl,
        buf,
        len_ptr,
        sock: SslSock::default(),
        send,
    };
    if SSL_CALLS.insert(&pid_tgid, &call, 0).is_err() {
        bump(counter::TLS_UNTRACKED);
        return 0;
    }
    if let Some(on_cpu) = SSL_ON_CPU.get_ptr_mut(0) {
        // SAFETY: this CPU's value; programs do not nest on a CPU.
        unsafe { *on_cpu = pid_tgid };
    }
    0
}

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, true, false)
}

#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, false, false)
}

#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, true, true)
}

#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, false, true)
}

/// The return of a probed function: the plaintext it moved, as a data event of its socket.
#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    done(ssl_return_inner(&ctx))
}

#[inline(always)]
fn ssl_return_inner(ctx: &RetProbeContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(call) = SSL_CALLS.get_ptr(&pid_tgid) else {
        return Ok(());
    };
    // SAFETY: this thread's entry, copied out before it is removed.
    let call = unsafe { *call };
    let _ = SSL_CALLS.remove(&pid_tgid);
    if let Some(on_cpu) = SSL_ON_CPU.get_ptr_mut(0) {
        // SAFETY: this CPU's value; programs do not nest on a CPU.
        unsafe {
            if *on_cpu == pid_tgid {
                *on_cpu = 0;
            }
        }
    }
    // Every probed function returns an int (the upper half of the register is not part of
    // it), <= 0 when it moved nothing.
    let ret = ctx.ret::<i64>() as i32;
    if ret <= 0 {
        return Ok(());
    }
    let moved = if call.len_ptr != 0 {
        // SSL_read_ex/SSL_write_ex, and the internal functions both forms call: the count
        // is in *moved.
        // SAFETY: bpf_probe_read_user faults safely on a bad address.
        unsafe { aya_ebpf::helpers::bpf_probe_read_user(call.len_ptr as *const u64) }
            .map_err(|e| e as i64)?
    } else {
        // SSL_read/SSL_write: the count.
        ret as u64
    };
    if moved == 0 {
        return Ok(());
    }
    let key = [pid_tgid >> 32, call.ssl];
    let sock = if call.sock.sk != 0 {
        // An LRU update costs more than a lookup: written only when the connection's socket
        // is new (its first call, or a new connection under a reused `SSL *`).
        // SAFETY: read at once.
        let known = SSL_SOCKS.get_ptr(&key).map(|s| unsafe { (*s).sk });
        if known != Some(call.sock.sk) {
            let _ = SSL_SOCKS.insert(&key, &call.sock, 0);
        }
        call.sock
    } else {
        match SSL_SOCKS.get_ptr(&key) {
            // SAFETY: copied out at once; an LRU value may be reused after this.
            Some(known) => unsafe { *known },
            None => {
                bump(counter::TLS_UNTRACKED);
                return Ok(());
            }
        }
    };
    let syscall = if call.send {
        SocketSyscall::SslWrite
    } else {
        SocketSyscall::SslRead
    };
    capture_plaintext(sock, syscall, pid_tgid, call.buf, moved)
}

/// Captures `moved` bytes of plaintext at `buf`, a TLS call's, as a data event of `sock`.
#[inline(always)]
fn capture_plaintext(
    sock: SslSock,
    syscall: SocketSyscall,
    pid_tgid: u64,
    buf: u64,
    moved: u64,
) -> Result<(), i64> {
    let target = Sock {
        sk: sock.sk,
        sock_type: SOCK_STREAM,
        family: sock.family,
        dport: sock.dport,
        sport: sock.sport,
        daddr: sock.daddr,
        saddr: sock.saddr,
        // Plaintext has no place in the TCP byte stream.
        stream_end: Some(0),
    };
    capture(target, syscall, pid_tgid, [sock.fd, buf, 0, 0, 0], moved)
}

/// The registers of a probe: Go's register ABI passes `(c *Conn, b []byte)` in rax (c), rbx
/// (b's pointer) and rcx (b's length), returns `(n int, err error)` in rax (n), and keeps the
/// current goroutine in r14.
#[inline(always)]
fn regs(ctx: &ProbeContext) -> (u64, u64, u64, u64) {
    let regs = ctx.as_ptr().cast::<aya_ebpf::bindings::pt_regs>();
    // SAFETY: the probe's context is the task's saved user registers.
    unsafe { ((*regs).rax, (*regs).rbx, (*regs).rcx, (*regs).r14) }
}

/// Entry of `crypto/tls.(*Conn).Write` or `Read` (past its stack check, so once per call).
#[inline(always)]
fn go_enter(ctx: &ProbeContext, send: bool) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_agent(pid_tgid) {
        return Ok(());
    }
    let (conn, buf, len, g) = regs(ctx);
    // c.conn's data word (a *net.TCPConn, whose first word is its *netFD), then pfd.Sysfd
    // (after the 16-byte fdMutex).
    let tcp_conn: u64 = read_user(conn + 8)?;
    let net_fd: u64 = read_user(tcp_conn)?;
    let fd: u64 = read_user(net_fd + 16)?;
    let Some(sock) = tcp_sock_of_fd(fd)? else {
        bump(counter::TLS_UNTRACKED);
        return Ok(());
    };
    if send {
        if len == 0 {
            return Ok(());
        }
        return capture_plaintext(sock, SocketSyscall::GoTlsWrite, pid_tgid, buf, len);
    }
    let call = GoTlsCall { buf, sock };
    if GO_TLS_CALLS.insert(&[pid_tgid >> 32, g], &call, 0).is_err() {
        bump(counter::TLS_UNTRACKED);
    }
    Ok(())
}

/// The TCP socket behind `fd` of the current task, as a TLS call keeps it; None when `fd` is
/// not an IPv4 or IPv6 TCP socket.
#[inline(always)]
fn tcp_sock_of_fd(fd: u64) -> Result<Option<SslSock>, i64> {
    const S_IFMT: u16 = 0o170000;
    const S_IFSOCK: u16 = 0o140000;
    let file = fd_file(fd)?;
    if file == 0 {
        return Ok(None);
    }
    let inode: u64 = read_kernel(file + offset!(file_inode))?;
    let mode: u16 = read_kernel(inode + offset!(inode_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return Ok(None);
    }
    let socket: u64 = read_kernel(file + offset!(file_private_data))?;
    let sk: u64 = read_kernel(socket + offset!(socket_sk))?;
    let sock_type: u16 = read_kernel(sk + offset!(sock_type))?;
    let protocol: u16 = read_kernel(sk + offset!(sock_protocol))?;
    if sock_type != u16::from(SOCK_STREAM) || protocol != u16::from(IPPROTO_TCP) {
        return Ok(None);
    }
    let Some(ends) = sock_ends(sk)? else {
        return Ok(None);
    };
    let mut sock = SslSock {
        sk,
        fd,
        family: ends.family,
        sport: ends.sport,
        dport: ends.dport,
        ..SslSock::default()
    };
    sock.saddr.copy_from_slice(&ends.saddr[..4]);
    sock.daddr.copy_from_slice(&ends.daddr[..4]);
    Ok(Some(sock))
}

#[uprobe]
pub fn go_tls_write(ctx: ProbeContext) -> u32 {
    done(go_enter(&ctx, true))
}

#[uprobe]
pub fn go_tls_read(ctx: ProbeContext) -> u32 {
    done(go_enter(&ctx, false))
}

/// A `ret` instruction of `crypto/tls.(*Conn).Read`: the plaintext it returned (`n` bytes, n in
/// rax) as a data event of its connection's socket.
#[uprobe]
pub fn go_tls_return(ctx: ProbeContext) -> u32 {
    done(go_return(&ctx))
}

#[inline(always)]
fn go_return(ctx: &ProbeContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (moved, _, _, g) = regs(ctx);
    let key = [pid_tgid >> 32, g];
    let Some(call) = GO_TLS_CALLS.get_ptr(&key) else {
        // A read that was not followed.
        return Ok(());
    };
    // SAFETY: this goroutine's entry, copied out before it is removed.
    let call = unsafe { *call };
    let _ = GO_TLS_CALLS.remove(&key);
    // n is an int, < 0 never; 0 when the call moved nothing.
    if moved as i64 <= 0 {
        return Ok(());
    }
    capture_plaintext(
        call.sock,
        SocketSyscall::GoTlsRead,
        pid_tgid,
        call.buf,
        moved,
    )
}
