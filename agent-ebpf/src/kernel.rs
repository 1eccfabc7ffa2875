//! Reads of kernel memory at the offsets the agent found in the kernel's BTF
//! ([`KERNEL_OFFSETS`]): [`read_kernel`], used by every family, and a socket's addresses
//! ([`sock_ends`]), used by the lifecycle and network-health programs.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use kindling_agent_common::{AF_INET, AF_INET6};

use crate::maps::KERNEL_OFFSETS;

#[inline(always)]
pub(crate) fn read_kernel<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel faults safely on a bad address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|e| e as i64)
}

/// A socket's addresses as a tracepoint reports them, local end first.
pub(crate) struct Ends {
    pub(crate) family: u16,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) saddr: [u8; 16],
    pub(crate) daddr: [u8; 16],
}

/// A socket's addresses from its `sock_common`, ports in host order (what the `sock` and `tcp`
/// tracepoints report); None for a family other than IPv4 and IPv6.
#[inline(always)]
pub(crate) fn sock_ends(sk: u64) -> Result<Option<Ends>, i64> {
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
