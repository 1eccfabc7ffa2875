use std::net::{IpAddr, Ipv4Addr};

use super::*;

const S: i64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z: wall-clock times as rows carry them.
const T0: i64 = 1_767_225_600 * S;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, 0, last))
}

fn pod(uid: &str, ns: &str, name: &str, ip_last: u8, created_ns: i64) -> PodFacts {
    PodFacts {
        uid: uid.into(),
        namespace: ns.into(),
        name: name.into(),
        created_ns,
        ips: vec![ip(ip_last)],
        ..PodFacts::default()
    }
}

fn owned(mut facts: PodFacts, kind: &str, name: &str) -> PodFacts {
    facts.owner = Some((kind.into(), name.into()));
    facts
}

fn ends(src: u8, sport: u16, dst: u8, dport: u16) -> Endpoints {
    Endpoints {
        src_ip: ip(src),
        src_port: sport,
        dst_ip: ip(dst),
        dst_port: dport,
    }
}

/// (pod, namespace, workload, workload_kind, service) of one end.
fn names(m: &EndMeta) -> [String; 5] {
    [
        &m.pod,
        &m.namespace,
        &m.workload,
        &m.workload_kind,
        &m.service,
    ]
    .map(|s| s.to_string())
}

fn end(pod: &str, ns: &str, workload: &str, kind: &str, service: &str) -> [String; 5] {
    [pod, ns, workload, kind, service].map(str::to_owned)
}

const NONE: [&str; 5] = ["", "", "", "", ""];

#[test]
fn both_ends_are_named_by_address_with_their_workloads() {
    let mut ix = Index::new(100);
    ix.apply_owner(
        Kind::ReplicaSet,
        ("shop".into(), "web-5d8f".into()),
        Some(("Deployment".into(), "web".into())),
    );
    ix.apply_pod(
        owned(
            pod("u1", "shop", "web-5d8f-abc", 1, T0),
            "ReplicaSet",
            "web-5d8f",
        ),
        T0,
    );
    ix.apply_pod(
        owned(pod("u2", "shop", "db-0", 2, T0), "StatefulSet", "db"),
        T0,
    );
    let e = ix.resolve(0, Role::Client, &ends(1, 40000, 2, 5432), T0 + 5 * S);
    assert_eq!(
        names(&e.src),
        end("web-5d8f-abc", "shop", "web", "Deployment", "")
    );
    assert_eq!(names(&e.dst), end("db-0", "shop", "db", "StatefulSet", ""));
    // The same row seen from the server.
    let e = ix.resolve(0, Role::Server, &ends(1, 40000, 2, 5432), T0 + 5 * S);
    assert_eq!(names(&e.dst), end("db-0", "shop", "db", "StatefulSet", ""));
    // An address outside the cluster.
    let outside = Endpoints {
        dst_ip: IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)),
        ..ends(1, 40000, 2, 443)
    };
    assert_eq!(
        names(&ix.resolve(0, Role::Client, &outside, T0 + S).dst),
        NONE.map(str::to_owned)
    );
}

#[test]
fn owners_resolve_to_the_top_workload() {
    let mut ix = Index::new(100);
    ix.apply_owner(
        Kind::Job,
        ("ops".into(), "backup-29000".into()),
        Some(("CronJob".into(), "backup".into())),
    );
    ix.apply_owner(Kind::Job, ("ops".into(), "migrate".into()), None);
    ix.apply_owner(Kind::ReplicaSet, ("ops".into(), "bare".into()), None);
    let mut unknown_rs = owned(
        pod("u4", "ops", "api-6c9b7-x", 4, T0),
        "ReplicaSet",
        "api-6c9b7",
    );
    unknown_rs.template_hash = Some("6c9b7".into());
    let pods = [
        owned(
            pod("u1", "ops", "backup-29000-q", 1, T0),
            "Job",
            "backup-29000",
        ),
        owned(pod("u2", "ops", "migrate-z", 2, T0), "Job", "migrate"),
        owned(pod("u3", "ops", "bare-k", 3, T0), "ReplicaSet", "bare"),
        unknown_rs,
        owned(pod("u5", "ops", "agent-n1", 5, T0), "DaemonSet", "agent"),
        pod("u6", "ops", "debug", 6, T0),
    ];
    for p in pods {
        ix.apply_pod(p, T0);
    }
    let workload = |last: u8| {
        let e = ix.resolve(0, Role::Client, &ends(last, 1, 99, 80), T0 + S);
        (e.src.workload.to_string(), e.src.workload_kind.to_string())
    };
    let w = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(workload(1), w("backup", "CronJob"));
    assert_eq!(workload(2), w("migrate", "Job"));
    assert_eq!(workload(3), w("bare", "ReplicaSet"));
    assert_eq!(workload(4), w("api", "Deployment"));
    assert_eq!(workload(5), w("agent", "DaemonSet"));
    assert_eq!(workload(6), w("debug", "Pod"));
}

#[test]
fn a_reused_ip_names_the_pod_that_held_it_at_the_row_time() {
    let mut ix = Index::new(100);
    ix.apply_pod(pod("a", "ns", "old", 7, T0), T0);
    // `old` is deleted at T0+10s; `new` is created (second resolution) at T0+10s and gets
    // the same IP at T0+11s.
    ix.delete_pod("a", T0 + 10 * S + S / 2);
    ix.apply_pod(
        PodFacts {
            ips: vec![],
            ..pod("b", "ns", "new", 7, T0 + 10 * S)
        },
        T0 + 10 * S + S / 2,
    );
    ix.apply_pod(pod("b", "ns", "new", 7, T0 + 10 * S), T0 + 11 * S);
    let at = |ts: i64| {
        ix.resolve(0, Role::Client, &ends(1, 1, 7, 80), ts)
            .dst
            .pod
            .to_string()
    };
    assert_eq!(at(T0 + 5 * S), "old");
    // Just before the deletion: still the old pod, though the new one was created "at
    // T0+10s - 1s slack".
    assert_eq!(at(T0 + 10 * S + S / 4), "old");
    assert_eq!(at(T0 + 10 * S + S / 2), "new");
    assert_eq!(at(T0 + 60 * S), "new");
    // Before the first pod existed, beyond the grace: nobody.
    assert_eq!(at(T0 - 10 * S), "");
    // Within the grace (clock skew): the nearest.
    assert_eq!(at(T0 - 2 * S), "old");
}

#[test]
fn an_ip_taken_over_before_the_deletion_arrives_ends_the_old_holding_then() {
    let mut ix = Index::new(100);
    ix.apply_pod(pod("a", "ns", "old", 7, T0), T0);
    ix.apply_pod(pod("b", "ns", "new", 7, T0 + 20 * S), T0 + 30 * S);
    let at = |ix: &Index, ts: i64| {
        ix.resolve(0, Role::Client, &ends(1, 1, 7, 80), ts)
            .dst
            .pod
            .to_string()
    };
    assert_eq!(at(&ix, T0 + 25 * S), "old");
    assert_eq!(at(&ix, T0 + 30 * S), "new");
    // The late deletion of `old` changes nothing.
    ix.delete_pod("a", T0 + 40 * S);
    assert_eq!(at(&ix, T0 + 25 * S), "old");
    assert_eq!(at(&ix, T0 + 45 * S), "new");
}

#[test]
fn histories_are_pruned_after_ten_minutes() {
    let mut ix = Index::new(100);
    ix.apply_pod(pod("a", "ns", "gone", 7, T0), T0);
    ix.delete_pod("a", T0 + S);
    // Pruning runs on pod updates, at most once a minute.
    ix.apply_pod(pod("c", "ns", "other", 8, T0), T0 + S + HISTORY_NS + 60 * S);
    assert!(!ix.ips.contains_key(&ip(7)));
    assert!(ix.ips.contains_key(&ip(8)));
}

#[test]
fn the_local_end_is_found_by_cgroup() {
    let mut ix = Index::new(100);
    let mut facts = pod("u1", "shop", "web-0", 1, T0);
    facts.container_ids = vec!["c1".into(), "c2".into()];
    ix.apply_pod(facts, T0);
    assert_eq!(ix.containers_without_cgroup(), 2);
    ix.apply_cgroup_scan(vec![("c1".into(), 4242), ("zz".into(), 77)]);
    assert_eq!(ix.containers_without_cgroup(), 1);
    assert_eq!(ix.cgroup_of("c1"), Some(4242));
    // The process is in web-0's container: its end is web-0 whatever its address (a client
    // behind a NAT, an address no pod has).
    let row = Endpoints {
        src_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9)),
        ..ends(0, 40000, 2, 80)
    };
    assert_eq!(
        &*ix.resolve(4242, Role::Client, &row, T0 + S).src.pod,
        "web-0"
    );
    assert_eq!(
        &*ix.resolve(4242, Role::Server, &row, T0 + S).dst.pod,
        "web-0"
    );
    assert_eq!(&*ix.resolve(4242, Role::Server, &row, T0 + S).src.pod, "");
    // Its Services are those of its own IP, not of the row's address.
    ix.apply_endpoints(
        ("shop".into(), "web".into()),
        ("shop".into(), "web".into()),
        vec![EndpointAddress {
            ip: ip(1),
            ports: vec![8080],
        }],
    );
    assert_eq!(
        &*ix.resolve(4242, Role::Client, &row, T0 + S).src.service,
        "web"
    );
    let only = |ns: &str| ix.cgroups_in_namespaces(&[ns.to_owned()].into_iter().collect());
    assert_eq!(only("shop"), [4242].into_iter().collect());
    assert_eq!(only("other"), HashSet::new());
    // A cgroup that is another container's, not a known pod's: nothing.
    assert_eq!(&*ix.resolve(77, Role::Client, &row, T0 + S).src.pod, "");
    // Containers of a pod learnt after the scan are matched with it.
    let mut late = pod("u9", "shop", "late-0", 9, T0);
    late.container_ids = vec!["zz".into()];
    ix.apply_pod(late, T0);
    assert_eq!(
        &*ix.resolve(77, Role::Client, &row, T0 + S).src.pod,
        "late-0"
    );
    ix.delete_pod("u9", T0 + 2 * S);
    assert_eq!(&*ix.resolve(77, Role::Client, &row, T0 + 3 * S).src.pod, "");
}

#[test]
fn services_by_cluster_ip_and_by_endpoints() {
    let mut ix = Index::new(100);
    ix.apply_pod(
        owned(pod("u1", "shop", "web-0", 1, T0), "StatefulSet", "web"),
        T0,
    );
    ix.apply_pod(
        owned(pod("u2", "shop", "db-0", 2, T0), "StatefulSet", "db"),
        T0,
    );
    let cluster_ip = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));
    ix.apply_service(("shop".into(), "db".into()), vec![cluster_ip]);
    ix.apply_endpoints(
        ("shop".into(), "db".into()),
        ("shop".into(), "db".into()),
        vec![EndpointAddress {
            ip: ip(2),
            ports: vec![5432],
        }],
    );
    ix.apply_endpoints(
        ("shop".into(), "web-x7k".into()),
        ("shop".into(), "web".into()),
        vec![EndpointAddress {
            ip: ip(1),
            ports: vec![8080],
        }],
    );
    // Dialled through the ClusterIP (the client's socket keeps it): the Service, no pod.
    let via_service = Endpoints {
        dst_ip: cluster_ip,
        ..ends(1, 40000, 0, 5432)
    };
    let e = ix.resolve(0, Role::Client, &via_service, T0 + S);
    assert_eq!(names(&e.dst), end("", "shop", "", "", "db"));
    assert_eq!(
        names(&e.src),
        end("web-0", "shop", "web", "StatefulSet", "web")
    );
    // The server saw the pod's own address: the Service whose endpoints hold it.
    let e = ix.resolve(0, Role::Server, &ends(1, 40000, 2, 5432), T0 + S);
    assert_eq!(
        names(&e.dst),
        end("db-0", "shop", "db", "StatefulSet", "db")
    );
    // The Service and its endpoints go away.
    ix.delete_service(&("shop".into(), "db".into()));
    ix.remove(Kind::Endpoints, "shop/db", T0 + 2 * S);
    let e = ix.resolve(0, Role::Client, &via_service, T0 + 3 * S);
    assert_eq!(names(&e.dst), NONE.map(str::to_owned));
    let e = ix.resolve(0, Role::Server, &ends(1, 40000, 2, 5432), T0 + 3 * S);
    assert_eq!(names(&e.dst), end("db-0", "shop", "db", "StatefulSet", ""));
    assert_eq!(ix.keys(Kind::Endpoints), vec!["shop/web-x7k".to_owned()]);
}

#[test]
fn host_network_pods_by_port_and_nodes_by_address() {
    let mut ix = Index::new(100);
    let node_ip = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 5));
    ix.apply_node("node-a".into(), vec![node_ip]);
    let mut exporter = owned(
        pod("u1", "mon", "node-exporter-a", 0, T0),
        "DaemonSet",
        "node-exporter",
    );
    exporter.ips = vec![node_ip];
    exporter.host_network = true;
    exporter.ports = vec![9100];
    ix.apply_pod(exporter, T0);
    ix.apply_endpoints(
        ("mon".into(), "node-exporter".into()),
        ("mon".into(), "node-exporter".into()),
        vec![EndpointAddress {
            ip: node_ip,
            ports: vec![9100],
        }],
    );
    let to = |port: u16| Endpoints {
        dst_ip: node_ip,
        ..ends(1, 40000, 0, port)
    };
    let e = ix.resolve(0, Role::Client, &to(9100), T0 + S);
    assert_eq!(
        names(&e.dst),
        end(
            "node-exporter-a",
            "mon",
            "node-exporter",
            "DaemonSet",
            "node-exporter"
        )
    );
    // Another port of the node: the node itself, and not the exporter's Service.
    let e = ix.resolve(0, Role::Client, &to(10250), T0 + S);
    assert_eq!(names(&e.dst), end("", "", "node-a", "Node", ""));
    ix.remove(Kind::Node, "node-a", T0 + S);
    let e = ix.resolve(0, Role::Client, &to(10250), T0 + S);
    assert_eq!(names(&e.dst), NONE.map(str::to_owned));
}

#[test]
fn the_bound_refuses_new_objects_and_counts_them() {
    let mut ix = Index::new(3);
    ix.apply_node("n".into(), vec![]);
    ix.apply_pod(pod("a", "ns", "a", 1, T0), T0);
    ix.apply_service(("ns".into(), "s".into()), vec![]);
    ix.apply_pod(pod("b", "ns", "b", 2, T0), T0);
    ix.apply_owner(Kind::Job, ("ns".into(), "j".into()), None);
    // Updates of held objects still apply.
    ix.apply_pod(pod("a", "ns", "a", 3, T0), T0 + S);
    assert_eq!(
        ix.counts(),
        IndexCounts {
            objects: 3,
            pods: 1,
            dropped: 2
        }
    );
    assert_eq!(
        &*ix.resolve(0, Role::Client, &ends(1, 1, 3, 80), T0 + 2 * S)
            .dst
            .pod,
        "a"
    );
    assert_eq!(
        &*ix.resolve(0, Role::Client, &ends(1, 1, 2, 80), T0 + 2 * S)
            .dst
            .pod,
        ""
    );
    // A relist that no longer has the pod removes it.
    let mut keys = ix.keys(Kind::Pod);
    keys.sort();
    assert_eq!(keys, vec!["a".to_owned()]);
    ix.remove(Kind::Pod, "a", T0 + 3 * S);
    assert_eq!(ix.counts().pods, 0);
}
