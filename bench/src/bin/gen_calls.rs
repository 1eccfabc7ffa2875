//! Writes synthetic `calls` rows for the distributed-SQL benchmark: AGENTS dump directories
//! (`DIR/agent-N/calls.parquet`, each a slice that `kindling-agent --replay` serves) and the
//! same rows again in one file (`DIR/all/calls.parquet`) for DuckDB.
//!
//! The rows come from the agent's own `CallsBuilder`, so they have the real schema. Their shape
//! is a small cluster's: 40 client services (comm, src_ip) calling 25 servers (dst_ip,
//! dst_port) on 200 endpoints (resource), 2% errors, waiting times with a long tail (one call in twenty, so that the p99 lies inside it). A fixed
//! seed makes every run write the same rows.
//!
//!   gen_calls DIR ROWS AGENTS [SPAN_SECONDS]
//!   gen_calls --history DIR ROWS SPAN_SECONDS
//!
//! Rows are 1 us apart from 2026-01-01T00:00:00Z, or, with SPAN_SECONDS, spread evenly over
//! the SPAN_SECONDS that end now (for queries with Grafana's time macros).
//!
//! With `--history`, the rows of one node go through the agent's own store and history writer
//! instead (chunks of 65,536 rows, as `--chunk-rows` by default), into `DIR/calls/*.parquet`, a
//! history directory that `kindling-agent --replay DIR` serves; the writer's rows per second of
//! CPU time are printed.
use std::{fs::File, net::Ipv4Addr, path::Path, sync::Arc};

use kindling_agent::records::{CallRecord, Endpoints, Owner, Role, builders::CallsBuilder};
use parquet::arrow::ArrowWriter;

/// xorshift64*: deterministic and fast.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn call(rng: &mut Rng, i: u64, start_ns: i64, step_ns: f64) -> CallRecord {
    let client = rng.below(40);
    let server = rng.below(25);
    let endpoint = rng.below(200);
    let is_error = rng.below(50) == 0;
    // 1-10 ms for most calls, a tail to ~1 s for one in twenty.
    let waiting = 1_000_000
        + rng.below(9_000_000)
        + if rng.below(20) == 0 {
            rng.below(1_000_000_000)
        } else {
            0
        };
    CallRecord {
        ts_ns: start_ns + (i as f64 * step_ns) as i64,
        protocol: "http",
        role: Role::Server,
        method: if endpoint.is_multiple_of(4) {
            "POST"
        } else {
            "GET"
        }
        .into(),
        resource: format!("/api/v1/service{}/item{}", endpoint % 25, endpoint),
        status: if is_error { "500" } else { "200" }.into(),
        is_error,
        error_message: None,
        request_sent_ns: 10_000 + rng.below(50_000),
        waiting_ttfb_ns: waiting,
        content_download_ns: 20_000 + rng.below(200_000),
        request_bytes: 200 + rng.below(800),
        response_bytes: 500 + rng.below(20_000),
        endpoints: Endpoints {
            src_ip: Ipv4Addr::new(10, 1, (client / 250) as u8, (client % 250) as u8 + 1).into(),
            src_port: 30_000 + rng.below(30_000) as u16,
            dst_ip: Ipv4Addr::new(10, 2, 0, server as u8 + 1).into(),
            dst_port: 8080,
        },
        owner: Owner {
            pid: 1000 + client as u32,
            tid: 1000 + client as u32,
            comm: format!("svc-{client}").into(),
            cgroup_id: 0,
        },
        conn_id: i / 10,
        tls: "none",
        trace_id: None,
        request_payload: None,
        response_payload: None,
    }
}

/// The start and step of the rows' timestamps: 1 us apart from 2026-01-01, or `span` seconds
/// that end now.
fn timeline(span: Option<&String>, rows: u64) -> (i64, f64) {
    match span {
        None => (1_767_225_600_000_000_000, 1_000.0), // 2026-01-01T00:00:00Z
        Some(span) => {
            let span_ns = span.parse::<f64>().expect("SPAN_SECONDS is a number") * 1e9;
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as f64;
            ((now_ns - span_ns) as i64, span_ns / rows.max(1) as f64)
        }
    }
}

/// CPU time of this process so far (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    // SAFETY: initialized by getrusage (or zeroed).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// `--history DIR ROWS SPAN_SECONDS`: one node's rows through the store and history writer.
fn history(dir: &Path, rows: u64, span: &String) {
    use kindling_agent::{
        history::{self, HistoryHealth},
        store::{Store, StoreConfig},
    };
    let store = Arc::new(Store::new(
        StoreConfig {
            history_budget: Some(u64::MAX),
            ..StoreConfig::default()
        },
        kindling_wire::schema::STORED_TABLES.map(|t| {
            let schema = kindling_wire::schema::stored(t).expect("known table");
            (t.to_owned(), schema)
        }),
    ));
    let health = Arc::new(HistoryHealth::default());
    history::open(&store, dir, false, &health).expect("history directory");
    let mut writer = history::Writer::new(Arc::clone(&store), dir.to_owned(), health);
    let (start_ns, step_ns) = timeline(Some(span), rows);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut builder = CallsBuilder::new("node-0");
    let (mut building, mut writing) = (0.0, 0.0);
    let mut files = 0;
    for i in 0..rows {
        builder.append(&call(&mut rng, i, start_ns, step_ns));
        if builder.len() == 8192 || i + 1 == rows {
            store.append("calls", builder.finish().unwrap()).unwrap();
            if i + 1 == rows {
                store.seal_all().unwrap();
            }
            let t0 = cpu_seconds();
            files += writer.write_pending(true);
            writing += cpu_seconds() - t0;
            building = cpu_seconds() - writing;
        }
    }
    let stats = &store.stats()["calls"];
    println!(
        "{rows} rows in {files} files under {}: {} bytes ({:.1} per row); writer {:.1} s of CPU \
         ({:.0} rows per CPU second), building the rows {building:.1} s",
        dir.display(),
        stats.history_bytes,
        stats.history_bytes as f64 / rows as f64,
        writing,
        rows as f64 / writing,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir, rows, span] = args.as_slice()
        && flag == "--history"
    {
        history(
            Path::new(dir),
            rows.parse().expect("ROWS is a number"),
            span,
        );
        return;
    }
    let (dir, rows, agents, span) = match args.as_slice() {
        [_, dir, rows, agents] => (dir, rows, agents, None),
        [_, dir, rows, agents, span] => (dir, rows, agents, Some(span)),
        _ => {
            eprintln!("usage: gen_calls DIR ROWS AGENTS [SPAN_SECONDS]");
            std::process::exit(2);
        }
    };
    let dir = Path::new(dir);
    let rows: u64 = rows.parse().expect("ROWS is a number");
    let agents: u64 = agents.parse().expect("AGENTS is a number");
    let schema = kindling_wire::schema::stored("calls").expect("calls");
    let writer = |path: &Path| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        ArrowWriter::try_new(File::create(path).unwrap(), Arc::clone(&schema), None).unwrap()
    };
    let mut all = writer(&dir.join("all/calls.parquet"));
    let (start_ns, step_ns) = timeline(span, rows);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let per_agent = rows / agents;
    for a in 0..agents {
        let node = format!("node-{a}");
        let mut slice = writer(&dir.join(format!("agent-{a}/calls.parquet")));
        let mut builder = CallsBuilder::new(&node);
        let last = (a + 1) * per_agent;
        for i in a * per_agent..last {
            builder.append(&call(&mut rng, i, start_ns, step_ns));
            // Every 65,536 rows and at the slice's end, the rows go to both files.
            if builder.len() == 65_536 || i + 1 == last {
                let batch = builder.finish().unwrap();
                slice.write(&batch).unwrap();
                all.write(&batch).unwrap();
            }
        }
        slice.close().unwrap();
    }
    all.close().unwrap();
    println!(
        "{} rows in {agents} slices under {}",
        per_agent * agents,
        dir.display()
    );
}
