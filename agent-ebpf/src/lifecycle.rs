//! Connection lifecycle: every TCP state change (`inet_sock_set_state`, with the socket's byte
//! counters, RTT and error on entry to TCP_CLOSE). Its CLOSE -> SYN_SENT transition runs in the
//! connecting task, whose pid, comm and cgroup the event carries: that is how user space knows
//! who connected. Who accepted a socket is known from its first data event or its release
//! (`sock_release` in payload.rs).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use kindling_agent_common::{IPPROTO_TCP, TcpEventKind, tcp_state};

use crate::{
    events::{done, emit},
    kernel::{read_kernel, sock_ends},
    maps::{KERNEL_OFFSETS, RTT},
};

/// `sk_flags` bit `SOCK_DONE` (`enum sock_flags`): set by `tcp_fin()` when the peer's FIN
/// arrives, and not by the application's own close().
const SOCK_DONE: u64 = 1 << 1;

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
    if protocol != u16::from(IPPROTO_TCP) {
        return Ok(());
    }
    let Some(ends) = sock_ends(skaddr)? else {
        return Ok(());
    };
    let (mut bytes_sent, mut bytes_received) = (0u64, 0u64);
    let mut close = CloseInfo::default();
    if new_state as u8 == tcp_state::CLOSE {
        close = close_info(skaddr)?;
        // A FIN that arrived advanced bytes_received by one sequence number. SOCK_DONE says
        // whether one did: RCV_SHUTDOWN does not, as close() sets it too, and a socket closed
        // first and orphaned ends here (FIN_WAIT2 handed to a timewait socket) as soon as
        // its FIN is acknowledged, before the peer's FIN.
        let sent: u64 = read_kernel(skaddr + off.tcp_bytes_sent)?;
        let retrans: u64 = read_kernel(skaddr + off.tcp_bytes_retrans)?;
        let received: u64 = read_kernel(skaddr + off.tcp_bytes_received)?;
        let flags: u64 = read_kernel(skaddr + off.sock_flags)?;
        bytes_sent = sent.saturating_sub(retrans);
        bytes_received = received.saturating_sub(u64::from(flags & SOCK_DONE != 0));
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
