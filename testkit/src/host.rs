//! Real processes for end-to-end tests: the agent binary with its eBPF programs, and the plugin
//! binary spoken to as Grafana does ("Grafana host emulation", never a real Grafana).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Cursor},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use datafusion::arrow::{ipc::reader::FileReader, record_batch::RecordBatch};
use grafana_plugin_sdk::pluginv2::{
    self, data_client::DataClient, diagnostics_client::DiagnosticsClient,
    resource_client::ResourceClient,
};

/// Fails the test unless it runs as root (the agent loads eBPF programs).
pub fn require_root() {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and must run as root (sudo scripts/test.sh)"
    );
}

/// Fails the test unless `name` is on PATH (scripts/setup.sh installs every tool the tests use).
pub fn tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is required (scripts/setup.sh installs it)"
    );
}

/// Path of a test fixture (`plugin-backend/tests/fixtures`, beside the coordinator's tests
/// that read them too; scripts/run.sh uses them as well).
pub fn fixture(name: &str) -> String {
    format!(
        "{}/../plugin-backend/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Starts a fixture server that prints "port P" first; returns it and P.
pub fn start_server(cmd: &mut Command) -> (Killed, u16) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("port ")
        .expect("port line")
        .parse()
        .unwrap();
    (Killed(child), port)
}

/// A child process killed when the test ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Path of a binary of this workspace (`kindling`, `gpx_kindling`, `kindling-agent`): in the
/// profile directory of the running test executable (`target/<profile>/deps/<test>`). Cargo
/// builds a package's binaries for its own integration tests only, so a test of another
/// package relies on the workspace build (`cargo test` of the workspace, as scripts/test.sh
/// runs it); a missing binary fails the test, saying so.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo test --no-run, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `kindling` CLI with `args`, not started yet.
pub fn kindling<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut cmd = Command::new(workspace_bin("kindling"));
    cmd.args(args);
    cmd
}

/// `kindling-agent ARGS`, not started.
pub fn agent_command<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut cmd = Command::new(workspace_bin("kindling-agent"));
    cmd.args(args);
    cmd
}

/// Runs `cmd` off the async runtime (in-process agents keep serving meanwhile).
pub async fn output(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("spawn"))
        .await
        .unwrap()
}

/// Asserts that the process exited with `code`, showing its stderr otherwise.
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh directory under /tmp, removed when it is dropped (declare it before the servers
/// using it, so that they are dropped first).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty directory named after `prefix` and this process.
pub fn tempdir(prefix: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A running `kindling-agent`, killed (SIGKILL) if the test ends without stopping it.
pub struct AgentProcess {
    pub addr: String,
    child: Option<Child>,
}

impl AgentProcess {
    /// Starts the agent on a free loopback port and waits until it answers queries.
    pub fn start(node: &str, extra_args: &[&str]) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(workspace_bin("kindling-agent"))
            .args(["--listen", &addr, "--node-name", node, "--flush-ms", "50"])
            .args(extra_args)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kindling-agent");
        let agent = Self {
            addr,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = agent.cli(&["health", "--agent", &agent.addr]);
            if out.status.success() {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not become healthy: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs the `kindling` CLI.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        kindling(args).output().expect("run kindling")
    }

    /// Runs a query through the CLI and returns its JSON rows; panics on failure.
    pub fn query_json(&self, sql: &str) -> Vec<serde_json::Value> {
        let out = self.cli(&["query", "--agent", &self.addr, "--format", "json", sql]);
        assert!(
            out.status.success(),
            "query failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("agent running");
        // SAFETY: plain kill(2) on our child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    }

    /// Sends SIGKILL (no chance to clean up, as a crash) and waits for the process to end.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Returns once the agent has taken in and stored everything the kernel reported before
    /// this call: a marker connection on loopback, opened and closed now, reaches the rings
    /// after every earlier event, and its two `flows` rows (client and server) are written
    /// only after its CLOSE was drained and the 100 ms close hold passed, by which time the
    /// rounds have drained everything before it. The marker's rows name a port of its own, so
    /// queries of other ports never see them.
    pub fn barrier(&self) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a marker port");
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("marker connect");
        let (server, _) = listener.accept().expect("marker accept");
        drop((client, server, listener));
        let sql = format!("SELECT count(*) AS n FROM flows WHERE dst_port = {port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.query_json(&sql)[0]["n"].as_u64() != Some(2) {
            assert!(
                Instant::now() < deadline,
                "the marker connection on port {port} has no flows rows after 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until at least `n` of the agent's query threads are running on a CPU (state R in
    /// /proc): queries are then executing, not merely sent.
    pub fn wait_queries_running(&self, n: usize) {
        let tasks = format!("/proc/{}/task", self.pid());
        let running = || {
            std::fs::read_dir(&tasks)
                .expect("the agent's /proc tasks")
                .filter_map(|t| {
                    let stat = std::fs::read_to_string(t.ok()?.path().join("stat")).ok()?;
                    // pid (comm) state ...: comm is in parentheses and may hold spaces.
                    let (comm, rest) = stat.split_once('(')?.1.rsplit_once(')')?;
                    (comm == "query" && rest.trim_start().starts_with('R')).then_some(())
                })
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = running();
            if now >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{now} of {n} query threads running after 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("agent did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `sql` (one row, column `n`) until it is `want`, then checks that it stays there;
/// fails past 20 s (printing the agent's `agent_stats` and `protocol_stats`) or above `want`.
pub fn wait_count(agent: &AgentProcess, sql: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = agent.query_json(sql)[0]["n"].as_u64().unwrap();
        assert!(n <= want, "{n} rows, more than {want}: {sql}");
        if n == want {
            // A late duplicate would show within a flush or two.
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(agent.query_json(sql)[0]["n"].as_u64(), Some(want), "{sql}");
            return;
        }
        if Instant::now() >= deadline {
            // What the agent counted (drops by cause, parsers' unmatched and resynced): the
            // first thing to read when a count falls short.
            for table in ["agent_stats", "protocol_stats"] {
                let rows = agent.query_json(&format!("SELECT * FROM {table}"));
                eprintln!("{table} at the timeout: {rows:?}");
            }
        }
        assert!(Instant::now() < deadline, "{n} of {want} after 20 s: {sql}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A datasource's settings as Grafana sends them.
pub struct Datasource {
    /// `jsonData`.
    pub json_data: serde_json::Value,
    /// `secureJsonData`, decrypted.
    pub secure_json_data: HashMap<String, String>,
}

impl Datasource {
    /// A datasource with only `agents`.
    pub fn agents(agents: &[&str]) -> Self {
        Self {
            json_data: serde_json::json!({ "agents": agents }),
            secure_json_data: HashMap::new(),
        }
    }
}

/// `gpx_kindling` started the way Grafana starts a backend plugin.
pub struct GrafanaHost {
    child: Child,
    pub endpoint: String,
}

impl GrafanaHost {
    /// Spawns the plugin with Grafana's go-plugin environment and reads its handshake line.
    pub fn start() -> Self {
        let mut child = Command::new(workspace_bin("gpx_kindling"))
            .env("grafana_plugin_type", "datasource")
            .env("PLUGIN_PROTOCOL_VERSIONS", "2")
            .env("GF_PLUGIN_APP_CLIENT_SECRET", "")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gpx_kindling");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        // go-plugin handshake: CORE-PROTOCOL-VERSION|APP-PROTOCOL-VERSION|NETWORK|ADDR|PROTOCOL
        let parts: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(parts.len(), 5, "handshake line: {line:?}");
        assert_eq!(
            (parts[0], parts[1], parts[2], parts[4]),
            ("1", "2", "tcp", "grpc")
        );
        Self {
            child,
            endpoint: format!("http://{}", parts[3]),
        }
    }

    fn context(ds: &Datasource) -> pluginv2::PluginContext {
        pluginv2::PluginContext {
            org_id: 1,
            plugin_id: "kindling-ebpf-datasource".into(),
            data_source_instance_settings: Some(pluginv2::DataSourceInstanceSettings {
                id: 1,
                uid: "kindling".into(),
                name: "Kindling".into(),
                json_data: serde_json::to_vec(&ds.json_data).unwrap(),
                decrypted_secure_json_data: ds.secure_json_data.clone(),
                last_updated_ms: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// QueryData with one query per (refId, query JSON).
    pub async fn query_data(
        &self,
        agents: &[&str],
        queries: &[(&str, serde_json::Value)],
    ) -> HashMap<String, pluginv2::DataResponse> {
        self.query_datasource(&Datasource::agents(agents), queries)
            .await
    }

    /// QueryData of the datasource `ds` with one query per (refId, query JSON).
    pub async fn query_datasource(
        &self,
        ds: &Datasource,
        queries: &[(&str, serde_json::Value)],
    ) -> HashMap<String, pluginv2::DataResponse> {
        let now = chrono::Utc::now().timestamp_millis();
        self.query_range(ds, queries, now - 3_600_000, now).await
    }

    /// QueryData of the datasource `ds` over the time range [from_ms, to_ms].
    pub async fn query_range(
        &self,
        ds: &Datasource,
        queries: &[(&str, serde_json::Value)],
        from_ms: i64,
        to_ms: i64,
    ) -> HashMap<String, pluginv2::DataResponse> {
        self.query_with_headers(ds, queries, from_ms, to_ms, HashMap::new())
            .await
    }

    /// QueryData as Grafana's alert engine sends a rule's query: with its `FromAlert` header.
    pub async fn query_alert(
        &self,
        ds: &Datasource,
        queries: &[(&str, serde_json::Value)],
        from_ms: i64,
        to_ms: i64,
    ) -> HashMap<String, pluginv2::DataResponse> {
        let headers = HashMap::from([("FromAlert".to_owned(), "true".to_owned())]);
        self.query_with_headers(ds, queries, from_ms, to_ms, headers)
            .await
    }

    async fn query_with_headers(
        &self,
        ds: &Datasource,
        queries: &[(&str, serde_json::Value)],
        from_ms: i64,
        to_ms: i64,
        headers: HashMap<String, String>,
    ) -> HashMap<String, pluginv2::DataResponse> {
        let mut client = DataClient::connect(self.endpoint.clone()).await.unwrap();
        let request = pluginv2::QueryDataRequest {
            plugin_context: Some(Self::context(ds)),
            headers,
            queries: queries
                .iter()
                .map(|(ref_id, json)| pluginv2::DataQuery {
                    ref_id: (*ref_id).into(),
                    max_data_points: 1000,
                    interval_ms: 1000,
                    time_range: Some(pluginv2::TimeRange {
                        from_epoch_ms: from_ms,
                        to_epoch_ms: to_ms,
                    }),
                    query_type: json["queryType"].as_str().unwrap_or("").into(),
                    json: serde_json::to_vec(json).unwrap(),
                })
                .collect(),
        };
        client
            .query_data(request)
            .await
            .unwrap()
            .into_inner()
            .responses
    }

    /// CallResource `GET path` of a datasource with `agents`: (HTTP status, body as JSON).
    pub async fn call_resource(&self, agents: &[&str], path: &str) -> (i32, serde_json::Value) {
        let mut client = ResourceClient::connect(self.endpoint.clone())
            .await
            .unwrap();
        let mut stream = client
            .call_resource(pluginv2::CallResourceRequest {
                plugin_context: Some(Self::context(&Datasource::agents(agents))),
                path: path.into(),
                method: "GET".into(),
                url: format!("/api/datasources/uid/kindling/resources/{path}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().expect("a response");
        (first.code, serde_json::from_slice(&first.body).unwrap())
    }

    /// CheckHealth for a datasource with `agents`.
    pub async fn check_health(&self, agents: &[&str]) -> pluginv2::CheckHealthResponse {
        self.check_datasource(&Datasource::agents(agents)).await
    }

    /// CheckHealth of the datasource `ds`.
    pub async fn check_datasource(&self, ds: &Datasource) -> pluginv2::CheckHealthResponse {
        let mut client = DiagnosticsClient::connect(self.endpoint.clone())
            .await
            .unwrap();
        client
            .check_health(pluginv2::CheckHealthRequest {
                plugin_context: Some(Self::context(ds)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }
}

impl Drop for GrafanaHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A frame Grafana received, decoded with arrow-rs's IPC reader (independent of the SDK).
pub struct DecodedFrame {
    pub batch: RecordBatch,
    /// The frame's schema metadata (`name`, `refId`, `meta` as JSON text).
    pub metadata: HashMap<String, String>,
}

/// Decodes every frame of a response.
pub fn decode_frames(response: &pluginv2::DataResponse) -> Vec<DecodedFrame> {
    response
        .frames
        .iter()
        .map(|bytes| {
            let reader =
                FileReader::try_new(Cursor::new(bytes.clone()), None).expect("arrow IPC file");
            let schema = reader.schema();
            let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
            let batch = datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap();
            DecodedFrame {
                batch,
                metadata: schema.metadata().clone(),
            }
        })
        .collect()
}
