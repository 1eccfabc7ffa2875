//! Reads of kernel memory at the offsets the agent found in the kernel's BTF
//! ([`KERNEL_OFFSETS`]): [`read_kernel`], used by every family, direct loads through BTF-typed
//! pointers ([`load`] at an [`offset!`]), a syscall's number and arguments ([`syscall_regs`]),
//! and a socket's addresses ([`sock_ends`]), used by the lifecycle and network-health programs.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_task_pt_regs},
};
use kindling_agent_common::{AF_INET, AF_INET6, pt_regs};

use crate::maps::KERNEL_OFFSETS;

/// One field of [`KERNEL_OFFSETS`], read alone from the frozen global so that the verifier
/// knows its value: a direct load through a BTF-typed pointer ([`load`]) needs an offset the
/// verifier can check against the type.
macro_rules! offset {
    ($field:ident) => {{
        // SAFETY: `Global<T>` holds just its `T` (at offset 0); the global is always
        // initialised and never written by the programs.
        #[allow(unused_unsafe)]
        let value: u64 = unsafe {
            core::ptr::read_volatile(
                &raw const (*(&raw const $crate::maps::KERNEL_OFFSETS)
                    .cast::<kindling_agent_common::KernelOffsets>())
                .$field,
            )
        };
        value
    }};
}
pub(crate) use offset;

/// A direct load of the field `off` bytes into the kernel object at `base`, a BTF-typed pointer
/// (a tracepoint's typed argument, the current task, its registers): the verifier checks the
/// access against the type and turns it into a faulting-safe load, with no helper call.
///
/// # Safety
/// `base` must be a pointer the verifier knows the type of, and `off` a constant it can see
/// ([`offset!`]) at which the type has a field of `T`'s size.
#[inline(always)]
pub(crate) unsafe fn load<T: Copy>(base: *const u8, off: u64) -> T {
    // SAFETY: per the function's contract.
    unsafe { core::ptr::read_volatile(base.add(off as usize).cast::<T>()) }
}

#[inline(always)]
pub(crate) fn read_kernel<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel faults safely on a bad address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|e| e as i64)
}

/// The current syscall's number (`orig_ax`) and arguments 1-5 (di, si, dx, r10, r8), from the
/// registers the kernel saved at its entry: a syscall leaves them as they were, so a program
/// inside it or at its exit still finds them, and no enter program has to keep them in a map.
/// Direct loads through the task's BTF-typed `pt_regs` (offsets checked in BTF at start).
#[inline(always)]
pub(crate) fn syscall_regs() -> (u64, [u64; 5]) {
    // SAFETY: the current task and its saved registers are BTF-typed pointers from helpers
    // that cannot fail; every offset is a u64 field of `pt_regs`.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        (
            load(regs, pt_regs::ORIG_AX),
            [
                load(regs, pt_regs::DI),
                load(regs, pt_regs::SI),
                load(regs, pt_regs::DX),
                load(regs, pt_regs::R10),
                load(regs, pt_regs::R8),
            ],
        )
    }
}

/// The `struct file` behind `fd` of the current task (`task->files->fdt->fd[fd]`), 0 if none.
#[inline(always)]
pub(crate) fn fd_file(fd: u64) -> Result<u64, i64> {
    // SAFETY: a helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read_kernel(task + offset!(task_files))?;
    let fdt: u64 = read_kernel(files + offset!(files_fdt))?;
    let fd_array: u64 = read_kernel(fdt + offset!(fdtable_fd))?;
    // Bounded so that a bogus fd cannot point far outside the array.
    read_kernel(fd_array + (fd & 0xf_ffff) * 8)
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
