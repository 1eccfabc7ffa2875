//! Counters of live TCP sockets from the kernel's sock_diag netlink interface (what `ss` uses):
//! payload bytes for the periodic `flows` rows of long-lived connections, and RTT for the
//! `rtt` samples. The eBPF programs read a socket's counters only when it closes, so live
//! connections cost nothing per packet. sock_diag answers for one network namespace, so the
//! walk visits every namespace that a process on the host is in (pods have their own).

use std::{
    collections::{HashMap, HashSet},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use crate::records::Endpoints;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const NLMSG_HDR: usize = 16;
const INET_DIAG_MSG: usize = 72;
/// Offsets in `struct tcp_info` (uapi/linux/tcp.h).
const TCPI_RTT: usize = 68;
const TCPI_TOTAL_RETRANS: usize = 100;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_MIN_RTT: usize = 148;
const TCPI_BYTES_SENT: usize = 200;
const TCPI_BYTES_RETRANS: usize = 208;
/// States in which the peer's FIN has been received (and counted in tcpi_bytes_received).
const FIN_RECEIVED_STATES: [u8; 4] = [6, 8, 9, 11];
/// Every state but LISTEN (10) and CLOSE (7).
const STATES: u32 = 0xfff & !(1 << 10) & !(1 << 7);
/// LISTEN only.
const LISTEN_STATES: u32 = 1 << 10;

/// What sock_diag reports for one live TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// Payload bytes sent, retransmissions not counted (as the eBPF programs count at close).
    pub bytes_sent: u64,
    /// Payload bytes received in order, the peer's FIN not counted.
    pub bytes_received: u64,
    /// Smoothed RTT, microseconds (`tcpi_rtt`); 0 before the first sample.
    pub srtt_us: u32,
    /// Smallest RTT measured (`tcpi_min_rtt`, the kernel's windowed min filter); u32::MAX or 0
    /// before the first sample.
    pub min_rtt_us: u32,
    /// Segments retransmitted so far (`tcpi_total_retrans`).
    pub retransmits: u32,
}

/// Most network namespaces visited per call of [`tcp_infos`].
const MAX_NAMESPACES: usize = 4096;

/// [`TcpInfo`] of every live TCP socket of every network namespace on this host (each pod has
/// its own; sock_diag answers for the namespace of the asking socket), keyed by its endpoints
/// as the local socket sees them (`src` = local end). IPv4-mapped IPv6 addresses are reported
/// as IPv4. Endpoints that two namespaces share (loopback) keep one of them.
pub fn tcp_infos() -> io::Result<HashMap<Endpoints, TcpInfo>> {
    let mut out = HashMap::new();
    dump_infos(&mut out)?;
    let own = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
    let others: Vec<PathBuf> = net_namespaces()
        .into_iter()
        .filter(|(ino, _)| Some(*ino) != own)
        .map(|(_, path)| path)
        .take(MAX_NAMESPACES)
        .collect();
    if !others.is_empty() {
        // setns moves only the calling thread: a scoped thread visits the namespaces and ends.
        let theirs = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut theirs = HashMap::new();
                    for path in others {
                        // A process that exited, or a namespace we cannot enter, is skipped.
                        if enter_netns(&path).is_ok() {
                            let _ = dump_infos(&mut theirs);
                        }
                    }
                    theirs
                })
                .join()
        })
        .map_err(|_| io::Error::other("sock_diag namespace walk panicked"))?;
        for (ends, info) in theirs {
            out.entry(ends).or_insert(info);
        }
    }
    Ok(out)
}

fn dump_infos(out: &mut HashMap<Endpoints, TcpInfo>) -> io::Result<()> {
    dump(STATES, 1 << (INET_DIAG_INFO - 1), |msg| {
        if let Some((ends, info)) = parse_diag_msg(msg) {
            out.insert(ends, info);
        }
    })
}

/// Distinct network namespaces on this host: those of running processes (`/proc/*/ns/net`,
/// a pod's pause process holds its pod's) and named ones (`/run/netns/*`, as `ip netns` and
/// some CNI plugins make them), as (namespace inode, a path that opens it).
fn net_namespaces() -> Vec<(u64, PathBuf)> {
    let mut seen: HashMap<u64, PathBuf> = HashMap::new();
    let mut note = |path: PathBuf| {
        if let Ok(meta) = std::fs::metadata(&path) {
            seen.entry(meta.ino()).or_insert(path);
        }
    };
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.parse::<u32>().is_ok())
        {
            note(entry.path().join("ns/net"));
        }
    }
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        note(entry.path());
    }
    let mut out: Vec<_> = seen.into_iter().collect();
    out.sort_unstable();
    out
}

/// Moves the calling thread into the network namespace that `path` opens.
fn enter_netns(path: &Path) -> io::Result<()> {
    let ns = std::fs::File::open(path)?;
    // SAFETY: a valid namespace fd; setns affects only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Local ports of every listening TCP socket (IPv4 and IPv6): servers that started before
/// the agent, whose LISTEN transition the eBPF programs never saw.
pub fn tcp_listening_ports() -> io::Result<HashSet<u16>> {
    let mut out = HashSet::new();
    dump(LISTEN_STATES, 0, |msg| {
        // inet_diag_msg: family, state, timer, retrans, then the socket id: sport (be16).
        if msg.len() >= INET_DIAG_MSG {
            out.insert(u16::from_be_bytes([msg[4], msg[5]]));
        }
    })?;
    Ok(out)
}

/// Dumps the TCP sockets in `states` of both families, with extensions `ext`, handing each
/// `inet_diag_msg` (and its attributes) to `on_msg`.
fn dump(states: u32, ext: u8, mut on_msg: impl FnMut(&[u8])) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        send_request(raw, family, states, ext)?;
        receive(raw, &mut on_msg)?;
    }
    Ok(())
}

fn send_request(fd: libc::c_int, family: u8, states: u32, ext: u8) -> io::Result<()> {
    const LEN: usize = NLMSG_HDR + 56;
    let mut msg = [0u8; LEN];
    msg[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    let req = &mut msg[NLMSG_HDR..];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[2] = ext;
    req[4..8].copy_from_slice(&states.to_ne_bytes());
    // SAFETY: msg is a valid buffer of its length; the kernel is the default destination.
    let n = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn receive(fd: libc::c_int, on_msg: &mut impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buf[..n as usize];
        while rest.len() >= NLMSG_HDR {
            let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < NLMSG_HDR || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad netlink length",
                ));
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(rest[16..20].try_into().expect("4 bytes"));
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                _ => on_msg(&rest[NLMSG_HDR..len]),
            }
            rest = &rest[(len + 3) & !3..];
            if rest.len() < NLMSG_HDR {
                break;
            }
        }
    }
}

fn addr(family: u8, raw: &[u8]) -> IpAddr {
    if family == libc::AF_INET6 as u8 {
        let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&raw[..16]).expect("16 bytes"));
        v6.to_ipv4_mapped().map_or(v6.into(), IpAddr::from)
    } else {
        Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()
    }
}

/// One `inet_diag_msg` with its attributes: the socket's endpoints and counters.
fn parse_diag_msg(msg: &[u8]) -> Option<(Endpoints, TcpInfo)> {
    if msg.len() < INET_DIAG_MSG {
        return None;
    }
    let family = msg[0];
    let fin_received = u64::from(FIN_RECEIVED_STATES.contains(&msg[1]));
    let id = &msg[4..52];
    let ends = Endpoints {
        src_port: u16::from_be_bytes([id[0], id[1]]),
        dst_port: u16::from_be_bytes([id[2], id[3]]),
        src_ip: addr(family, &id[4..20]),
        dst_ip: addr(family, &id[20..36]),
    };
    let mut attrs = &msg[INET_DIAG_MSG..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        let data = &attrs[4..len];
        if kind == INET_DIAG_INFO && data.len() >= TCPI_BYTES_RETRANS + 8 {
            let u64_at = |o: usize| u64::from_ne_bytes(data[o..o + 8].try_into().expect("8"));
            let u32_at = |o: usize| u32::from_ne_bytes(data[o..o + 4].try_into().expect("4"));
            let info = TcpInfo {
                bytes_sent: u64_at(TCPI_BYTES_SENT).saturating_sub(u64_at(TCPI_BYTES_RETRANS)),
                bytes_received: u64_at(TCPI_BYTES_RECEIVED).saturating_sub(fin_received),
                srtt_us: u32_at(TCPI_RTT),
                min_rtt_us: u32_at(TCPI_MIN_RTT),
                retransmits: u32_at(TCPI_TOTAL_RETRANS),
            };
            return Some((ends, info));
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A listener of this test is listed, and a port that nothing listens on is not.
    #[test]
    fn lists_listening_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let ports = tcp_listening_ports().expect("sock_diag");
        assert!(ports.contains(&port), "{port} not in {ports:?}");
        assert!(!ports.contains(&closed_port));
    }

    /// A live loopback connection with known traffic shows exactly those counters on both ends.
    #[test]
    fn counts_bytes_of_a_live_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(server_addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 1000]).unwrap();
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).unwrap();
        server.write_all(&[9u8; 300]).unwrap();
        let mut got = [0u8; 300];
        client.read_exact(&mut got).unwrap();
        // Acks travel on loopback synchronously with the reads above, but give them a moment.
        std::thread::sleep(std::time::Duration::from_millis(50));

        let counters = tcp_infos().expect("sock_diag");
        let client_addr = client.local_addr().unwrap();
        let client_view = Endpoints {
            src_ip: client_addr.ip(),
            src_port: client_addr.port(),
            dst_ip: server_addr.ip(),
            dst_port: server_addr.port(),
        };
        let server_view = Endpoints {
            src_ip: server_addr.ip(),
            src_port: server_addr.port(),
            dst_ip: client_addr.ip(),
            dst_port: client_addr.port(),
        };
        let bytes = |i: &TcpInfo| (i.bytes_sent, i.bytes_received);
        assert_eq!(counters.get(&client_view).map(bytes), Some((1000, 300)));
        assert_eq!(counters.get(&server_view).map(bytes), Some((300, 1000)));
        // Loopback RTT: sampled, small, and the minimum below or at the smoothed value.
        let c = counters[&client_view];
        assert!(c.srtt_us > 0 && c.srtt_us < 100_000, "{c:?}");
        assert!(c.min_rtt_us > 0 && c.min_rtt_us <= c.srtt_us, "{c:?}");
        assert_eq!(c.retransmits, 0);

        // The server's FIN moves the client to CLOSE_WAIT: a sequence number, not a payload byte.
        server.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(client.read(&mut got).unwrap(), 0);
        let counters = tcp_infos().expect("sock_diag");
        assert_eq!(counters.get(&client_view).map(bytes), Some((1000, 300)));
    }

    #[test]
    fn short_or_garbled_messages_are_skipped() {
        assert!(parse_diag_msg(&[0u8; 10]).is_none());
        let mut msg = vec![0u8; INET_DIAG_MSG + 4];
        msg[0] = libc::AF_INET as u8;
        // An attribute claiming more bytes than there are.
        msg[INET_DIAG_MSG..INET_DIAG_MSG + 2].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_diag_msg(&msg).is_none());
    }
}
