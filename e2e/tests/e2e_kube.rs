//! Kubernetes enrichment end to end: a real kube-apiserver (../shared/kube), "pods" made of
//! network namespaces and cgroup v2 directories on this machine whose IPs and container ids
//! are those of their Pod objects, real HTTP between them (python's http.server, curl), and
//! the agent with `--kubeconfig` naming both ends of every row.
//!
//! Ground truth is what the test writes to the API server: Pods (with owners, IPs and
//! container ids), ReplicaSets, Services with ClusterIPs and Endpoints. A ClusterIP is dialled
//! through an nftables DNAT rule in the client's namespace, as kube-proxy does.

use kindling_testkit as support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{
    host::{AgentProcess, Killed, require_root, tempdir, tool, wait_count},
    netlab::{Netns, sh},
};

const NS: &str = "kl-shop";
const NODE: &str = "kl-node-1";
const CLIENT_IP: &str = "10.250.77.1";
/// A second address of the client pod that no Pod object has: only its cgroup names it.
const CLIENT_ALIAS_IP: &str = "10.250.77.11";
const SERVER_IP: &str = "10.250.77.2";
/// A pod of namespace kl-private (`--no-payload-namespace`), in the client's network
/// namespace.
const PRIVATE_IP: &str = "10.250.77.21";
/// Rows of the test's pods, but the private one's.
const OURS: &str = "src_ip LIKE '10.250.77.%' AND src_ip <> '10.250.77.21'";
const DB_CLUSTER_IP: &str = "10.96.77.10";
const CACHE_CLUSTER_IP: &str = "10.96.77.11";
const WEB_CLUSTER_IP: &str = "10.96.77.12";
const APISERVER_PORT: u16 = 16473;
const ETCD_PORT: u16 = 23873;

/// The real kube-apiserver's scripts: `$KINDLING_KUBE_DIR` (scripts/test.sh finds it), else
/// `../shared/kube` beside the repository.
fn kube_dir() -> PathBuf {
    std::env::var_os("KINDLING_KUBE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/kube"),
        PathBuf::from,
    )
}

/// The API server of ../shared/kube, stopped on drop.
struct ApiServer {
    state: PathBuf,
    url: String,
    token: String,
}

impl ApiServer {
    fn start(state: &Path) -> Self {
        let script = kube_dir().join("start-apiserver.sh");
        assert!(
            script.exists(),
            "{} is missing: the Kubernetes tests need the real kube-apiserver of ../shared/kube \
             (set KINDLING_KUBE_DIR to its directory)",
            script.display()
        );
        let out = Command::new(&script)
            .arg(state)
            .arg(APISERVER_PORT.to_string())
            .arg(ETCD_PORT.to_string())
            .output()
            .expect("run start-apiserver.sh");
        assert!(
            out.status.success(),
            "start-apiserver.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = std::fs::read_to_string(state.join("kubeconfig")).unwrap();
        let field = |name: &str| {
            kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in kubeconfig"))
                .trim()
                .to_owned()
        };
        Self {
            state: state.to_owned(),
            url: field("server:"),
            token: field("token:"),
        }
    }

    fn kubeconfig(&self) -> String {
        self.state.join("kubeconfig").display().to_string()
    }

    /// The kube-apiserver process (etcd stays up).
    fn apiserver_pid(&self) -> i32 {
        std::fs::read_to_string(self.state.join("apiserver.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends `body` with `method` to `path`; returns the HTTP status and the JSON answer.
    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "-X", method, "-w", "\n%{http_code}"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token))
            .arg("-H")
            .arg(format!("Content-Type: {content_type}"))
            .arg(format!("{}{path}", self.url));
        if let Some(b) = body {
            cmd.arg("--data-binary").arg(b.to_string());
        }
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (json, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code: u16 = code.trim().parse().unwrap_or(0);
        (code, serde_json::from_str(json).unwrap_or(Value::Null))
    }

    fn create(&self, path: &str, body: Value) {
        let (code, answer) = self.call("POST", path, "application/json", Some(&body));
        assert_eq!(code, 201, "POST {path}: {answer}");
    }

    fn merge_patch(&self, path: &str, body: Value) {
        let (code, answer) = self.call("PATCH", path, "application/merge-patch+json", Some(&body));
        assert_eq!(code, 200, "PATCH {path}: {answer}");
    }

    fn delete(&self, path: &str) {
        let body = json!({"gracePeriodSeconds": 0});
        let (code, answer) = self.call("DELETE", path, "application/json", Some(&body));
        assert_eq!(code, 200, "DELETE {path}: {answer}");
    }

    /// A Pod on NODE in namespace NS, owned by `owner` (kind, name), with one container per id, then its
    /// status: its IP and container ids, as a kubelet would report them.
    fn pod(
        &self,
        name: &str,
        owner: Option<(&str, &str)>,
        labels: Value,
        ip: &str,
        container_id: &str,
    ) {
        self.pod_in(NS, name, owner, labels, ip, container_id);
    }

    /// As [`ApiServer::pod`], in namespace `ns`.
    fn pod_in(
        &self,
        ns: &str,
        name: &str,
        owner: Option<(&str, &str)>,
        labels: Value,
        ip: &str,
        container_id: &str,
    ) {
        let mut metadata = json!({"name": name, "namespace": ns, "labels": labels});
        if let Some((kind, owner_name)) = owner {
            let api = if kind == "ReplicaSet" || kind == "StatefulSet" {
                "apps/v1"
            } else {
                "v1"
            };
            metadata["ownerReferences"] = json!([{
                "apiVersion": api, "kind": kind, "name": owner_name,
                "uid": format!("uid-{owner_name}"), "controller": true
            }]);
        }
        self.create(
            &format!("/api/v1/namespaces/{ns}/pods"),
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                "spec": {"nodeName": NODE, "containers": [{
                    "name": "main", "image": "example/app",
                    "ports": [{"containerPort": 8080}]
                }]}
            }),
        );
        self.merge_patch(
            &format!("/api/v1/namespaces/{ns}/pods/{name}/status"),
            json!({"status": {
                "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "containerStatuses": [{
                    "name": "main", "containerID": format!("containerd://{container_id}"),
                    "image": "example/app", "imageID": "", "ready": true, "restartCount": 0,
                    "state": {"running": {}}
                }]
            }}),
        );
    }

    fn service(&self, name: &str, cluster_ip: &str, port: u16) {
        self.create(
            &format!("/api/v1/namespaces/{NS}/services"),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"clusterIP": cluster_ip, "ports": [{"port": port, "targetPort": 8080}]}
            }),
        );
    }

    /// The Endpoints of Service `name`: `ips` on port 8080 (none: an empty object).
    fn endpoints(&self, name: &str, ips: &[&str], create: bool) {
        let subsets = if ips.is_empty() {
            json!([])
        } else {
            json!([{
                "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "ports": [{"port": 8080}]
            }])
        };
        let body = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": NS}, "subsets": subsets
        });
        if create {
            self.create(&format!("/api/v1/namespaces/{NS}/endpoints"), body);
        } else {
            let path = format!("/api/v1/namespaces/{NS}/endpoints/{name}");
            let (code, answer) = self.call("PUT", &path, "application/json", Some(&body));
            assert_eq!(code, 200, "PUT {path}: {answer}");
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let stop = kube_dir().join("stop-apiserver.sh");
        let _ = Command::new(stop).arg(&self.state).output();
    }
}

/// A container's cgroup: `.../kubepods/pod<uid>/cri-containerd-<id>.scope` under the test's
/// own directory of the cgroup v2 tree.
struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    fn new(root: &Path, pod_dir: &str, container_id: &str) -> Self {
        let path = root
            .join(pod_dir)
            .join(format!("cri-containerd-{container_id}.scope"));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// `cmd` run in this cgroup and in network namespace `netns` (the cgroup first:
    /// `ip netns exec` remounts /sys).
    fn command(&self, netns: &str, cmd: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "echo $$ > {}/cgroup.procs && exec ip netns exec {netns} {cmd}",
            self.path.display()
        ));
        c
    }
}

/// Removes the test's cgroup tree (children first) once its processes are gone.
struct CgroupTree(PathBuf);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "find {} -depth -type d -exec rmdir {{}} \\; 2>/dev/null",
                    self.0.display()
                ),
            ])
            .status();
    }
}

/// A 64-hex container id unique to this run.
fn container_id(n: u32) -> String {
    format!("{:056x}{n:08x}", u64::from(std::process::id()) << 20)
}

/// One HTTP GET by curl in a pod of network namespace kl-kube-a (optionally from its `source`
/// address); must answer 200.
fn get(client: &Cgroup, url: &str, source: Option<&str>) {
    let from = source
        .map(|s| format!("--interface {s} "))
        .unwrap_or_default();
    let out = client
        .command(
            "kl-kube-a",
            &format!("curl -sS -o /dev/null -w %{{http_code}} {from}{url}"),
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The server pod's HTTP server (python's http.server, HTTP/1.0: one connection per call).
fn http_server(cgroup: &Cgroup, dir: &Path) -> Killed {
    let child = cgroup
        .command(
            "kl-kube-b",
            &format!(
                "python3 -m http.server 8080 --bind {SERVER_IP} --directory {}",
                dir.display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready when it accepts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sh("ip netns exec kl-kube-b ss -ltnH 'sport = :8080'").contains("8080") {
        assert!(Instant::now() < deadline, "http.server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

/// One number from agent_stats.
fn stat(agent: &AgentProcess, column: &str) -> Value {
    agent.query_json(&format!("SELECT {column} AS v FROM agent_stats LIMIT 1"))[0]["v"].clone()
}

/// Polls until `ok(value of column)`, at most `secs`.
fn wait_stat(agent: &AgentProcess, column: &str, secs: u64, ok: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = stat(agent, column);
        if ok(&v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent_stats.{column} is still {v} after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rows of `table` matching `filter`, grouped by `columns` (comma-separated) as text tuples
/// in that order, with their counts.
fn grouped(
    agent: &AgentProcess,
    columns: &str,
    table: &str,
    filter: &str,
) -> BTreeMap<String, u64> {
    let names: Vec<&str> = columns.split(',').map(str::trim).collect();
    agent
        .query_json(&format!(
            "SELECT {columns}, count(*) AS n FROM {table} WHERE {filter} GROUP BY {columns}"
        ))
        .into_iter()
        .map(|row| {
            let key = names
                .iter()
                .map(|c| {
                    let v = &row[*c];
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join(" | ");
            (key, row["n"].as_u64().unwrap())
        })
        .collect()
}

const ENDS: &str = "role, src_ip, dst_ip, dst_port, \
    src_pod, src_namespace, src_workload, src_workload_kind, src_service, \
    dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_service";

fn expected(rows: &[(&str, u64)]) -> BTreeMap<String, u64> {
    rows.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[test]
fn rows_name_pods_workloads_and_services_on_both_ends() {
    require_root();
    for t in ["curl", "python3", "nft", "ip", "ss", "dnsmasq", "dig"] {
        tool(t);
    }
    let state = tempdir("kl-kube");
    let api = ApiServer::start(&state);

    // Two pods on one veth pair: a (client, 10.250.77.1 and .11) and b (server, .2).
    let _netns = (
        Netns::new("kl-kube-a".into()),
        Netns::new("kl-kube-b".into()),
    );
    sh("ip link add klk-a netns kl-kube-a type veth peer name klk-b netns kl-kube-b");
    sh(&format!(
        "ip -n kl-kube-a addr add {CLIENT_IP}/24 dev klk-a && ip -n kl-kube-a addr add {CLIENT_ALIAS_IP}/24 dev klk-a \
         && ip -n kl-kube-a addr add {PRIVATE_IP}/24 dev klk-a \
         && ip -n kl-kube-a link set klk-a up \
         && ip -n kl-kube-a route add 10.96.77.0/24 dev klk-a \
         && ip -n kl-kube-b addr add {SERVER_IP}/24 dev klk-b && ip -n kl-kube-b link set klk-b up"
    ));
    // kube-proxy's part: the ClusterIPs DNAT'ed to the server pod, in the client's namespace.
    sh(&format!(
        "ip netns exec kl-kube-a nft -f - <<'EOF'
table ip kl_kube {{
  chain out {{
    type nat hook output priority -100;
    ip daddr {DB_CLUSTER_IP} tcp dport 80 dnat to {SERVER_IP}:8080
    ip daddr {CACHE_CLUSTER_IP} tcp dport 80 dnat to {SERVER_IP}:8080
  }}
}}
EOF"
    ));

    let cg_root = PathBuf::from("/sys/fs/cgroup/unified");
    assert!(
        cg_root.join("cgroup.procs").exists(),
        "cgroup v2 is not at {}",
        cg_root.display()
    );
    let tree = cg_root.join(format!("kindling-e2e-kube-{}", std::process::id()));
    let _tree = CgroupTree(tree.clone());
    let (id_a, id_b1, id_b2) = (container_id(1), container_id(2), container_id(3));
    let cg_a = Cgroup::new(&tree, "kubepods/poda", &id_a);
    let cg_b1 = Cgroup::new(&tree, "kubepods/podb1", &id_b1);
    let cg_b2 = Cgroup::new(&tree, "kubepods/podb2", &id_b2);
    let id_p = container_id(4);
    let cg_p = Cgroup::new(&tree, "kubepods/podp", &id_p);

    // The cluster: web (a Deployment's pod, through its ReplicaSet), db-0 (a StatefulSet's),
    // Services web and db with their Endpoints.
    api.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    api.create(
        &format!("/apis/apps/v1/namespaces/{NS}/replicasets"),
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-7c9d", "namespace": NS, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": "uid-web", "controller": true
            }]},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "main", "image": "example/app"}]}}
            }
        }),
    );
    api.pod(
        "web-7c9d-a1",
        Some(("ReplicaSet", "web-7c9d")),
        json!({"app": "web"}),
        CLIENT_IP,
        &id_a,
    );
    api.pod(
        "db-0",
        Some(("StatefulSet", "db")),
        json!({"app": "db"}),
        SERVER_IP,
        &id_b1,
    );
    api.service("web", WEB_CLUSTER_IP, 80);
    api.endpoints("web", &[CLIENT_IP], true);
    api.service("db", DB_CLUSTER_IP, 80);
    api.endpoints("db", &[SERVER_IP], true);
    // A pod whose payload the agent must not capture: its namespace is excluded.
    api.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kl-private"}}),
    );
    api.pod_in("kl-private", "secret-0", None, json!({}), PRIVATE_IP, &id_p);

    let kubeconfig = api.kubeconfig();
    let agent = AgentProcess::start(
        NODE,
        &[
            "--kubeconfig",
            &kubeconfig,
            "--cgroup-root",
            "/sys/fs/cgroup/unified",
            "--no-payload-namespace",
            "kl-private",
        ],
    );
    wait_stat(&agent, "kubernetes_status", 30, |v| v == "synced");
    assert_eq!(stat(&agent, "kubernetes_pods"), json!(3));
    // Objects: 3 pods, 3 Services (with the API server's own `kubernetes`), 2 Endpoints, 1
    // ReplicaSet.
    assert_eq!(stat(&agent, "kubernetes_objects"), json!(9));
    // The private pod's container, once its cgroup was found.
    wait_stat(&agent, "kubernetes_payload_excluded", 10, |v| {
        v == &json!(1)
    });
    assert_eq!(stat(&agent, "kubernetes_objects_dropped"), json!(0));

    // Phase 1: db-0 serves. 3 calls through db's ClusterIP, 2 to the pod's IP, 1 from the
    // client's second address.
    let www = tempdir("kl-kube-www");
    let server = http_server(&cg_b1, &www);
    // The agent's first cgroup walk ran at start; give it the server's (already made) cgroup.
    for _ in 0..3 {
        get(&cg_a, &format!("http://{DB_CLUSTER_IP}/"), None);
    }
    for _ in 0..2 {
        get(&cg_a, &format!("http://{SERVER_IP}:8080/"), None);
    }
    get(
        &cg_a,
        &format!("http://{SERVER_IP}:8080/"),
        Some(CLIENT_ALIAS_IP),
    );
    let ours = &format!("protocol = 'http' AND {OURS}");
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE {ours}"),
        12,
    );
    // The private pod calls db-0: the server's end gives its call; the private end gives its
    // connection (flows) but no byte of payload, so no call.
    get(
        &cg_p,
        &format!("http://{SERVER_IP}:8080/"),
        Some(PRIVATE_IP),
    );
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM flows WHERE src_ip = '{PRIVATE_IP}'"),
        2,
    );
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE src_ip = '{PRIVATE_IP}'"),
        1,
    );
    let private = grouped(
        &agent,
        "role, src_pod, src_namespace, src_workload_kind, dst_pod",
        "calls",
        &format!("src_ip = '{PRIVATE_IP}'"),
    );
    assert_eq!(
        private,
        expected(&[("server | secret-0 | kl-private | Pod | db-0", 1)])
    );
    let private = grouped(
        &agent,
        "role, src_pod, src_namespace, dst_pod",
        "flows",
        &format!("src_ip = '{PRIVATE_IP}'"),
    );
    assert_eq!(
        private,
        expected(&[
            ("client | secret-0 | kl-private | db-0", 1),
            ("server | secret-0 | kl-private | db-0", 1),
        ]),
    );
    drop(server);

    // Phase 2: db-0 is deleted and its IP goes to a new pod of another workload (a
    // Deployment's, whose ReplicaSet the agent never saw), behind Service cache.
    let updates = stat(&agent, "kubernetes_updates").as_u64().unwrap();
    api.delete(&format!("/api/v1/namespaces/{NS}/pods/db-0"));
    api.endpoints("db", &[], false);
    api.pod(
        "cache-5f7b-x2",
        Some(("ReplicaSet", "cache-5f7b")),
        json!({"app": "cache", "pod-template-hash": "5f7b"}),
        SERVER_IP,
        &id_b2,
    );
    api.service("cache", CACHE_CLUSTER_IP, 80);
    api.endpoints("cache", &[SERVER_IP], true);
    // delete, endpoints update, create, status, service, endpoints.
    wait_stat(&agent, "kubernetes_updates", 20, |v| {
        v.as_u64().unwrap() >= updates + 6
    });
    let server = http_server(&cg_b2, &www);
    for _ in 0..2 {
        get(&cg_a, &format!("http://{SERVER_IP}:8080/"), None);
    }
    // A DNS server in the new pod, asked once by the client pod.
    let dnsmasq = Killed(
        cg_b2
            .command(
                "kl-kube-b",
                &format!(
                    "dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
                     --user=root --pid-file= --listen-address={SERVER_IP} \
                     --address=/web.kl.test/10.250.77.1"
                ),
            )
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sh("ip netns exec kl-kube-b ss -lunH 'sport = :53'").contains(":53") {
        assert!(Instant::now() < deadline, "dnsmasq did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = cg_a
        .command(
            "kl-kube-a",
            &format!("dig @{SERVER_IP} web.kl.test +short +tries=1 +time=2"),
        )
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "10.250.77.1\n");
    drop(dnsmasq);
    wait_count(
        &agent,
        "SELECT count(*) AS n FROM dns WHERE domain = 'web.kl.test'",
        1,
    );
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE {ours}"),
        16,
    );

    // Phase 3: the API server goes away; the agent keeps serving with what it knew.
    let apiserver = api.apiserver_pid();
    let cmdline = std::fs::read(format!("/proc/{apiserver}/cmdline")).unwrap();
    // SAFETY: plain kill(2).
    unsafe { libc::kill(apiserver, libc::SIGKILL) };
    wait_stat(&agent, "kubernetes_status", 60, |v| {
        v.as_str().is_some_and(|s| s.starts_with("unreachable"))
    });
    for _ in 0..2 {
        get(&cg_a, &format!("http://{SERVER_IP}:8080/"), None);
    }
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE {ours}"),
        20,
    );
    drop(server);

    let web = "web-7c9d-a1 | kl-shop | web | Deployment | web";
    let db0 = "db-0 | kl-shop | db | StatefulSet | db";
    let cache = "cache-5f7b-x2 | kl-shop | cache | Deployment | cache";
    let none = " |  |  |  | ";
    let calls = grouped(&agent, ENDS, "calls", ours);
    assert_eq!(
        calls,
        expected(&[
            // Through the ClusterIP: the client's socket keeps it; the Service, no pod.
            (
                &format!(
                    "client | {CLIENT_IP} | {DB_CLUSTER_IP} | 80 | {web} |  | kl-shop |  |  | db"
                ),
                3
            ),
            (
                &format!("client | {CLIENT_IP} | {SERVER_IP} | 8080 | {web} | {db0}"),
                2
            ),
            // From an address no pod has: the client's end is named by its cgroup, the
            // server cannot tell who it is.
            (
                &format!("client | {CLIENT_ALIAS_IP} | {SERVER_IP} | 8080 | {web} | {db0}"),
                1
            ),
            (
                &format!("server | {CLIENT_IP} | {SERVER_IP} | 8080 | {web} | {db0}"),
                5
            ),
            (
                &format!("server | {CLIENT_ALIAS_IP} | {SERVER_IP} | 8080 | {none} | {db0}"),
                1
            ),
            // The same IP, a new pod: phase 2 and, API server gone, phase 3.
            (
                &format!("client | {CLIENT_IP} | {SERVER_IP} | 8080 | {web} | {cache}"),
                4
            ),
            (
                &format!("server | {CLIENT_IP} | {SERVER_IP} | 8080 | {web} | {cache}"),
                4
            ),
        ]),
    );
    // Every row names its process's cgroup: the containers' scopes.
    let scope = |pod: &str, id: &str| {
        format!(
            "/kindling-e2e-kube-{}/kubepods/{pod}/cri-containerd-{id}.scope",
            std::process::id()
        )
    };
    assert_eq!(
        grouped(&agent, "role, cgroup", "calls", ours),
        expected(&[
            (&format!("client | {}", scope("poda", &id_a)), 10),
            (&format!("server | {}", scope("podb1", &id_b1)), 6),
            (&format!("server | {}", scope("podb2", &id_b2)), 4),
        ]),
    );
    // Flows and TCP events carry the same names (one flow per call: HTTP/1.0).
    let flows = grouped(
        &agent,
        "role, dst_port, src_pod, src_workload, dst_pod, dst_workload, dst_service",
        "flows",
        &format!("{OURS} AND status = 'closed'"),
    );
    assert_eq!(
        flows,
        expected(&[
            ("client | 80 | web-7c9d-a1 | web |  |  | db", 3),
            ("client | 8080 | web-7c9d-a1 | web | db-0 | db | db", 3),
            (
                "client | 8080 | web-7c9d-a1 | web | cache-5f7b-x2 | cache | cache",
                4
            ),
            ("server | 8080 | web-7c9d-a1 | web | db-0 | db | db", 5),
            ("server | 8080 |  |  | db-0 | db | db", 1),
            (
                "server | 8080 | web-7c9d-a1 | web | cache-5f7b-x2 | cache | cache",
                4
            ),
        ]),
    );
    // The DNS server's own address belongs to its pod's Service whatever the port.
    let dns = grouped(
        &agent,
        "client_ip, server_ip, rcode, src_pod, src_workload, src_service, dst_pod, dst_workload_kind, dst_service",
        "dns",
        "domain = 'web.kl.test'",
    );
    assert_eq!(
        dns,
        expected(&[(
            &format!(
                "{CLIENT_IP} | {SERVER_IP} | NOERROR | web-7c9d-a1 | web | web | cache-5f7b-x2 | Deployment | cache"
            ),
            1
        )]),
    );
    let accepts = grouped(
        &agent,
        "src_pod, dst_pod, dst_workload_kind",
        "tcp_events",
        &format!("event = 'accept' AND {OURS}"),
    );
    assert_eq!(
        accepts,
        expected(&[
            ("web-7c9d-a1 | db-0 | StatefulSet", 5),
            (" | db-0 | StatefulSet", 1),
            ("web-7c9d-a1 | cache-5f7b-x2 | Deployment", 4),
        ]),
    );

    // The API server comes back (same etcd, same token): the watchers resume, and a change
    // made since is followed.
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let log = std::fs::File::create(state.join("apiserver-2.log")).unwrap();
    let restarted = Command::new(&args[0])
        .args(&args[1..])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(state.join("apiserver.pid"), restarted.id().to_string()).unwrap();
    let _restarted = Killed(restarted);
    wait_stat(&agent, "kubernetes_status", 30, |v| v == "synced");
    let objects = stat(&agent, "kubernetes_objects").as_u64().unwrap();
    api.service("late", "10.96.77.13", 80);
    // The watchers' backoff grew while the API server was away (at most 30 s).
    wait_stat(&agent, "kubernetes_objects", 60, |v| {
        v.as_u64() == Some(objects + 1)
    });
}
