//! Event types shared by Kindling's eBPF programs (`agent-ebpf`) and its agent (`agent`).
//!
//! Every type here is `#[repr(C)]` and `Copy`, with explicit padding, so that the kernel side
//! writes it into a ring buffer and user space reads it back byte for byte. With the `user`
//! feature the types implement `aya::Pod` so user space can also put them into maps and globals.
#![no_std]
#![deny(missing_docs)]

/// Length of a task's `comm` (kernel `TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Size in bytes of the kernel ring buffer that carries [`TcpEvent`]s (a power of two).
pub const EVENTS_RING_BYTES: u32 = 4 << 20;

/// What a [`TcpEvent`] records.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEventKind {
    /// `sock:inet_sock_set_state` fired for a TCP socket.
    StateChange = 1,
    // 2 and 3 were the exits of connect and accept (syscall tracepoints, no longer used).
    /// `tcp:tcp_retransmit_skb`: a segment of the socket was sent again; `old_state` holds
    /// the socket's state.
    Retransmit = 4,
    /// `tcp:tcp_send_reset`: this end sent a RST; `reason` holds the kernel's
    /// `sk_rst_reason`. `skaddr` is 0 when no socket was involved (a closed port answering).
    ResetSent = 5,
    /// `tcp:tcp_receive_reset`: a RST arrived for the socket.
    ResetReceived = 6,
    /// `skb:kfree_skb`: the kernel dropped a TCP or UDP packet; `reason` holds its
    /// `skb_drop_reason`, `ip_protocol` 6 or 17, the addresses are the packet's (`saddr` its
    /// source) and `skaddr` is 0.
    Drop = 7,
    /// `tcp:tcp_probe`: a smoothed RTT sample of the socket in `srtt_us`, reported at most
    /// once per sample interval per socket.
    Rtt = 8,
    /// cgroup `sock_release`: the socket's last file went away, in the task that held it
    /// (its pid, comm and cgroup are the event's).
    Release = 9,
}

impl TcpEventKind {
    /// Decodes the raw `kind` byte of a [`TcpEvent`].
    pub fn from_u8(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::StateChange),
            4 => Some(Self::Retransmit),
            5 => Some(Self::ResetSent),
            6 => Some(Self::ResetReceived),
            7 => Some(Self::Drop),
            8 => Some(Self::Rtt),
            9 => Some(Self::Release),
            _ => None,
        }
    }
}

/// `AF_INET`, as found in [`TcpEvent::family`].
pub const AF_INET: u16 = 2;
/// `AF_INET6`, as found in [`TcpEvent::family`].
pub const AF_INET6: u16 = 10;

/// `IPPROTO_TCP`: an IP header's protocol byte, and a socket's `sk_protocol`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`: an IP header's protocol byte, and a socket's `sk_protocol`.
pub const IPPROTO_UDP: u8 = 17;

/// `SOCK_STREAM`, as found in a socket's `sk_type` and [`DataEvent::sock_type`].
pub const SOCK_STREAM: u8 = 1;
/// `SOCK_DGRAM`, as found in a socket's `sk_type` and [`DataEvent::sock_type`].
pub const SOCK_DGRAM: u8 = 2;

/// Kernel TCP states (`include/net/tcp_states.h`).
pub mod tcp_state {
    /// TCP_ESTABLISHED
    pub const ESTABLISHED: u8 = 1;
    /// TCP_SYN_SENT
    pub const SYN_SENT: u8 = 2;
    /// TCP_SYN_RECV
    pub const SYN_RECV: u8 = 3;
    /// TCP_FIN_WAIT1
    pub const FIN_WAIT1: u8 = 4;
    /// TCP_FIN_WAIT2
    pub const FIN_WAIT2: u8 = 5;
    /// TCP_TIME_WAIT
    pub const TIME_WAIT: u8 = 6;
    /// TCP_CLOSE
    pub const CLOSE: u8 = 7;
    /// TCP_CLOSE_WAIT
    pub const CLOSE_WAIT: u8 = 8;
    /// TCP_LAST_ACK
    pub const LAST_ACK: u8 = 9;
    /// TCP_LISTEN
    pub const LISTEN: u8 = 10;
    /// TCP_CLOSING
    pub const CLOSING: u8 = 11;
    /// TCP_NEW_SYN_RECV
    pub const NEW_SYN_RECV: u8 = 12;
}

/// One TCP observation, written by the kernel side into the `TCP_EVENTS` ring buffer.
///
/// Events carry the socket's addresses as the kernel sees them: `saddr`/`sport` are the local
/// end, `daddr`/`dport` the remote one (drops: the packet's source and destination). Connect
/// and accept events read them from the socket at the syscall's exit; user space joins every
/// event to its connection by the socket address `skaddr`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event fired.
    pub ts_ns: u64,
    /// Kernel address of the `struct sock`: the connection's identity while it lives.
    pub skaddr: u64,
    /// Payload bytes sent, retransmissions not counted (`tcp_sock.bytes_sent -
    /// bytes_retrans`), when the socket entered TCP_CLOSE; else 0.
    pub bytes_sent: u64,
    /// Payload bytes received in order (`tcp_sock.bytes_received`, less the peer's FIN when it
    /// came), when the socket entered TCP_CLOSE; else 0.
    pub bytes_received: u64,
    /// Process id (kernel tgid) of the current task.
    pub pid: u32,
    /// Thread id (kernel pid) of the current task.
    pub tid: u32,
    /// Always 0 (kept for the layout).
    pub _reserved: i32,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// A [`TcpEventKind`] as a byte.
    pub kind: u8,
    /// State before the change (state changes only), see [`tcp_state`].
    pub old_state: u8,
    /// State after the change (state changes only), see [`tcp_state`].
    pub new_state: u8,
    /// IP protocol of a dropped packet (6 TCP, 17 UDP); else 0.
    pub ip_protocol: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 2],
    /// Local address: 4 bytes for IPv4 (rest zero), 16 for IPv6.
    pub saddr: [u8; 16],
    /// Remote address, as `saddr`.
    pub daddr: [u8; 16],
    /// `comm` of the current task, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// RTT samples: the smoothed RTT in microseconds; on entry to TCP_CLOSE: the socket's
    /// last smoothed RTT (0 when it never had a sample).
    pub srtt_us: u32,
    /// On entry to TCP_CLOSE: the kernel's minimum RTT of the socket (`tcp_sock.rtt_min`, or
    /// the smallest `tcp_probe` sample if smaller); 0 or u32::MAX when none.
    pub rtt_min_us: u32,
    /// On entry to TCP_CLOSE: the largest smoothed RTT `tcp_probe` saw (0 without it).
    pub rtt_max_us: u32,
    /// On entry to TCP_CLOSE: segments retransmitted over the connection's life
    /// (`tcp_sock.total_retrans`).
    pub retransmits: u32,
    /// On entry to TCP_CLOSE: the socket's pending error (`sock.sk_err`, a positive errno:
    /// ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ...), 0 when none.
    pub sk_err: i32,
    /// Drops: the kernel's `enum skb_drop_reason`; resets sent: `enum sk_rst_reason`.
    pub reason: u32,
    /// cgroup v2 id of the current task (`bpf_get_current_cgroup_id`): meaningful where `pid`
    /// is, i.e. for events that run in the connection's task (connect, accept, SYN_SENT).
    pub cgroup_id: u64,
}

impl TcpEvent {
    /// An event with every field zero.
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            skaddr: 0,
            bytes_sent: 0,
            bytes_received: 0,
            pid: 0,
            tid: 0,
            _reserved: 0,
            sport: 0,
            dport: 0,
            family: 0,
            kind: 0,
            old_state: 0,
            new_state: 0,
            ip_protocol: 0,
            _pad: [0; 2],
            saddr: [0; 16],
            daddr: [0; 16],
            comm: [0; COMM_LEN],
            srtt_us: 0,
            rtt_min_us: 0,
            rtt_max_us: 0,
            retransmits: 0,
            sk_err: 0,
            reason: 0,
            cgroup_id: 0,
        }
    }
}

/// Most payload bytes captured per syscall buffer (the agent's `--payload-bytes` is clamped to
/// this). A power of two, so the programs can bound lengths with a mask.
pub const PAYLOAD_MAX: usize = 1024;

/// Most bytes captured from the end of a TCP syscall that moved more than the payload limit,
/// behind its first bytes (see [`DataEvent::tail`]). An HTTP/2 write of a message of a few KiB
/// ends with the frames that close it (a gRPC answer's trailers), far past the first bytes.
pub const TAIL_MAX: usize = 256;

/// Bytes of [`DataEvent::payload`]: the first bytes and the tail.
pub const CAPTURE_MAX: usize = PAYLOAD_MAX + TAIL_MAX;

/// Size in bytes of the ring buffer that carries [`DataEvent`]s (a power of two).
pub const DATA_RING_BYTES: u32 = 16 << 20;

/// Most cgroups whose payload is not captured (`--no-payload-cgroup`, the map
/// `NO_PAYLOAD_CGROUPS`).
pub const MAX_NO_PAYLOAD_CGROUPS: u32 = 4096;

/// cgroup levels checked against `NO_PAYLOAD_CGROUPS`, from the root down: an excluded cgroup
/// at a depth of this or more is matched only as a task's own cgroup.
pub const NO_PAYLOAD_CGROUP_LEVELS: i32 = 16;

/// Which socket syscall a [`DataEvent`] comes from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketSyscall {
    /// read(2)
    Read = 1,
    /// write(2)
    Write = 2,
    /// readv(2)
    Readv = 3,
    /// writev(2)
    Writev = 4,
    /// sendto(2) and send(2)
    Sendto = 5,
    /// recvfrom(2) and recv(2)
    Recvfrom = 6,
    /// sendmsg(2)
    Sendmsg = 7,
    /// recvmsg(2)
    Recvmsg = 8,
    /// sendmmsg(2), one event per message
    Sendmmsg = 9,
    /// recvmmsg(2), one event per message
    Recvmmsg = 10,
    /// The release of a TCP or UDP socket (its last close); no payload
    Close = 11,
    /// Plaintext an OpenSSL `SSL_write`/`SSL_write_ex` took, on the TCP socket its own
    /// syscalls wrote (whose ciphertext is not captured); `stream_end` 0
    SslWrite = 12,
    /// Plaintext an OpenSSL `SSL_read`/`SSL_read_ex` returned, as [`SocketSyscall::SslWrite`]
    SslRead = 13,
    /// Plaintext a Go `crypto/tls.(*Conn).Write` took, as [`SocketSyscall::SslWrite`]
    GoTlsWrite = 14,
    /// Plaintext a Go `crypto/tls.(*Conn).Read` returned, as [`SocketSyscall::SslWrite`]
    GoTlsRead = 15,
}

impl SocketSyscall {
    /// Decodes the raw `syscall` byte of a [`DataEvent`].
    pub fn from_u8(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::Read,
            2 => Self::Write,
            3 => Self::Readv,
            4 => Self::Writev,
            5 => Self::Sendto,
            6 => Self::Recvfrom,
            7 => Self::Sendmsg,
            8 => Self::Recvmsg,
            9 => Self::Sendmmsg,
            10 => Self::Recvmmsg,
            11 => Self::Close,
            12 => Self::SslWrite,
            13 => Self::SslRead,
            14 => Self::GoTlsWrite,
            15 => Self::GoTlsRead,
            _ => return None,
        })
    }

    /// Whether the syscall moves bytes out of the process (a send).
    pub fn is_send(self) -> bool {
        matches!(
            self,
            Self::Write
                | Self::Writev
                | Self::Sendto
                | Self::Sendmsg
                | Self::Sendmmsg
                | Self::SslWrite
                | Self::GoTlsWrite
        )
    }

    /// Whether the bytes are TLS plaintext from the library (not a socket syscall's).
    pub fn is_tls(self) -> bool {
        self.tls_library().is_some()
    }

    /// The TLS library whose plaintext the event carries (the `tls` column's value), if any.
    pub fn tls_library(self) -> Option<&'static str> {
        match self {
            Self::SslWrite | Self::SslRead => Some("openssl"),
            Self::GoTlsWrite | Self::GoTlsRead => Some("go"),
            _ => None,
        }
    }
}

/// One socket syscall on a TCP or UDP socket, with the first bytes it moved.
///
/// `saddr`/`sport` are the local end, `daddr`/`dport` the remote one: from the socket, or for an
/// unconnected UDP socket from the syscall's address argument when it has one.
///
/// The programs see a syscall once its bytes have moved (the socket layer's tracepoints, or the
/// exit of sendmmsg/recvmmsg; its arguments are still in the registers saved at entry), so every
/// timestamp is the moment the syscall was about to return. In the data ring a record
/// is the first [`DATA_HEADER_LEN`] bytes of this struct followed by the `captured` payload
/// bytes only; [`DataEvent::payload`] past `captured` is not part of the event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataEvent {
    /// `bpf_ktime_get_ns()` once the syscall's bytes moved, just before it returns.
    pub ts_exit_ns: u64,
    /// Kernel address of the `struct sock`.
    pub skaddr: u64,
    /// Bytes the syscall moved (its return value; for *mmsg the message's length).
    pub len: u64,
    /// cgroup v2 id of the task that made the syscall (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The file descriptor.
    pub fd: i32,
    /// TCP: where this syscall's bytes end in their direction's byte stream, as a sequence
    /// number (mod 2^32; `tcp_sock.write_seq` after a send, `copied_seq` after a receive), so
    /// that user space sees a lost event as a gap. 0 for UDP.
    pub stream_end: u32,
    /// Bytes of `payload` filled (at most [`CAPTURE_MAX`]): the first bytes, then the tail.
    pub captured: u16,
    /// A [`SocketSyscall`] as a byte.
    pub syscall: u8,
    /// `SOCK_STREAM` (1) or `SOCK_DGRAM` (2).
    pub sock_type: u8,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// How many of the `captured` bytes are the syscall's last ones (at most [`TAIL_MAX`]),
    /// taken when a TCP syscall moved more than the payload limit: `payload` holds its first
    /// `captured - tail` bytes, then its last `tail` bytes. 0 otherwise.
    pub tail: u16,
    /// Explicit padding; always zero.
    pub _pad: [u8; 4],
    /// Local address (4 bytes for IPv4, rest zero).
    pub saddr: [u8; 16],
    /// Remote address.
    pub daddr: [u8; 16],
    /// `comm` of the current task, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// The first `captured - tail` bytes the syscall moved (from as many of its buffers as they
    /// fill, never past a buffer's length), then its last `tail` bytes.
    pub payload: [u8; CAPTURE_MAX],
}

/// Bytes of a [`DataEvent`] before its payload: a data ring record is this many bytes plus
/// `captured`.
pub const DATA_HEADER_LEN: usize = core::mem::offset_of!(DataEvent, payload);

impl DataEvent {
    /// An event with every field zero.
    pub const fn zeroed() -> Self {
        Self {
            ts_exit_ns: 0,
            skaddr: 0,
            len: 0,
            cgroup_id: 0,
            pid: 0,
            tid: 0,
            fd: 0,
            stream_end: 0,
            captured: 0,
            syscall: 0,
            sock_type: 0,
            sport: 0,
            dport: 0,
            family: 0,
            tail: 0,
            _pad: [0; 4],
            saddr: [0; 16],
            daddr: [0; 16],
            comm: [0; COMM_LEN],
            payload: [0; CAPTURE_MAX],
        }
    }

    /// The captured first bytes of the syscall.
    pub fn head(&self) -> &[u8] {
        let captured = usize::from(self.captured).min(CAPTURE_MAX);
        &self.payload[..captured - usize::from(self.tail).min(captured)]
    }

    /// The captured last bytes of the syscall (empty unless it moved more than was captured
    /// from its start).
    pub fn tail(&self) -> &[u8] {
        let captured = usize::from(self.captured).min(CAPTURE_MAX);
        &self.payload[captured - usize::from(self.tail).min(captured)..captured]
    }
}

/// Byte offsets of the kernel struct fields the programs read, found in the running kernel's
/// BTF by the agent at start and handed to the programs as a global (Rust eBPF has no CO-RE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `tcp_sock.bytes_sent`
    pub tcp_bytes_sent: u64,
    /// `tcp_sock.bytes_retrans`
    pub tcp_bytes_retrans: u64,
    /// `tcp_sock.bytes_received`
    pub tcp_bytes_received: u64,
    /// `sock.sk_flags` (an unsigned long of `enum sock_flags` bits; bit 1, SOCK_DONE, is set
    /// when the peer's FIN arrives)
    pub sock_flags: u64,
    /// `sock.sk_type` (u16)
    pub sock_type: u64,
    /// `sock.sk_protocol` (u16)
    pub sock_protocol: u64,
    /// `sock_common.skc_family` (u16; `sock` starts with its `sock_common`)
    pub skc_family: u64,
    /// `sock_common.skc_daddr`
    pub skc_daddr: u64,
    /// `sock_common.skc_rcv_saddr`
    pub skc_rcv_saddr: u64,
    /// `sock_common.skc_dport` (network order)
    pub skc_dport: u64,
    /// `sock_common.skc_num` (local port, host order)
    pub skc_num: u64,
    /// `sock_common.skc_state` (u8, the TCP state)
    pub skc_state: u64,
    /// `inet_sock.inet_sport` (network order; kept after `skc_num` is cleared at close)
    pub inet_sport: u64,
    /// `sock_common.skc_v6_daddr`
    pub skc_v6_daddr: u64,
    /// `sock_common.skc_v6_rcv_saddr`
    pub skc_v6_rcv_saddr: u64,
    /// `tcp_sock.srtt_us` (u32, smoothed RTT in microseconds << 3)
    pub tcp_srtt_us: u64,
    /// `tcp_sock.total_retrans` (u32)
    pub tcp_total_retrans: u64,
    /// `tcp_sock.rtt_min.s[0].v` (u32): the kernel's windowed minimum RTT, microseconds
    pub tcp_rtt_min: u64,
    /// `sock.sk_err` (int)
    pub sock_err: u64,
    /// `sk_buff.head` (pointer)
    pub skb_head: u64,
    /// `sk_buff.network_header` (u16 offset from `head`)
    pub skb_network_header: u64,
    /// `tcp_sock.copied_seq` (u32: the next byte a receive hands to the process)
    pub tcp_copied_seq: u64,
    /// `tcp_sock.write_seq` (u32: just past the last byte a send queued)
    pub tcp_write_seq: u64,
    /// `task_struct.flags` (u32; `PF_KTHREAD` marks a kernel thread)
    pub task_flags: u64,
    /// `task_struct.files` (a task's open files; with the next two, its `struct file` by fd)
    pub task_files: u64,
    /// `files_struct.fdt`
    pub files_fdt: u64,
    /// `fdtable.fd` (the array of `struct file *`)
    pub fdtable_fd: u64,
    /// `file.f_inode`
    pub file_inode: u64,
    /// `inode.i_mode` (u16; `S_IFSOCK` for a socket)
    pub inode_mode: u64,
    /// `file.private_data` (a socket file's `struct socket *`)
    pub file_private_data: u64,
    /// `socket.sk`
    pub socket_sk: u64,
}

/// Indexes of the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events lost because the ring buffer was full (a failed reserve).
    pub const RINGBUF_FULL: u32 = 0;
    /// Events whose kernel struct reads failed (socket gone, offsets wrong).
    pub const READ_FAILED: u32 = 1;
    /// Data events lost because the data ring buffer was full.
    pub const DATA_RINGBUF_FULL: u32 = 2;
    /// TLS library calls not followed: the table of calls in progress was full, or a call
    /// returned bytes on a connection whose socket was never seen (`SSL_CALLS`, `SSL_SOCKS`).
    pub const TLS_UNTRACKED: u32 = 3;
    /// Number of counters.
    pub const COUNT: u32 = 4;
}

/// Field offsets in the tracepoints the programs read. Tracepoint formats are a kernel ABI; the
/// agent still checks every offset against `/sys/kernel/tracing/events/*/*/format` before
/// loading, and refuses to start on a mismatch instead of recording garbage.
pub mod tp {
    /// The network-health tracepoint read as a tracepoint (category/name) and its fields. (The
    /// other socket programs are raw tracepoints and read the `struct sock` at BTF offsets.)
    pub const NET_HEALTH: [(&str, &str, usize); 5] = [
        ("tcp/tcp_send_reset", "skaddr", send_reset::SKADDR),
        ("tcp/tcp_send_reset", "state", send_reset::STATE),
        ("tcp/tcp_send_reset", "reason", send_reset::REASON),
        ("tcp/tcp_send_reset", "saddr", send_reset::SADDR),
        ("tcp/tcp_send_reset", "daddr", send_reset::DADDR),
    ];

    /// Offsets of `tcp/tcp_send_reset`: the addresses are `struct sockaddr_in`/`_in6` (family,
    /// port in network order, address at 4 or 8); `saddr` is the end that sent the RST.
    pub mod send_reset {
        /// `const void *skaddr` (NULL when no socket sent it)
        pub const SKADDR: usize = 16;
        /// `int state`
        pub const STATE: usize = 24;
        /// `enum sk_rst_reason reason`
        pub const REASON: usize = 28;
        /// `__u8 saddr[28]`
        pub const SADDR: usize = 32;
        /// `__u8 daddr[28]`
        pub const DADDR: usize = 60;
    }
}

/// Where x86_64's `struct pt_regs` keeps a syscall's arguments (the registers saved at entry,
/// still there when its exit tracepoint runs). The agent checks them against the kernel's BTF
/// before loading.
pub mod pt_regs {
    /// `r10`: the fourth argument.
    pub const R10: u64 = 56;
    /// `r8`: the fifth argument.
    pub const R8: u64 = 72;
    /// `dx`: the third argument.
    pub const DX: u64 = 96;
    /// `si`: the second argument.
    pub const SI: u64 = 104;
    /// `di`: the first argument.
    pub const DI: u64 = 112;
    /// `orig_ax`: the number of the syscall the task is in.
    pub const ORIG_AX: u64 = 120;
}

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers and byte arrays, every bit pattern is valid, no padding
// bytes left implicit.
unsafe impl aya::Pod for TcpEvent {}

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers and byte arrays with explicit padding.
unsafe impl aya::Pod for DataEvent {}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` struct of u64s.
unsafe impl aya::Pod for KernelOffsets {}

const _: () = assert!(core::mem::size_of::<TcpEvent>() == 136);
const _: () = assert!(core::mem::size_of::<DataEvent>() == 112 + CAPTURE_MAX);
const _: () = assert!(DATA_HEADER_LEN == 112);
