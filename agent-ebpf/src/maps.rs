//! Everything user space finds by name: the maps and ring buffers (`#[map]`, named after their
//! statics) and the globals the agent sets before load (`#[unsafe(no_mangle)]`), with the
//! types of the maps' values.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use kindling_agent_common::{
    DATA_RING_BYTES, DataEvent, EVENTS_RING_BYTES, KernelOffsets, MAX_NO_PAYLOAD_CGROUPS,
    PAYLOAD_MAX, counter,
};

/// Kernel struct field offsets, found in the running kernel's BTF by the agent before load
/// (Rust eBPF has no CO-RE relocations).
#[unsafe(no_mangle)]
pub(crate) static KERNEL_OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    tcp_bytes_sent: 0,
    tcp_bytes_retrans: 0,
    tcp_bytes_received: 0,
    sock_flags: 0,
    sock_type: 0,
    sock_protocol: 0,
    skc_family: 0,
    skc_daddr: 0,
    skc_rcv_saddr: 0,
    skc_dport: 0,
    skc_num: 0,
    skc_state: 0,
    inet_sport: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    tcp_srtt_us: 0,
    tcp_total_retrans: 0,
    tcp_rtt_min: 0,
    sock_err: 0,
    skb_head: 0,
    skb_network_header: 0,
    tcp_copied_seq: 0,
    tcp_write_seq: 0,
    task_flags: 0,
    task_files: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    file_inode: 0,
    inode_mode: 0,
    file_private_data: 0,
    socket_sk: 0,
});

/// A drop reason not reported: `QUEUE_PURGE`, the kernel freeing what a closing socket still
/// held, which is socket teardown rather than a packet lost (its value comes from BTF).
#[unsafe(no_mangle)]
pub(crate) static IGNORED_DROP_REASON: Global<u32> = Global::new(u32::MAX);

/// Shortest time between two RTT samples reported for one socket (`--rtt-sample-ms`).
#[unsafe(no_mangle)]
pub(crate) static RTT_SAMPLE_NS: Global<u64> = Global::new(1_000_000_000);

/// Payload bytes captured per syscall (`--payload-bytes`, at most PAYLOAD_MAX); 0 turns
/// payload capture off while keeping the data events' metadata.
#[unsafe(no_mangle)]
pub(crate) static PAYLOAD_BYTES: Global<u32> = Global::new(PAYLOAD_MAX as u32);

/// The agent's own process id: its Flight traffic is not captured (it would feed itself).
#[unsafe(no_mangle)]
pub(crate) static AGENT_TGID: Global<u32> = Global::new(0);

/// cgroup v2 ids whose tasks' payload is never copied, nor that of any cgroup below them
/// (`--no-payload-cgroup`); filled by the agent before the programs attach.
#[map]
pub(crate) static NO_PAYLOAD_CGROUPS: HashMap<u64, u8> =
    HashMap::with_max_entries(MAX_NO_PAYLOAD_CGROUPS, 0);

/// Whether `NO_PAYLOAD_CGROUPS` holds anything (else no lookup is made).
#[unsafe(no_mangle)]
pub(crate) static NO_PAYLOAD_CHECK: Global<u32> = Global::new(0);

/// Lifecycle and network-health events (`TcpEvent`) to user space.
#[map]
pub(crate) static TCP_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Per-CPU counters of events lost in the kernel and of failed reads, indexed by `counter::*`.
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Payload events (`DataEvent`) to user space.
#[map]
pub(crate) static DATA_EVENTS: RingBuf = RingBuf::with_byte_size(DATA_RING_BYTES, 0);

/// An OpenSSL read or write in progress on a thread (`tls.rs`): its arguments, and the socket
/// its own syscalls moved ciphertext on (`sock_io` fills it in and captures nothing else).
#[derive(Clone, Copy)]
pub(crate) struct SslCall {
    pub(crate) ssl: u64,
    pub(crate) buf: u64,
    /// `SSL_*_ex`'s `size_t *` of the bytes moved; 0 for `SSL_read`/`SSL_write`.
    pub(crate) len_ptr: u64,
    pub(crate) sock: SslSock,
    pub(crate) send: bool,
}

/// The socket under an SSL connection: its ends as a data event reports them, and the fd
/// its syscalls used. `sk` 0: not seen yet.
#[derive(Clone, Copy, Default)]
pub(crate) struct SslSock {
    pub(crate) sk: u64,
    pub(crate) fd: u64,
    pub(crate) family: u16,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) saddr: [u8; 4],
    pub(crate) daddr: [u8; 4],
}

/// pid_tgid -> the OpenSSL call it is in (removed at its return; LRU, so a thread that died
/// inside one leaves nothing behind for long).
#[map]
pub(crate) static SSL_CALLS: LruHashMap<u64, SslCall> = LruHashMap::with_max_entries(16384, 0);

/// (tgid, SSL *) -> the socket last seen under it, for a call that moved no bytes on the socket
/// itself (a read served from a record already decrypted).
#[map]
pub(crate) static SSL_SOCKS: LruHashMap<[u64; 2], SslSock> = LruHashMap::with_max_entries(65536, 0);

/// The thread (pid_tgid) that last entered an OpenSSL call on this CPU, 0 once it returned
/// there: the socket programs look `SSL_CALLS` up only for that thread, so a socket event
/// outside OpenSSL costs a per-CPU load instead of a hash lookup. A thread moved to another
/// CPU, or preempted by another one's call, inside its call is not matched: its ciphertext is
/// captured (and ignored by user space) and its plaintext takes the socket from `SSL_SOCKS`.
#[map]
pub(crate) static SSL_ON_CPU: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// A Go `crypto/tls.(*Conn)` `Read` in progress on a goroutine (`tls.rs`): its buffer and the
/// socket under the connection.
#[derive(Clone, Copy)]
pub(crate) struct GoTlsCall {
    pub(crate) buf: u64,
    pub(crate) sock: SslSock,
}

/// (tgid, goroutine) -> the Go TLS read it is in (removed at a return; LRU, so a goroutine that
/// never returned leaves nothing behind for long). A goroutine, unlike a thread, stays the same
/// across the call even when it parks in a read and resumes on another thread.
#[map]
pub(crate) static GO_TLS_CALLS: LruHashMap<[u64; 2], GoTlsCall> =
    LruHashMap::with_max_entries(16384, 0);

/// Whether the TLS uprobes are attached (`SSL_CALLS` is looked up by the socket programs only
/// then).
#[unsafe(no_mangle)]
pub(crate) static TLS_UPROBES: Global<u32> = Global::new(0);

/// RTT seen for one socket since it was first sampled.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct RttState {
    pub(crate) min_us: u32,
    pub(crate) max_us: u32,
    pub(crate) last_report_ns: u64,
}

/// skaddr -> RttState, removed when the socket enters TCP_CLOSE.
#[map]
pub(crate) static RTT: LruHashMap<u64, RttState> = LruHashMap::with_max_entries(65536, 0);

/// The data event being built on this CPU, with room behind its payload so that the copy of a
/// second or later buffer (at an offset below `PAYLOAD_MAX`, of at most `PAYLOAD_MAX` bytes)
/// provably stays inside the value; only the header and the captured bytes go to the ring.
#[repr(C)]
pub(crate) struct DataScratch {
    pub(crate) ev: DataEvent,
    pub(crate) spill: [u8; PAYLOAD_MAX],
    /// The iovec walk in progress (payload.rs, `copy_iovecs`). Kept here rather than on the
    /// stack: the verifier knows nothing of a map value's contents, so each step of the walk
    /// looks alike to it and it checks the step once instead of once per iovec.
    pub(crate) walk: IovWalk,
    /// The walk for a syscall's tail in progress (payload.rs, `copy_tail_iovecs`).
    pub(crate) tail_walk: TailWalk,
}

/// Where a walk of an iovec array is: the array, its length, the bytes to copy and the bytes
/// copied so far.
#[repr(C)]
pub(crate) struct IovWalk {
    pub(crate) iov: u64,
    pub(crate) iovcnt: u64,
    pub(crate) limit: u64,
    pub(crate) off: u64,
}

/// Where a walk of an iovec array for the bytes `from..to` of a syscall is: the array, its
/// length, the syscall's bytes before the buffer the walk is at (`pos`), and where in the
/// payload the tail goes (`dst`).
#[repr(C)]
pub(crate) struct TailWalk {
    pub(crate) iov: u64,
    pub(crate) iovcnt: u64,
    pub(crate) pos: u64,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) dst: u64,
}

/// One [`DataScratch`] per CPU. The programs that use it do not nest on a CPU: each runs in a
/// task's syscall with preemption off, and the kernel never runs one program inside itself.
#[map]
pub(crate) static DATA_SCRATCH: PerCpuArray<DataScratch> = PerCpuArray::with_max_entries(1, 0);

/// The sender of the UDP message a thread is receiving on an unconnected socket, from the
/// cgroup `recvmsg4`/`recvmsg6` hook, for the `sock_recv_length` that follows (payload.rs).
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct UdpPeer {
    /// The receiving socket (checked by the taker).
    pub(crate) sk: u64,
    /// Host order.
    pub(crate) port: u16,
    pub(crate) _pad: [u8; 6],
    /// IPv4 in the first 4 bytes, or IPv6.
    pub(crate) addr: [u8; 16],
}

/// pid_tgid -> UdpPeer, at most one per thread, taken by the next receive. LRU: an entry
/// whose receive was not reported (the agent's own, MSG_PEEK) is replaced or aged out.
#[map]
pub(crate) static UDP_PEERS: LruHashMap<u64, UdpPeer> = LruHashMap::with_max_entries(4096, 0);

/// A thread's place in its sendmmsg/recvmmsg: the `struct mmsghdr` array and the index of the
/// message the socket tracepoint reports next.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct MmsgCursor {
    pub(crate) vec: u64,
    pub(crate) next: u64,
}

/// pid_tgid -> MmsgCursor, while a thread is inside a sendmmsg/recvmmsg of more than one
/// message; removed after its last message or its first failure (payload.rs).
#[map]
pub(crate) static MMSG_CURSORS: LruHashMap<u64, MmsgCursor> = LruHashMap::with_max_entries(4096, 0);
