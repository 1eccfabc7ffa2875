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

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use kindling_agent_common::{SOCK_STREAM, SocketSyscall, counter};

use crate::{
    events::{bump, done},
    maps::{SSL_CALLS, SSL_ON_CPU, SSL_SOCKS, SslCall, SslSock},
    payload::{Sock, capture, is_agent},
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
        sock: SslSock {
            sk: 0,
            fd: 0,
            family: 0,
            sport: 0,
            dport: 0,
            saddr: [0; 4],
            daddr: [0; 4],
        },
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
    capture(
        target,
        syscall,
        pid_tgid,
        [sock.fd, call.buf, 0, 0, 0],
        moved,
    )
}
