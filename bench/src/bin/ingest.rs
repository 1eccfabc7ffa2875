//! Ingest benchmark: how many kernel events per second the agent's user-space path sustains on
//! one core (ring-buffer record -> decode -> connection tracking -> Arrow builders -> store),
//! and how many bytes each stored row takes in sealed chunks.
//!
//! The events are synthetic but shaped like real ones: every connection is a client and a
//! server socket going through the lifecycle the kernel reports on loopback (SYN_SENT,
//! ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE; LISTEN->SYN_RECV, ESTABLISHED, CLOSE_WAIT,
//! LAST_ACK, CLOSE; and each socket's release, the server's naming who accepted it: the
//! `connect` and `accept` rows). Side by side in the same run, the same records go through
//! decode alone, so the ratio shows what tracking and storage cost on top of reading.
//!
//!   cargo run --release -p kindling-bench --bin ingest -- [CONNECTIONS]
use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Instant,
};

use kindling_agent::{
    conntrack::ConnTracker,
    decode::{self, Clock},
    enrich::Enricher,
    k8s::{
        Kind, Kubernetes,
        index::{EndpointAddress, PodFacts},
    },
    records::{Endpoints, Owner, Role, pending::PendingRows},
    store::{Store, StoreConfig},
};
use kindling_agent_common::{AF_INET, TcpEvent, TcpEventKind, tcp_state::*};
use kindling_wire::schema;

fn event(
    ts: u64,
    sk: u64,
    kind: TcpEventKind,
    old: u8,
    new: u8,
    local: u16,
    remote: u16,
) -> TcpEvent {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"client");
    let mut saddr = [0u8; 16];
    saddr[..4].copy_from_slice(&[10, 0, (sk >> 8) as u8, sk as u8]);
    let mut daddr = [0u8; 16];
    daddr[..4].copy_from_slice(&[10, 1, 0, 1]);
    TcpEvent {
        ts_ns: ts,
        skaddr: sk,
        bytes_sent: if new == CLOSE { 1234 } else { 0 },
        bytes_received: if new == CLOSE { 5678 } else { 0 },
        pid: 1000 + (sk % 50) as u32,
        tid: 1000 + (sk % 50) as u32,
        sport: local,
        dport: remote,
        family: AF_INET,
        kind: kind as u8,
        old_state: old,
        new_state: new,
        saddr,
        daddr,
        comm,
        // 50 processes, each in a container of its own.
        cgroup_id: CGROUP_BASE + sk % 50,
        ..TcpEvent::zeroed()
    }
}

/// cgroup ids of the synthetic processes' containers.
const CGROUP_BASE: u64 = 7_000;

/// Pods of the Kubernetes pass: as many as a large cluster's, so that lookups hit tables of
/// that size.
const PODS: u32 = 20_000;

/// A Kubernetes view with [`PODS`] pods (10.0.0.0/16 and 10.1.0.0/16, the synthetic
/// addresses among them), a Service per 20 pods with its endpoints, ReplicaSets owned by
/// Deployments, and the 50 processes' cgroups mapped to pods.
fn cluster() -> Arc<Kubernetes> {
    let k = Kubernetes::new("bench-node", 1 << 20);
    let ip = |i: u32| IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
    k.update(|ix| {
        for i in 0..PODS {
            let addr = if i < PODS / 2 {
                ip(i)
            } else {
                ip((1 << 16) | (i - PODS / 2))
            };
            let ns = format!("ns-{}", i % 40);
            let deployment = format!("app-{}", i / 20);
            let rs = format!("{deployment}-5d8f");
            ix.apply_owner(
                Kind::ReplicaSet,
                (ns.clone(), rs.clone()),
                Some(("Deployment".into(), deployment.clone())),
            );
            ix.apply_pod(
                PodFacts {
                    uid: format!("uid-{i}"),
                    namespace: ns.clone(),
                    name: format!("{rs}-{i:05}"),
                    owner: Some(("ReplicaSet".into(), rs)),
                    created_ns: 1,
                    ips: vec![addr],
                    container_ids: vec![format!("{i:064x}")],
                    ..PodFacts::default()
                },
                2,
            );
            ix.apply_endpoints(
                (ns.clone(), format!("{deployment}-{i}")),
                (ns, deployment),
                vec![EndpointAddress {
                    ip: addr,
                    ports: vec![80],
                }],
            );
        }
        ix.apply_cgroup_scan(
            (0..50)
                .map(|i| (format!("{i:064x}"), CGROUP_BASE + i))
                .collect(),
        );
    });
    Arc::new(k)
}

fn bytes(ev: &TcpEvent) -> Vec<u8> {
    // SAFETY: TcpEvent is repr(C) plain data with explicit padding.
    unsafe {
        std::slice::from_raw_parts((ev as *const TcpEvent).cast::<u8>(), size_of::<TcpEvent>())
    }
    .to_vec()
}

/// Ring-buffer records of `n` loopback connections (12 events each).
fn records(n: u64) -> Vec<Vec<u8>> {
    use TcpEventKind::*;
    let mut out = Vec::with_capacity(n as usize * 12);
    out.push(bytes(&event(0, 1, StateChange, CLOSE, LISTEN, 80, 0)));
    for i in 0..n {
        let (c, s) = (0x10_0000 + 2 * i, 0x10_0001 + 2 * i);
        let port = 10_000 + (i % 50_000) as u16;
        let t = 1_000 + i * 10_000;
        for ev in [
            event(t, c, StateChange, CLOSE, SYN_SENT, 0, 80),
            event(t + 1, s, StateChange, LISTEN, SYN_RECV, 80, port),
            event(t + 2, s, StateChange, SYN_RECV, ESTABLISHED, 80, port),
            event(t + 3, c, StateChange, SYN_SENT, ESTABLISHED, port, 80),
            // Both ends' releases by their last close (the server's names who accepted it).
            event(t + 4, c, Release, 0, 0, 0, 0),
            event(t + 5, s, Release, 0, 0, 0, 0),
            event(t + 6, s, StateChange, ESTABLISHED, FIN_WAIT1, 80, port),
            event(t + 7, c, StateChange, ESTABLISHED, CLOSE_WAIT, port, 80),
            event(t + 8, s, StateChange, FIN_WAIT1, FIN_WAIT2, 80, port),
            event(t + 9, c, StateChange, CLOSE_WAIT, LAST_ACK, port, 80),
            event(t + 10, s, StateChange, FIN_WAIT2, CLOSE, 80, port),
            event(t + 11, c, StateChange, LAST_ACK, CLOSE, port, 80),
        ] {
            out.push(bytes(&ev));
        }
    }
    out
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(200_000, |a| a.parse().expect("CONNECTIONS"));
    pin_to_cpu0();
    let recs = records(n);
    let events = recs.len() as f64;

    // Decode only.
    let start = Instant::now();
    let mut sum = 0u64;
    for r in &recs {
        sum = sum.wrapping_add(decode::tcp_event(black_box(r)).expect("valid record").ts_ns);
    }
    black_box(sum);
    let decode_s = start.elapsed().as_secs_f64();

    // Decode -> tracker -> builders -> store, in host mode and with Kubernetes enrichment,
    // side by side.
    let (store, full_s) = full_path(&recs, n, None);
    let k8s = cluster();
    let (k8s_store, k8s_s) = full_path(&recs, n, Some(Arc::clone(&k8s)));
    // The lookups the pass made are real ones: a client process's container and the server.
    let ends = k8s.resolve(
        &Owner {
            cgroup_id: CGROUP_BASE,
            ..Owner::default()
        },
        Role::Client,
        &Endpoints {
            src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 99, 1)),
            src_port: 40_000,
            dst_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
            dst_port: 80,
        },
        3,
    );
    assert_eq!(&*ends.src.pod, "app-0-5d8f-00000");
    assert_eq!(
        [&*ends.dst.pod, &*ends.dst.workload, &*ends.dst.service],
        ["app-500-5d8f-10001", "app-500", "app-500"]
    );

    println!("connections: {n}, events: {}", recs.len());
    println!(
        "decode only:            {:>12.0} events/s",
        events / decode_s
    );
    println!("decode+track+store:     {:>12.0} events/s", events / full_s);
    println!("ratio (full / decode):  {:>12.3}", decode_s / full_s);
    println!(
        "same, Kubernetes ({PODS} pods): {:>12.0} events/s",
        events / k8s_s
    );
    println!("ratio (kubernetes / host mode): {:>6.3}", full_s / k8s_s);
    // Bytes per row over sealed chunks only (the open chunk is still made of small batches),
    // plain, then compressed as the agent's store-compress thread does it.
    let sealed_bytes = |store: &Store, table: &str| {
        let snap = store.snapshot(table).unwrap();
        let sealed = &snap.chunks[..snap.chunks.len().saturating_sub(1)];
        let bytes: u64 = sealed.iter().map(|c| c.bytes()).sum();
        let rows: usize = sealed.iter().map(|c| c.rows()).sum();
        (bytes as f64 / rows.max(1) as f64, rows, sealed.len())
    };
    let plain = [schema::TCP_EVENTS, schema::FLOWS].map(|t| sealed_bytes(&store, t));
    for table in [schema::TCP_EVENTS, schema::FLOWS] {
        let (bytes, rows, _) = sealed_bytes(&k8s_store, table);
        println!(
            "{table:<11} bytes/row with Kubernetes names (sealed, plain): {bytes:>6.1} ({rows} rows)"
        );
    }
    let t = Instant::now();
    store.compress_sealed().unwrap();
    let compress_s = t.elapsed().as_secs_f64();
    for (table, (plain, rows, chunks)) in [schema::TCP_EVENTS, schema::FLOWS].into_iter().zip(plain)
    {
        let (packed, _, _) = sealed_bytes(&store, table);
        println!(
            "{table:<11} bytes/row (sealed chunks): {plain:>6.1} plain, {packed:>6.1} {:?}  ({rows} rows in {chunks} chunks)",
            store.config().compression
        );
    }
    println!("compressing the sealed chunks took {compress_s:.2} s");
}

/// The agent's user-space path over `recs`: tracker -> builders -> store, flushing every
/// 8192 rows as the pipeline does; returns the store and the seconds it took.
fn full_path(recs: &[Vec<u8>], n: u64, k8s: Option<Arc<Kubernetes>>) -> (Arc<Store>, f64) {
    let store = Arc::new(Store::new(
        StoreConfig {
            budget_bytes: u64::MAX,
            ..StoreConfig::default()
        },
        schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).unwrap())),
    ));
    let mut tracker = ConnTracker::new(Clock::with_offset(1_700_000_000_000_000_000), 1 << 20);
    let mut rows = PendingRows::new("bench-node").with_enricher(Enricher::new(k8s, None));
    let start = Instant::now();
    for (i, r) in recs.iter().enumerate() {
        tracker.on_event(&decode::tcp_event(r).expect("valid record"), &mut rows);
        // As the pipeline does once per drained batch (the events' times are synthetic).
        if i % 4096 == 4095 {
            tracker.finish_closed(u64::MAX, &mut rows);
        }
        if rows.len() >= 8192 {
            assert_eq!(rows.flush(&store), 0);
        }
    }
    tracker.finish_all_closed(&mut rows);
    assert_eq!(rows.flush(&store), 0);
    let full_s = start.elapsed().as_secs_f64();

    let stats = store.stats();
    let rows = |t: &str| stats[t].rows_held;
    assert_eq!(
        rows(schema::FLOWS),
        2 * n,
        "every connection gives two flows"
    );
    assert_eq!(
        rows(schema::TCP_EVENTS),
        12 * n,
        "every event but LISTEN gives a row"
    );

    (store, full_s)
}
