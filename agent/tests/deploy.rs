//! The Kubernetes deployment of `deploy/kubernetes/`: a real kube-apiserver (v1.20.2, from
//! `../shared/kube`) accepts every manifest, and what it stored is what the agent needs and no
//! more (read-only RBAC, not privileged, a memory limit that covers the flags). The DaemonSet's
//! flags are ones the agent binary knows, and the Grafana provisioning files name the plugin's
//! datasource type with settings the plugin reads.
//!
//! Needs root (the start script installs Debian's `etcd-server` if etcd is missing), curl,
//! openssl and xz. Nothing is skipped: a missing tool fails the test and names it.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

const APISERVER_PORT: &str = "16543";
const ETCD_PORT: &str = "23890";

/// The DaemonSet's container args, as `deploy/kubernetes/kindling.yaml` gives them.
const AGENT_ARGS: &[&str] = &[
    "--listen=0.0.0.0:50051",
    "--token-file=/etc/kindling/token",
    "--node-name=$(NODE_NAME)",
    "--cluster-name=$(KINDLING_CLUSTER)",
    "--memory-budget=256MiB",
    "--query-memory=128MiB",
    "--cgroup-root=/host/sys/fs/cgroup",
    "--history-dir=/var/lib/kindling/history",
    "--history-budget=10GiB",
];

/// Memory the agent process needs beyond its row budget and one query (ring buffers,
/// connection tables, threads); the container's limit must leave at least this.
const PROCESS_OVERHEAD: u64 = 128 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the agent crate sits in the repository")
        .to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The real kube-apiserver's scripts: `$KINDLING_KUBE_DIR` (scripts/test.sh finds it), else
/// `../shared/kube` beside the repository (the project's machines carry it there).
fn shared_kube() -> PathBuf {
    let dir = std::env::var_os("KINDLING_KUBE_DIR").map_or_else(
        || {
            repo()
                .parent()
                .expect("the repository has a parent directory")
                .join("shared/kube")
        },
        PathBuf::from,
    );
    for script in ["start-apiserver.sh", "stop-apiserver.sh"] {
        assert!(
            dir.join(script).is_file(),
            "{} is missing: this test needs the real kube-apiserver of ../shared/kube \
             (set KINDLING_KUBE_DIR to its directory; see ../shared/PLATFORM.md)",
            dir.join(script).display()
        );
    }
    dir
}

/// A kube-apiserver and its etcd, stopped (and their state removed) when dropped, a failed
/// assertion included.
#[derive(Debug)]
struct ApiServer {
    state: PathBuf,
    stop_script: PathBuf,
    server: String,
    token: String,
}

impl ApiServer {
    fn start() -> Self {
        let kube = shared_kube();
        for tool in ["curl", "openssl", "xz"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .expect("run sh")
                .success();
            assert!(
                found,
                "{tool} is missing: install it (apt-get install -y {tool})"
            );
        }
        let state = std::env::temp_dir().join(format!("kindling-deploy-{}", std::process::id()));
        // From here on, Drop stops whatever the script started, even if it fails half-way.
        let mut api = ApiServer {
            state,
            stop_script: kube.join("stop-apiserver.sh"),
            server: String::new(),
            token: String::new(),
        };
        let out = Command::new(kube.join("start-apiserver.sh"))
            .arg(&api.state)
            .args([APISERVER_PORT, ETCD_PORT])
            .output()
            .expect("run start-apiserver.sh");
        let log = |name: &str| std::fs::read_to_string(api.state.join(name)).unwrap_or_default();
        assert!(
            out.status.success(),
            "start-apiserver.sh failed ({}): {}\n--- etcd.log (tail)\n{}\n--- apiserver.log (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&log("etcd.log"), 20),
            tail(&log("apiserver.log"), 20),
        );
        let kubeconfig = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let text = read(Path::new(&kubeconfig));
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no `{key}` in {kubeconfig}:\n{text}"))
        };
        api.server = field("server:");
        api.token = field("token:");
        api
    }

    /// `curl` to the API server: the HTTP status and the body.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "-X", method, "-w", "\n%{http_code}"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token))
            .args(["-H", "Accept: application/json"]);
        if body.is_some() {
            cmd.args([
                "-H",
                "Content-Type: application/yaml",
                "--data-binary",
                "@-",
            ]);
        }
        let mut child = cmd
            .arg(format!("{}{path}", self.server))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl");
        let mut stdin = child.stdin.take().expect("curl's stdin");
        stdin
            .write_all(body.unwrap_or_default().as_bytes())
            .expect("write to curl");
        drop(stdin);
        let out = child.wait_with_output().expect("wait for curl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {method} {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl {method} {path}: no status in {stdout:?}"));
        (code, body.to_owned())
    }

    fn get(&self, path: &str) -> Value {
        let (code, body) = self.request("GET", path, None);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let pids: Vec<String> = ["apiserver.pid", "etcd.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.state.join(f)).ok())
            .map(|p| p.trim().to_owned())
            .collect();
        let _ = Command::new(&self.stop_script).arg(&self.state).status();
        // etcd writes into the state directory until it has exited.
        for _ in 0..100 {
            if pids
                .iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One YAML document of a manifest file, with the fields that place it in the API.
#[derive(Debug)]
struct Manifest {
    text: String,
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

/// A scalar as YAML writes it: without a trailing comment or quotes.
fn scalar(value: &str) -> String {
    let value = value.split(" #").next().unwrap_or_default().trim();
    value.trim_matches(['"', '\'']).to_owned()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The `key: value` pairs directly under the first mapping key `parent` found at indentation
/// `at` (`None`: the top level of the document).
fn children(text: &str, parent: Option<(&str, usize)>) -> BTreeMap<String, String> {
    let mut lines = text.lines().filter(|l| is_content(l)).peekable();
    let level = match parent {
        None => 0,
        Some((key, at)) => {
            let header = format!("{key}:");
            if !lines
                .by_ref()
                .any(|l| indent(l) == at && l.trim() == header)
            {
                return BTreeMap::new();
            }
            match lines.peek() {
                Some(first) if indent(first) > at => indent(first),
                _ => return BTreeMap::new(),
            }
        }
    };
    let mut found = BTreeMap::new();
    for line in lines.take_while(|l| indent(l) >= level) {
        if indent(line) == level
            && let Some((key, value)) = line.trim().split_once(':')
        {
            found.insert(key.trim().to_owned(), scalar(value));
        }
    }
    found
}

/// The documents of a multi-document YAML file (split on `---` lines), empty ones left out.
fn manifests(path: &Path) -> Vec<Manifest> {
    let text = read(path);
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().expect("one document at least");
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| d.lines().any(is_content))
        .map(|text| {
            let top = children(&text, None);
            let metadata = children(&text, Some(("metadata", 0)));
            let field = |map: &BTreeMap<String, String>, key: &str| {
                map.get(key).cloned().unwrap_or_else(|| {
                    panic!("a document of {} has no {key}:\n{text}", path.display())
                })
            };
            Manifest {
                api_version: field(&top, "apiVersion"),
                kind: field(&top, "kind"),
                name: field(&metadata, "name"),
                namespace: metadata.get("namespace").cloned(),
                text: text.clone(),
            }
        })
        .collect()
}

impl Manifest {
    /// The collection this kind is created in, and whether it is namespaced.
    fn resource(&self) -> (&'static str, bool) {
        match self.kind.as_str() {
            "Namespace" => ("namespaces", false),
            "ServiceAccount" => ("serviceaccounts", true),
            "Secret" => ("secrets", true),
            "Service" => ("services", true),
            "ClusterRole" => ("clusterroles", false),
            "ClusterRoleBinding" => ("clusterrolebindings", false),
            "DaemonSet" => ("daemonsets", true),
            other => panic!("kind {other} is new to this test: add its collection to resource()"),
        }
    }

    fn collection(&self) -> String {
        let group = if self.api_version.contains('/') {
            format!("/apis/{}", self.api_version)
        } else {
            format!("/api/{}", self.api_version)
        };
        let (plural, namespaced) = self.resource();
        match (namespaced, &self.namespace) {
            (true, Some(ns)) => format!("{group}/namespaces/{ns}/{plural}"),
            (true, None) => panic!(
                "{} {} is namespaced but names no metadata.namespace: `kubectl apply -f` \
                 would put it wherever the user's context points",
                self.kind, self.name
            ),
            (false, Some(ns)) => panic!(
                "{} {} is cluster-wide but names namespace {ns}",
                self.kind, self.name
            ),
            (false, None) => format!("{group}/{plural}"),
        }
    }

    fn url(&self) -> String {
        format!("{}/{}", self.collection(), self.name)
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}

/// Bytes of a Kubernetes quantity (`512Mi`) or an agent size (`256MiB`).
fn bytes(size: &str) -> u64 {
    let size = size.trim_end_matches('B');
    let (digits, unit) = size.split_at(
        size.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len()),
    );
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("not a size: {size}"));
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other} of {size} is new to this test"),
    }
}

fn kindling_yaml() -> PathBuf {
    repo().join("deploy/kubernetes/kindling.yaml")
}

#[test]
fn a_real_api_server_accepts_the_manifests_as_written() {
    let docs = manifests(&kindling_yaml());
    let kinds: Vec<&str> = docs.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "Service"
        ],
        "documents of {} (the Namespace first: the others go in it)",
        kindling_yaml().display()
    );
    // No Secret with a token is committed: the README says how to create it.
    assert!(!kinds.contains(&"Secret"));

    let api = ApiServer::start();
    for doc in &docs {
        let (code, body) = api.request("POST", &doc.collection(), Some(&doc.text));
        assert_eq!(
            code, 201,
            "{} {} refused by the API server: {body}",
            doc.kind, doc.name
        );
    }
    let by_kind = |kind: &str| {
        let doc = docs
            .iter()
            .find(|d| d.kind == kind)
            .expect("kind checked above");
        api.get(&doc.url())
    };

    // Read-only, on exactly the resources the agent watches.
    let role = by_kind("ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: BTreeSet<String> = strings(&rule["verbs"]).into_iter().collect();
        assert_eq!(
            verbs,
            ["get", "list", "watch"].map(String::from).into(),
            "a rule with other verbs: {rule}"
        );
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "{rule}"
        );
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                assert_ne!(resource, "*", "{rule}");
                granted.insert(format!("{group}/{resource}"));
            }
        }
    }
    // Exactly what agent/src/k8s/watch.rs watches: a pod's Deployment, StatefulSet, DaemonSet
    // or CronJob is named by the owner references of the pod, its ReplicaSet or its Job.
    let wanted: BTreeSet<String> = [
        "/pods",
        "/services",
        "/endpoints",
        "/nodes",
        "discovery.k8s.io/endpointslices",
        "apps/replicasets",
        "batch/jobs",
    ]
    .map(String::from)
    .into();
    assert_eq!(granted, wanted);

    let binding = by_kind("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let account = by_kind("ServiceAccount");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }])
    );

    let ds = by_kind("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{pod}");
    let agent = &containers[0];
    assert_eq!(strings(&agent["args"]), AGENT_ARGS);
    assert_eq!(
        agent["env"],
        serde_json::json!([
            {
                "name": "NODE_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}},
            },
            // value: "" as written; the API server leaves an empty value out.
            {"name": "KINDLING_CLUSTER"},
        ])
    );

    // Not privileged: all capabilities dropped, a listed few added back.
    let security = &agent["securityContext"];
    assert_ne!(security["privileged"], true, "{security}");
    assert!(!ds.to_string().contains("\"privileged\":true"), "{ds}");
    assert!(
        !read(&kindling_yaml()).contains("privileged: true"),
        "privileged: true in {}",
        kindling_yaml().display()
    );
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let added: BTreeSet<String> = strings(&security["capabilities"]["add"])
        .into_iter()
        .collect();
    assert_eq!(
        added,
        [
            "BPF",
            "PERFMON",
            "SYS_RESOURCE",
            "NET_ADMIN",
            "SYS_PTRACE",
            "DAC_READ_SEARCH",
            "SYS_ADMIN"
        ]
        .map(String::from)
        .into()
    );

    // The memory limit covers the row budget, one query and the process.
    let limit = agent["resources"]["limits"]["memory"]
        .as_str()
        .unwrap_or_else(|| panic!("no memory limit: {agent}"));
    let flag = |name: &str| {
        AGENT_ARGS
            .iter()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in the args"))
    };
    let needed = bytes(flag("--memory-budget")) + bytes(flag("--query-memory")) + PROCESS_OVERHEAD;
    assert!(
        bytes(limit) >= needed,
        "memory limit {limit} is below --memory-budget + --query-memory + 128Mi ({needed} bytes)"
    );
    assert_eq!(agent["resources"]["requests"]["memory"], limit);

    // The token Secret is where --token-file reads it.
    let token_volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v.get("secret").is_some())
        .unwrap_or_else(|| panic!("no Secret volume: {pod}"));
    assert_eq!(token_volume["secret"]["secretName"], "kindling-agent-token");
    let mount = agent["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == token_volume["name"])
        .expect("the Secret volume is mounted");
    let key = &token_volume["secret"]["items"][0];
    assert_eq!(key["key"], "token");
    assert_eq!(
        format!(
            "{}/{}",
            mount["mountPath"].as_str().unwrap(),
            key["path"].as_str().unwrap()
        ),
        flag("--token-file")
    );

    let service = by_kind("Service");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["spec"]["ports"][0]["port"], 50051);
    assert_eq!(service["spec"]["ports"][0]["name"], "flight");
    assert_eq!(
        service["spec"]["selector"], ds["spec"]["selector"]["matchLabels"],
        "the Service selects the agents"
    );
    assert_eq!(agent["ports"][0]["containerPort"], 50051);
    assert_eq!(flag("--listen"), "0.0.0.0:50051");
}

/// Fails while the agent lacks a flag the DaemonSet passes (it would exit at start with a
/// usage error on every node).
#[test]
fn every_daemonset_flag_is_one_the_agent_knows() {
    let manifest = read(&kindling_yaml());
    let listed: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|a| format!("--{}", scalar(a)))
        .collect();
    assert_eq!(
        listed,
        AGENT_ARGS,
        "the args of {}",
        kindling_yaml().display()
    );

    let out = Command::new(env!("CARGO_BIN_EXE_kindling-agent"))
        .arg("--help")
        .output()
        .expect("run kindling-agent --help");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = String::from_utf8_lossy(&out.stdout);
    let known: BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--"))
        .collect();
    let unknown: Vec<&str> = AGENT_ARGS
        .iter()
        .map(|a| a.split('=').next().unwrap())
        .filter(|flag| !known.contains(flag))
        .collect();
    assert!(
        unknown.is_empty(),
        "kindling-agent --help does not list {unknown:?}; it lists {known:?}"
    );
}

/// The `type:` of every datasource of a Grafana provisioning file.
fn datasource_types(path: &Path) -> Vec<String> {
    read(path)
        .lines()
        .filter(|l| is_content(l))
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("type:"))
        .map(scalar)
        .collect()
}

/// Field names of a TypeScript interface in `frontend/src/types.ts`.
fn interface_fields(types: &str, name: &str) -> BTreeSet<String> {
    let start = format!("export interface {name} ");
    let body = types
        .split_once(&start)
        .unwrap_or_else(|| panic!("no interface {name} in types.ts"))
        .1;
    let body = body.split_once("\n}").expect("the interface ends").0;
    body.lines()
        .filter(|l| indent(l) == 2 && !l.trim().starts_with(['/', '*']))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(field, _)| field.trim_end_matches('?').to_owned())
        .collect()
}

#[test]
fn the_grafana_provisioning_files_name_the_plugin_and_its_settings() {
    let plugin: Value = serde_json::from_str(&read(&repo().join("frontend/src/plugin.json")))
        .expect("plugin.json is JSON");
    let id = plugin["id"].as_str().expect("plugin.json has an id");
    let k8s = repo().join("deploy/kubernetes/grafana-datasource.yaml");
    for file in [&k8s, &repo().join("provisioning/datasources/kindling.yaml")] {
        assert_eq!(
            datasource_types(file),
            [id],
            "datasource types of {}",
            file.display()
        );
    }

    let text = read(&k8s);
    let types = read(&repo().join("frontend/src/types.ts"));
    let json_data = children(&text, Some(("jsonData", 4)));
    let known = interface_fields(&types, "KindlingOptions");
    let keys: BTreeSet<String> = json_data.keys().cloned().collect();
    assert!(keys.contains("agents"), "{keys:?}");
    assert!(
        keys.is_subset(&known),
        "jsonData {keys:?}, the plugin reads {known:?}"
    );
    let secure = children(&text, Some(("secureJsonData", 4)));
    let known = interface_fields(&types, "KindlingSecureOptions");
    assert_eq!(
        secure.get("token").map(String::as_str),
        Some("$KINDLING_TOKEN")
    );
    assert!(
        secure.keys().all(|k| known.contains(k)),
        "secureJsonData {secure:?}, the plugin reads {known:?}"
    );
    let agents: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "agents:")
        .skip(1)
        .take_while(|l| l.trim().starts_with("- "))
        .map(|l| l.trim().trim_start_matches("- "))
        .collect();
    assert_eq!(agents, ["kindling-agents.kindling.svc.cluster.local:50051"]);

    // That name is the headless Service of the manifests, on the agents' port.
    let service = manifests(&kindling_yaml())
        .into_iter()
        .find(|d| d.kind == "Service")
        .expect("a Service");
    let ns = service.namespace.as_deref().expect("namespaced");
    assert_eq!(
        agents[0],
        format!("{}.{ns}.svc.cluster.local:50051", service.name)
    );
}
