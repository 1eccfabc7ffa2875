//! Handing events to user space: [`emit`] fills and submits a TCP event, [`bump`] counts what
//! was lost, and [`done`] ends every program (a failed read counts, the program returns 0).
//! A submit wakes the agent only once a ring holds an eighth of its size; below that the agent
//! drains the rings on a timer.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
};
use kindling_agent_common::{COMM_LEN, DATA_RING_BYTES, EVENTS_RING_BYTES, TcpEvent, counter};

use crate::maps::{COUNTERS, TCP_EVENTS};

/// Data waiting in `DATA_EVENTS` that makes a submit wake the agent (an eighth of the ring);
/// below it the agent finds the events on its drain timer (`DATA_POLL_MS` in the pipeline).
pub(crate) const DATA_WAKEUP_BYTES: u64 = DATA_RING_BYTES as u64 / 8;
/// The same for TCP events.
const EVENTS_WAKEUP_BYTES: u64 = EVENTS_RING_BYTES as u64 / 8;
pub(crate) const BPF_RB_NO_WAKEUP: u64 = 1;
pub(crate) const BPF_RB_FORCE_WAKEUP: u64 = 2;
pub(crate) const BPF_RB_AVAIL_DATA: u64 = 0;

#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Fills the fields every event has and submits it; counts a full ring buffer.
#[inline(always)]
pub(crate) fn emit(fill: impl FnOnce(&mut TcpEvent)) {
    let Some(mut entry) = TCP_EVENTS.reserve::<TcpEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let ev = TcpEvent {
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        // SAFETY: plain helper call.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ..TcpEvent::zeroed()
    };
    let ev = entry.write(ev);
    fill(ev);
    // As for data events, the agent is woken only when the ring fills up; else it drains on
    // its timer. A wakeup is an inter-processor interrupt to this CPU: taken while this program
    // runs in a task, it runs pending softirqs on top of it, whose state changes then find the
    // program busy and are skipped (measured: 8% of a connection storm's state changes).
    let flags = if TCP_EVENTS.query(BPF_RB_AVAIL_DATA) >= EVENTS_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags);
}

pub(crate) fn done(result: Result<(), i64>) -> u32 {
    if result.is_err() {
        bump(counter::READ_FAILED);
    }
    0
}
