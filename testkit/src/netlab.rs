//! A small network lab for fault tests: two network namespaces ("client" and "server") joined
//! by a veth pair (the clean path) and by two TUN devices with a user-space forwarder that holds
//! client-to-server packets for a set delay (the delayed path: this kernel has no netem).
//! Faults come from nftables rules inside the lab's own namespaces. Test code runs sockets in a
//! namespace through [`Netns::enter`] (a thread that joined it).
//!
//! Addresses of lab `n`: clean path 10.200.n.1 (client) and 10.200.n.2 (server); delayed path
//! 10.201.n.1 and 10.201.n.2.

use std::{
    collections::VecDeque,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

static NEXT_LAB: AtomicU32 = AtomicU32::new(1);

/// Runs `cmd` through `sh -c`, panicking with its output on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace `name` (one left by an earlier run is deleted first), loopback up.
    pub fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Self { name }
    }

    /// Runs a shell command inside the namespace.
    pub fn sh(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} sh -c '{cmd}'", self.name))
    }

    /// Runs `f` on a thread that joined this namespace: sockets it creates live there.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread in netns panicked")
    }

    /// Starts `f` on a thread that joined this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            join_netns(&path);
            f()
        })
    }
}

fn join_netns(path: &str) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: a valid namespace fd; setns affects only this thread.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(ret, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// Two namespaces joined by a clean veth path and a delayed TUN path.
pub struct Lab {
    pub n: u32,
    // Dropped first: the forwarder stops before its devices' namespaces go.
    _delay: DelayLink,
    pub client: Netns,
    pub server: Netns,
}

impl Lab {
    /// A lab whose delayed path holds client-to-server packets for `delay`.
    pub fn new(delay: Duration) -> Self {
        let n = (std::process::id() % 50) * 4 + NEXT_LAB.fetch_add(1, Ordering::Relaxed) % 4;
        let n = n % 250 + 1;
        let client = Netns::new(format!("kl-c{n}"));
        let server = Netns::new(format!("kl-s{n}"));
        sh(&format!(
            "ip link add klv{n}c netns {c} type veth peer name klv{n}s netns {s}",
            c = client.name,
            s = server.name
        ));
        client.sh(&format!(
            "ip addr add 10.200.{n}.1/24 dev klv{n}c && ip link set klv{n}c up"
        ));
        server.sh(&format!(
            "ip addr add 10.200.{n}.2/24 dev klv{n}s && ip link set klv{n}s up"
        ));
        let tun_c = open_tun(&client, &format!("klt{n}c"));
        let tun_s = open_tun(&server, &format!("klt{n}s"));
        client.sh(&format!(
            "ip addr add 10.201.{n}.1 peer 10.201.{n}.2 dev klt{n}c && ip link set klt{n}c up"
        ));
        server.sh(&format!(
            "ip addr add 10.201.{n}.2 peer 10.201.{n}.1 dev klt{n}s && ip link set klt{n}s up"
        ));
        let delay = DelayLink::start(tun_c, tun_s, delay);
        Self {
            n,
            _delay: delay,
            client,
            server,
        }
    }

    /// Client address on the clean path.
    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.n as u8, 1)
    }

    /// Server address on the clean path.
    pub fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.n as u8, 2)
    }

    /// Client address on the delayed path.
    pub fn delayed_client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 1)
    }

    /// Server address on the delayed path.
    pub fn delayed_server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 2)
    }

    /// Loads an nftables ruleset (text) into the server namespace.
    pub fn server_nft(&self, ruleset: &str) {
        let path = format!("/tmp/kl-nft-{}.nft", self.n);
        std::fs::write(&path, ruleset).unwrap();
        sh(&format!("ip netns exec {} nft -f {path}", self.server.name));
        let _ = std::fs::remove_file(path);
    }

    /// Packets counted by the nftables rule commented `comment` in the server namespace.
    pub fn server_nft_counter(&self, comment: &str) -> u64 {
        let text = sh(&format!(
            "ip netns exec {} nft list ruleset",
            self.server.name
        ));
        let line = text
            .lines()
            .find(|l| l.contains(&format!("comment \"{comment}\"")))
            .unwrap_or_else(|| panic!("no rule commented {comment}:\n{text}"));
        line.split("counter packets ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {line}"))
    }
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates TUN device `name` inside `ns` and returns its (non-blocking) fd.
fn open_tun(ns: &Netns, name: &str) -> OwnedFd {
    let name = name.to_owned();
    ns.enter(move || {
        // SAFETY: a constant path; the fd is owned right away.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF with a valid ifreq.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) };
        assert_eq!(
            ret,
            0,
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        );
        fd
    })
}

/// Forwards packets between two TUN devices: client to server after `delay`, back at once.
struct DelayLink {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLink {
    fn start(client: OwnedFd, server: OwnedFd, delay: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(client);
        let server = Arc::new(server);
        let threads = vec![
            forward(Arc::clone(&client), Arc::clone(&server), delay, &stop),
            forward(server, client, Duration::ZERO, &stop),
        ];
        Self { stop, threads }
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One direction: reads packets from `from`, writes each to `to` once `delay` has passed
/// (a constant delay keeps their order).
fn forward(
    from: Arc<OwnedFd>,
    to: Arc<OwnedFd>,
    delay: Duration,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let wait_ms = queue.front().map_or(20, |(at, _)| {
                at.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(20) as i32
            });
            let mut pfd = libc::pollfd {
                fd: from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            loop {
                // SAFETY: reading into our own buffer.
                let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                queue.push_back((Instant::now() + delay, buf[..n as usize].to_vec()));
            }
            let now = Instant::now();
            while queue.front().is_some_and(|(at, _)| *at <= now) {
                let (_, pkt) = queue.pop_front().expect("front");
                // SAFETY: writing a whole packet from our buffer; a full device drops it, as a
                // real link would.
                unsafe { libc::write(to.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
            }
        }
    })
}
