//! Kindling's eBPF programs, one module per family:
//!
//! - `lifecycle`: `inet_sock_set_state` (raw tracepoint): every TCP state change, with the
//!   socket's addresses; on entry to TCP_CLOSE also the socket's byte counters. CLOSE ->
//!   SYN_SENT runs in the connecting task, so it names who connected.
//! - `health`: `tcp_retransmit_skb`, `tcp_receive_reset`, `kfree_skb` (raw tracepoints) and
//!   `tcp_send_reset` (tracepoint `tcp/tcp_send_reset`, whose addresses the kernel takes from
//!   the packet when no socket sent the RST): network health. Retransmissions, resets and drops of
//!   TCP/UDP packets (with the kernel's reason) are reported as they happen. RTT is read from
//!   the socket at close (and by the agent from sock_diag while it lives); only with
//!   `--rtt-every-segment` does `tcp_probe` keep it per socket in a map (min, max) and sample
//!   it at most once per interval per socket.
//! - `payload`: `sock_send_length` / `sock_recv_length` (tp_btf): socket payload capture, one
//!   program run per socket send or receive (per message of sendmmsg/recvmmsg), the syscall's
//!   arguments from the registers saved at its entry, a record carrying only the bytes
//!   captured; the cgroup v2 hooks `recvmsg4`/`recvmsg6` (a UDP sender's address) and
//!   `sock_release` (a socket's end, and who held it). No syscall tracepoint is used.
//! - `tls`: uprobes on OpenSSL's `SSL_write`/`SSL_read` (and `_ex`) and a uretprobe on their
//!   returns, and on Go's `crypto/tls.(*Conn).Write`/`Read` and `Read`'s `ret` instructions: TLS
//!   plaintext as data events of the socket under the connection (OpenSSL's ciphertext the
//!   socket programs then leave out).
//!
//! Shared by them: `maps` (every map, ring buffer and global that user space names),
//! `events` (submitting TCP events, counting losses) and `kernel` (kernel reads at the
//! offsets found in BTF, a syscall's arguments, a socket's addresses).
//!
//! Lifecycle events and data events go to user space through two ring buffers. A full ring
//! buffer drops the newest event and bumps its counter; nothing blocks and nothing loops
//! unbounded.
// Built for the bpfel target by agent/build.rs. A host build (`cargo clippy --workspace`)
// only type-checks the programs; its `main` says where the real object comes from.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod events;
mod health;
mod kernel;
mod lifecycle;
mod maps;
mod payload;
mod tls;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("kindling-probes is an eBPF object: agent/build.rs builds it for bpfel-unknown-none");
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
