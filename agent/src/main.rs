//! `kindling-agent`: captures TCP activity on this node and serves it over Arrow Flight.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use kindling_agent::{
    capture::{
        Capture, CaptureOptions,
        exclusions::{self, NamespaceExclusions},
    },
    cgroups::{self, CgroupNames},
    counters::PipelineCounters,
    history::{self, HistoryHealth},
    k8s::{self, Kubernetes},
    parse_bytes,
    pipeline::Pipeline,
    query::{AgentInfo, LocalQueries, QueryLimits},
    round::CaptureConfig,
    serve::AgentFlightService,
    store::{Compression, Store, StoreConfig},
};
use kindling_wire::schema;
use tonic::transport::{Identity, ServerTlsConfig};

/// Kindling agent: eBPF capture of TCP connections, kept in memory as Arrow and served over
/// Arrow Flight for the `kindling` CLI and the Grafana plugin. Runs as root.
#[derive(Debug, Parser)]
#[command(name = "kindling-agent", version)]
struct Args {
    /// Address of the Arrow Flight endpoint. Beyond loopback it needs --token-file (or
    /// --insecure-no-auth).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Value of the `node` column (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Value of the `cluster` column of every table: the cluster this node belongs to, so that
    /// one datasource can query several clusters' agents (letters, digits, `.`, `_`, `-`; at
    /// most 63; default: none, "").
    #[arg(long, default_value = "", value_parser = parse_cluster_name)]
    cluster_name: String,
    /// Upper bound of the rows kept in memory; the oldest chunks are evicted beyond it.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    memory_budget: u64,
    /// How sealed chunks are held: lz4 or zstd (Arrow IPC with compressed buffers, the budget
    /// counting compressed bytes: several times the history per MiB), or none (plain Arrow:
    /// the cheapest scans). See BENCHMARKS.md.
    #[arg(long, value_enum, default_value_t = ChunkCompression::Lz4)]
    chunk_compression: ChunkCompression,
    /// Rows per chunk before it is sealed.
    #[arg(long, default_value_t = 65_536)]
    chunk_rows: usize,
    /// Seconds a chunk stays open before it is sealed.
    #[arg(long, default_value_t = 60)]
    chunk_seconds: u64,
    /// Most TCP connections followed at once; more are counted as dropped.
    #[arg(long, default_value_t = 262_144)]
    max_connections: usize,
    /// Seconds between `flows` rows (status `open`) for connections that stay open.
    #[arg(long, default_value_t = 30)]
    open_flow_interval: u64,
    /// Milliseconds rows may wait before they become queryable.
    #[arg(long, default_value_t = 200)]
    flush_ms: u64,
    /// Bytes of payload captured per socket syscall (at most 1024); 0 turns payload capture
    /// off (no L7 parsing).
    #[arg(long, default_value_t = 1024)]
    payload_bytes: u32,
    /// Store the captured first bytes of every call's request and response in `calls`
    /// (`request_payload`, `response_payload`). Off by default: payloads can hold personal data
    /// and secrets (credential headers are masked even then; SQL literals are not).
    #[arg(long)]
    store_payloads: bool,
    /// Do not probe the OpenSSL libraries (`libssl.so*` mapped by running processes or in the
    /// host's library directories): TLS connections then stay encrypted bytes.
    #[arg(long)]
    no_tls_uprobes: bool,
    /// A cgroup v2 directory (e.g. a Kubernetes pod's, or a systemd service's) whose processes'
    /// payloads are never copied out of the kernel, nor those of the cgroups below it: their
    /// connections still give `flows` and `tcp_events`, but no L7 rows. Repeatable.
    #[arg(long, value_name = "DIR")]
    no_payload_cgroup: Vec<std::path::PathBuf>,
    /// Seconds after which a DNS query without answer is recorded with rcode TIMEOUT.
    #[arg(long, default_value_t = 5)]
    dns_timeout: u64,
    /// Do not attach the network-health programs (retransmits, resets, RTT samples, packet
    /// drops); `tcp_events` then has lifecycle events only.
    #[arg(long)]
    no_net_health: bool,
    /// Milliseconds between two RTT samples (`tcp_events` rows `rtt`) of every live
    /// connection, read from the kernel's sock_diag (0: no samples; flows still carry RTT).
    #[arg(long, default_value_t = 5000)]
    rtt_sample_ms: u64,
    /// Also follow RTT on every received segment (`tcp:tcp_probe`): exact largest RTT per
    /// connection and samples of short connections, for a cost on every segment of every
    /// connection (see BENCHMARKS.md).
    #[arg(long)]
    rtt_every_segment: bool,
    /// Seconds an NXDOMAIN answer waits for a later answer of the same process that shows it
    /// was a search-list expansion (`dns.search_expansion`); it is stored after at most this.
    #[arg(long, default_value_t = 2)]
    dns_search_window: u64,
    /// Seconds a query may run on this agent.
    #[arg(long, default_value_t = 30)]
    query_timeout: u64,
    /// Memory a query may use on this agent.
    #[arg(long, default_value = "128MiB", value_parser = parse_bytes)]
    query_memory: u64,
    /// File holding a bearer token every query must present (`kindling --token-file`, the
    /// datasource's secure setting `token`). Without it anyone who reaches --listen can read
    /// what the agent captured.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Serve beyond loopback without a token. Only where something else (a network policy, a
    /// firewall) keeps everyone but the coordinators away from --listen.
    #[arg(long)]
    insecure_no_auth: bool,
    /// PEM certificate (chain) to serve Flight over TLS with; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve the tables of a `kindling dump` directory (Parquet) instead of capturing: no
    /// eBPF programs, no root needed.
    /// A history directory (--history-dir) is served as it is, read-only.
    #[arg(long, conflicts_with = "history_dir")]
    replay: Option<std::path::PathBuf>,
    /// Directory of history files: every chunk of rows is written there as Parquet (one file
    /// per chunk, `<table>/<chunk>.parquet`), so that queries cover days, not only what memory
    /// holds, and restarts and crashes keep what was captured. In a DaemonSet: a hostPath
    /// such as /var/lib/kindling/history. (`--spill-dir` is the same option under its old
    /// name.)
    #[arg(long, alias = "spill-dir")]
    history_dir: Option<std::path::PathBuf>,
    /// Most bytes the history files may take; beyond it the oldest files are deleted.
    #[arg(long, default_value = "4GiB", value_parser = parse_bytes)]
    history_budget: u64,
    /// Seconds at most between two writes of the rows in memory to the history files: what a
    /// crash (SIGKILL, power loss) can lose.
    #[arg(long, default_value_t = 60)]
    history_flush: u64,
    /// Kubeconfig of the cluster whose pods, Services and workloads name the rows' ends
    /// (`src_pod` ... `dst_service`). In a pod the in-cluster config is used without it;
    /// elsewhere, without it, the agent runs in host mode (those columns stay empty).
    #[arg(long, conflicts_with = "no_kubernetes")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Host mode even in a pod: no Kubernetes enrichment.
    #[arg(long)]
    no_kubernetes: bool,
    /// The host's cgroup v2 tree, walked to find which container (and so which pod) a
    /// process belongs to, and where the socket hooks attach (default: /sys/fs/cgroup/unified
    /// on hybrid hosts, else /sys/fs/cgroup; in a DaemonSet, where the host's tree is mounted).
    #[arg(long)]
    cgroup_root: Option<std::path::PathBuf>,
    /// Most Kubernetes objects (pods, Services, endpoints, owners, nodes) held for
    /// enrichment; more are counted in agent_stats.kubernetes_objects_dropped.
    #[arg(long, default_value_t = 500_000)]
    kube_max_objects: usize,
    /// A Kubernetes namespace whose pods' payloads are never copied out of the kernel (as
    /// --no-payload-cgroup, for every container of its pods as they are found: from a second
    /// or so after a container starts). Repeatable; needs Kubernetes enrichment.
    #[arg(long, value_name = "NAMESPACE")]
    no_payload_namespace: Vec<String>,
}

/// `--chunk-compression`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ChunkCompression {
    None,
    Lz4,
    Zstd,
}

impl From<ChunkCompression> for Compression {
    fn from(c: ChunkCompression) -> Self {
        match c {
            ChunkCompression::None => Self::None,
            ChunkCompression::Lz4 => Self::Lz4,
            ChunkCompression::Zstd => Self::Zstd,
        }
    }
}

/// Writes sealed chunks to the history files (with `writer`), then compacts and compresses
/// them, a few times a second, off the capture thread and outside the store's lock (the store's
/// own module explains why).
fn spawn_compressor(
    store: &Arc<Store>,
    writer: Option<Arc<Mutex<history::Writer>>>,
) -> anyhow::Result<()> {
    let store = Arc::clone(store);
    std::thread::Builder::new()
        .name("store-compress".into())
        .spawn(move || {
            lower_priority(COMPRESS_NICE);
            loop {
                if let Some(writer) = &writer {
                    writer
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .write_pending(false);
                }
                if let Err(e) = store.compress_sealed() {
                    tracing::error!(error = %e, "Compressing sealed chunks failed");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .context("starting the store-compress thread")?;
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // kube's client logs every failed connection attempt as an error; the agent
                // reports the API server's state itself (agent_stats.kubernetes_status).
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    batch_scheduling();
    if let Err(e) = run(args) {
        eprintln!("kindling-agent: {e:#}");
        std::process::exit(1);
    }
}

/// Puts the agent (this thread, and so every thread it starts) in SCHED_BATCH: its wake-ups
/// do not preempt the node's applications, it runs when their time slices end. Measured with
/// nginx at saturation: 6.8% more requests/s than the same agent in SCHED_OTHER, side by side
/// (BENCHMARKS.md). SCHED_IDLE was worse (the capture thread fell behind and dropped events).
///
/// With a time slice of [`SLICE_NS`] (`sched_setattr`'s `sched_runtime`, which the fair
/// scheduler takes as the task's slice since Linux 6.12; older kernels ignore or refuse it, and
/// the agent runs with the default slice): an application that wakes, or the next tick, takes
/// the CPU back sooner. The scheduler enforces a slice only at its tick, though, so the capture
/// round also yields after [`CAPTURE_YIELD_AFTER`] of work (`round::Pacer`).
fn batch_scheduling() {
    if let Err(e) = set_batch(Some(SLICE_NS)) {
        tracing::debug!(error = %e, "No custom time slice; SCHED_BATCH with the default one");
        if let Err(e) = set_batch(None) {
            tracing::warn!(
                error = %e,
                "Cannot switch to SCHED_BATCH; running in the default scheduling class"
            );
        }
    }
}

/// The agent's time slice: the fair scheduler's smallest (0.1 ms).
const SLICE_NS: u64 = 100_000;

/// Longest run of capture work before the capture thread yields its CPU: the scheduler
/// enforces a slice only at its tick (4 ms on HZ=250 kernels), so the thread keeps its runs
/// short itself (`round::Pacer`).
const CAPTURE_YIELD_AFTER: Duration = Duration::from_micros(250);

/// `struct sched_attr` of `sched_setattr(2)` (the size of its first version plus the
/// utilization clamps, `SCHED_ATTR_SIZE_VER1`).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// SCHED_BATCH for the calling thread, with a time slice of `slice_ns` if given, at the nice
/// value it was started with (`sched_setattr` sets that too).
fn set_batch(slice_ns: Option<u64>) -> std::io::Result<()> {
    let attr = SchedAttr {
        size: size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_BATCH as u32,
        // SAFETY: plain libc call about the calling process.
        nice: unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) },
        runtime: slice_ns.unwrap_or(0),
        ..SchedAttr::default()
    };
    // SAFETY: pid 0 is the calling thread; `attr` is a valid sched_attr of the size it says.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A cluster name: what Kubernetes allows in a label value, so that a DaemonSet can take it
/// from one, and no `/` (the service map writes `cluster/namespace/workload`).
fn parse_cluster_name(name: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.len() > 63 || !name.chars().all(allowed) {
        return Err(format!(
            "`{name}` is not a cluster name: at most 63 letters, digits, `.`, `_` or `-`"
        ));
    }
    Ok(name.to_owned())
}

fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node_name.clone().unwrap_or_else(host_name);
    let token = args
        .token_file
        .as_deref()
        .map(kindling_wire::auth::read_token)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            Some(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)))
        }
        _ => None,
    };
    check_exposure(
        args.listen,
        token.is_some(),
        tls.is_some(),
        args.insecure_no_auth,
    )?;
    let mut chunk_duration = Duration::from_secs(args.chunk_seconds);
    if args.history_dir.is_some() {
        // An open chunk reaches the disk when it is sealed.
        chunk_duration = chunk_duration.min(Duration::from_secs(args.history_flush.max(1)));
    }
    let store = Arc::new(Store::new(
        StoreConfig {
            budget_bytes: args.memory_budget,
            chunk_rows: args.chunk_rows,
            chunk_duration,
            compression: args.chunk_compression.into(),
            history_budget: args.history_dir.as_ref().map(|_| args.history_budget),
        },
        schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).expect("known table"))),
    ));
    let history = match &args.history_dir {
        Some(dir) => {
            let health = Arc::new(HistoryHealth::new(args.history_budget));
            let files = history::open(&store, dir, false, &health).map_err(anyhow::Error::msg)?;
            tracing::info!(dir = %dir.display(), files, budget_bytes = args.history_budget, "History directory opened");
            Some((
                Arc::new(Mutex::new(history::Writer::new(
                    Arc::clone(&store),
                    dir.clone(),
                    Arc::clone(&health),
                ))),
                health,
            ))
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("query")
        // Queries yield to capture: under a CPU-bound query the capture thread still drains
        // the rings in time (e2e_hardening's saturated-agent test).
        .on_thread_start(|| lower_priority(QUERY_NICE))
        // Deep expression trees plan recursively (kindling_sql::guard bounds them for 2 MiB).
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .context("starting the query runtime")?;
    // Kubernetes metadata is followed on the query runtime (at the queries' lower priority).
    let kubernetes = if args.no_kubernetes || args.replay.is_some() {
        None
    } else {
        runtime
            .block_on(k8s::watch::client(args.kubeconfig.as_deref()))?
            .map(|client| {
                let k = Arc::new(Kubernetes::new(&node, args.kube_max_objects));
                let _entered = runtime.enter();
                k8s::watch::spawn(client, Arc::clone(&k));
                k
            })
    };
    // The host's cgroup v2 tree: walked to name each row's local process (and, with Kubernetes,
    // its pod), and where the socket hooks attach.
    let cgroup_root = args
        .cgroup_root
        .clone()
        .unwrap_or_else(cgroups::default_root);
    let cgroups = args.replay.is_none().then(|| {
        let names = Arc::new(CgroupNames::new(cgroup_root.clone()));
        runtime.spawn(cgroups::follow(Arc::clone(&names), kubernetes.clone()));
        names
    });
    let counters = Arc::new(PipelineCounters::default());
    // A replayed history directory's files skipped at start.
    let mut replay_health = None;
    let pipeline = match &args.replay {
        Some(dir) if history::is_history_dir(dir) => {
            let health = Arc::new(HistoryHealth::default());
            let files = history::open(&store, dir, true, &health).map_err(anyhow::Error::msg)?;
            replay_health = Some(health);
            tracing::info!(dir = %dir.display(), files, "Serving a history directory; no capture");
            None
        }
        Some(dir) => {
            let loaded = kindling_agent::replay::load(&store, dir).map_err(anyhow::Error::msg)?;
            let held: u64 = store.stats().values().map(|s| s.rows_held).sum();
            let read: u64 = loaded.values().sum();
            tracing::info!(dir = %dir.display(), rows = read, ?loaded, "Replaying a dump; no capture");
            if held < read {
                tracing::warn!(
                    rows_read = read,
                    rows_held = held,
                    "The dump is larger than --memory-budget: its oldest rows were evicted"
                );
            }
            None
        }
        None => {
            // New connections are numbered after those in the history files.
            let first_conn_id = store.history_max_conn_id() + 1;
            let no_payload_cgroups = args
                .no_payload_cgroup
                .iter()
                .map(|dir| kindling_agent::capture::cgroup_id(dir))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--no-payload-cgroup {e}"))?;
            if !args.no_payload_namespace.is_empty() && kubernetes.is_none() {
                anyhow::bail!(
                    "--no-payload-namespace needs Kubernetes: --kubeconfig, or the in-cluster config"
                );
            }
            let attaching = std::time::Instant::now();
            let mut capture = Capture::start(CaptureOptions {
                payload_bytes: args.payload_bytes,
                net_health: !args.no_net_health,
                rtt_every_segment: args.rtt_every_segment,
                rtt_sample_interval: Duration::from_millis(args.rtt_sample_ms.max(1)),
                no_payload_cgroups,
                no_payload_updates: !args.no_payload_namespace.is_empty(),
                cgroup_root,
                tls_uprobes: !args.no_tls_uprobes,
            })?;
            if let (Some(k), Some(exclusions)) = (&kubernetes, capture.take_payload_exclusions()) {
                let policy = NamespaceExclusions::new(
                    args.no_payload_namespace.clone(),
                    exclusions,
                    Arc::clone(&counters.kubernetes_payload_excluded),
                );
                runtime.spawn(exclusions::follow(
                    policy,
                    Arc::clone(k),
                    cgroups::SCAN_EVERY,
                ));
            }
            tracing::info!(
                attach_ms = attaching.elapsed().as_millis() as u64,
                "eBPF programs loaded and attached"
            );
            if kubernetes.is_none() {
                tracing::info!("Host mode: no Kubernetes enrichment (see --kubeconfig)");
            }
            Some(
                Pipeline::spawn(
                    capture,
                    Arc::clone(&store),
                    Arc::clone(&counters),
                    CaptureConfig {
                        node: node.clone(),
                        flush_interval: Duration::from_millis(args.flush_ms),
                        flush_rows: 8192,
                        max_conns: args.max_connections,
                        open_flow_interval: Duration::from_secs(args.open_flow_interval),
                        max_sessions: args.max_connections,
                        dns_timeout: Duration::from_secs(args.dns_timeout),
                        store_payloads: args.store_payloads,
                        dns_search_window: Duration::from_secs(args.dns_search_window),
                        // With --rtt-every-segment the kernel reports the samples itself.
                        rtt_sample_interval: (args.rtt_sample_ms > 0
                            && !args.no_net_health
                            && !args.rtt_every_segment)
                            .then(|| Duration::from_millis(args.rtt_sample_ms)),
                        first_conn_id,
                        kubernetes: kubernetes.clone(),
                        cgroups: cgroups.clone(),
                        yield_after: Some(CAPTURE_YIELD_AFTER),
                        own_port: Some(args.listen.port()),
                    },
                )
                .context("starting the capture thread")?,
            )
        }
    };
    // Also with --chunk-compression none: the same thread compacts sealed chunks.
    let writer = history.as_ref().map(|(w, _)| Arc::clone(w));
    spawn_compressor(&store, writer.clone())?;
    let queries = LocalQueries::new(
        Arc::clone(&store),
        Arc::new(
            AgentInfo::new(&node, counters)
                .with_cluster(&args.cluster_name)
                .with_kubernetes(kubernetes)
                .with_history(history.map(|(_, h)| h).or(replay_health)),
        ),
        QueryLimits {
            memory_bytes: args.query_memory as usize,
            timeout: Duration::from_secs(args.query_timeout),
        },
    );

    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(listen = %args.listen, node = %node, budget_bytes = args.memory_budget, "Agent serving");
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server
                .tls_config(tls)
                .context("TLS certificate or key not usable")?;
        }
        server
            .add_service(AgentFlightService::new(queries).into_server(token))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown_signal(),
            )
            .await
            .context("Flight server failed")
    });
    if let Some(pipeline) = pipeline {
        pipeline.stop();
        tracing::info!("Agent stopped; eBPF programs detached");
        if let Some(writer) = &writer {
            // Whatever the last flush left in memory.
            store.seal_all().map_err(anyhow::Error::msg)?;
            let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
            let written = writer.write_pending(true);
            tracing::info!(chunks = written, "Wrote the rest of the history");
        }
    }
    served
}

/// Nice value of the query threads, relative to the capture thread's 0.
const QUERY_NICE: i32 = 10;

/// Nice value of the compressor thread: the lowest. Compressing a chunk is milliseconds of
/// work in one call that nothing waits for; at the lowest weight the scheduler takes the CPU
/// back for any application that wakes, instead of at its next tick.
const COMPRESS_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority to `nice` (Linux schedules threads by
/// their own nice value).
fn lower_priority(nice: i32) {
    // SAFETY: gettid and setpriority on the calling thread only.
    let ret = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if ret != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "Cannot lower the query threads' priority");
    }
}

/// Refuses to serve captured payloads and addresses beyond loopback without a token, unless
/// --insecure-no-auth says so; warns where the token would travel in clear text.
fn check_exposure(
    listen: SocketAddr,
    token: bool,
    tls: bool,
    insecure_no_auth: bool,
) -> anyhow::Result<()> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if !token && !insecure_no_auth {
        anyhow::bail!(
            "refusing to serve {listen} without a token: anyone who reaches it could read what \
             this agent captures. Give --token-file FILE, or --insecure-no-auth where a network \
             policy or firewall protects the port"
        );
    }
    if !token {
        tracing::warn!(
            listen = %listen,
            "Serving beyond loopback without a token (--insecure-no-auth): anyone who reaches \
             this address can read what the agent captures"
        );
    } else if !tls {
        tracing::warn!(
            listen = %listen,
            "The token travels in clear text beyond loopback; give --tls-cert and --tls-key"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("Shutting down");
}
