//! Network health: retransmissions, resets, RTT samples and packet drops. These fire only when
//! the event happens (tcp_probe: per received segment of an established socket, one map
//! update, an event at most once per RTT_SAMPLE_NS per socket). All but `tcp_send_reset` are
//! raw tracepoints, for the reason given at `inet_sock_set_state` (`lifecycle`).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use kindling_agent_common::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, TcpEventKind};

use crate::{
    events::{done, emit},
    kernel::{Ends, read_kernel, sock_ends},
    maps::{IGNORED_DROP_REASON, KERNEL_OFFSETS, RTT, RTT_SAMPLE_NS, RttState},
};

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
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
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
