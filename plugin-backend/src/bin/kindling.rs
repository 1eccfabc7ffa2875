//! `kindling`: query Kindling agents from the command line with the plugin's engine.
use std::{io::Write, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use kindling_plugin_backend::{
    EngineLimits, QueryEngine,
    agents::{AgentSet, TlsSettings},
    health::{self, AgentStatus},
    macros,
    output::{self, Format},
};

#[derive(Debug, Parser)]
#[command(name = "kindling", version, about = "Query Kindling agents with SQL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which agents to ask, and how.
#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// Agent address, HOST:PORT; repeat for several. A DNS name that resolves to several
    /// addresses (a headless Service) stands for one agent per address.
    #[arg(long = "agent", required = true)]
    agents: Vec<String>,
    /// Seconds one agent may take to answer; a slower agent is left out of the result and
    /// named on stderr.
    #[arg(long, default_value_t = 10.0)]
    agent_timeout: f64,
    /// Most agents queried at once.
    #[arg(long, default_value_t = 32)]
    fanout: usize,
    /// File holding the bearer token the agents expect (see kindling-agent --token-file).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// PEM of the CA that signed the agents' TLS certificates: connect over TLS.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Name the agents' certificates must carry (default: the host of each --agent).
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
}

impl AgentArgs {
    fn agent_set(self) -> Result<AgentSet, String> {
        let agent_timeout = AgentSet::timeout_secs(self.agent_timeout)
            .map_err(|e| format!("--agent-timeout {e}"))?;
        let token = self
            .token_file
            .map(|path| kindling_wire::auth::read_token(&path))
            .transpose()?;
        let tls = self
            .tls_ca
            .map(|path| {
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))
            })
            .transpose()?
            .map(|ca_pem| TlsSettings {
                ca_pem,
                server_name: self.tls_server_name,
            });
        let mut set = AgentSet::new(self.agents).with_token(token).with_tls(tls);
        set.agent_timeout = agent_timeout;
        set.fanout = self.fanout;
        Ok(set)
    }
}

/// Exit status of a query whose result is partial (some agents did not answer).
const EXIT_PARTIAL: u8 = 3;

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a SQL query over every agent's tables. Exit status 3: the result was printed but
    /// some agents did not answer (named on stderr).
    Query {
        #[command(flatten)]
        agents: AgentArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Seconds the query may take.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Most rows printed.
        #[arg(long, default_value_t = 1_000_000)]
        max_rows: usize,
        /// MiB the query may hold on this machine (agents' answers, sorts, joins, aggregates).
        #[arg(long, default_value_t = 512)]
        memory_mib: usize,
        /// Time range of the Grafana macros in the SQL ($__timeFilter(col), ...): the last
        /// DURATION (30s, 15m, 1h, 1d).
        #[arg(long, default_value = "1h")]
        since: String,
        /// $__interval of the macros (a duration; default: the range / 100, at least 1s).
        #[arg(long)]
        interval: Option<String>,
        /// Print the number of agents and the bytes they sent on stderr.
        #[arg(long)]
        stats: bool,
        /// Do not split aggregates into partial aggregates on agents: agents send rows (for
        /// comparisons; see EXPLAIN).
        #[arg(long)]
        no_partial_agg: bool,
        /// The SQL.
        sql: String,
    },
    /// Write every table of every agent to Parquet files in a directory (with manifest.json),
    /// for bug reports and offline analysis; `kindling-agent --replay DIR` serves it. Exit
    /// status 3: written, but some agents did not answer (named on stderr).
    Dump {
        #[command(flatten)]
        agents: AgentArgs,
        /// Directory to write (created if needed; files in it are replaced).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Only rows of the last DURATION (30s, 15m, 1h, 1d); default: every row held.
        #[arg(long)]
        since: Option<String>,
        /// Seconds the dump may take.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Report each agent: reachable or the error, node, version, rows held, drops.
    Health {
        #[command(flatten)]
        agents: AgentArgs,
    },
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Milliseconds of the `--since` duration.
fn since_ms(since: &str) -> Result<i64, String> {
    macros::parse_duration_ms(since)
        .ok_or_else(|| format!("--since `{since}` is not a duration (30s, 15m, 1h, 1d)"))
}

/// Expands the Grafana macros for the last `since`.
fn expand_macros(sql: &str, since: &str, interval: Option<&str>) -> Result<String, String> {
    let range_ms = since_ms(since)?;
    let interval_ms = match interval {
        Some(i) => macros::parse_duration_ms(i)
            .ok_or_else(|| format!("--interval `{i}` is not a duration (1s, 1m, ...)"))?,
        None => (range_ms / 100).max(1_000),
    };
    let now_ns = now_ns();
    let ctx = macros::MacroContext {
        from_ns: now_ns - range_ms * 1_000_000,
        to_ns: now_ns,
        interval_ms,
    };
    macros::expand(sql, &ctx)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kindling: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command`; an error is printed as one line and exits 1.
async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Query {
            agents,
            format,
            timeout,
            max_rows,
            memory_mib,
            since,
            interval,
            stats,
            no_partial_agg,
            sql,
        } => {
            let sql = expand_macros(&sql, &since, interval.as_deref())?;
            let limits = EngineLimits {
                timeout: Duration::from_secs(timeout),
                max_rows,
                memory_bytes: memory_mib << 20,
            };
            let engine = QueryEngine::new(agents.agent_set()?, limits)
                .with_partial_aggregation(!no_partial_agg);
            let out = engine.query(&sql).await.map_err(|e| e.to_string())?;
            let mut stdout = std::io::stdout().lock();
            output::write(&out, format, &mut stdout).map_err(|e| e.to_string())?;
            let _ = stdout.flush();
            if out.truncated {
                eprintln!("kindling: result cut off at {max_rows} rows");
            }
            if stats {
                eprintln!(
                    "kindling: {} rows from {} agents; {} bytes received from agents",
                    out.num_rows(),
                    out.agents,
                    out.bytes_received
                );
            }
            Ok(match out.partial_warning() {
                Some(warning) => {
                    eprintln!("kindling: {warning}");
                    ExitCode::from(EXIT_PARTIAL)
                }
                None => ExitCode::SUCCESS,
            })
        }
        Command::Dump {
            agents,
            out,
            since,
            timeout,
        } => {
            let agents = agents.agent_set()?;
            let since_ms = since.as_deref().map(since_ms).transpose()?;
            let now_ns = now_ns();
            let limits = EngineLimits {
                timeout: Duration::from_secs(timeout),
                max_rows: usize::MAX,
                memory_bytes: 4 << 30,
            };
            let engine = QueryEngine::new(agents, limits);
            let since_ns = since_ms.map(|ms| now_ns - ms * 1_000_000);
            let manifest =
                kindling_plugin_backend::dump::dump(&engine, &out, since_ns, now_ns).await?;
            for (table, rows) in &manifest.tables {
                println!("{table}\t{rows} rows");
            }
            if manifest.missing.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "kindling: partial dump: {} of {} agents did not answer: {}",
                manifest.missing.len(),
                manifest.agents,
                manifest.missing.join("; ")
            );
            Ok(ExitCode::from(EXIT_PARTIAL))
        }
        Command::Health { agents } => {
            let report = health::check(&agents.agent_set()?).await;
            let mut healthy = true;
            for h in &report {
                match &h.status {
                    AgentStatus::Ok {
                        node,
                        version,
                        rows_held,
                        events_received,
                        events_dropped,
                    } => println!(
                        "{}\tok\tnode={node} version={version} rows_held={rows_held} events_received={events_received} events_dropped={events_dropped}",
                        h.agent
                    ),
                    AgentStatus::Error { error } => {
                        healthy = false;
                        println!("{}\terror\t{error}", h.agent);
                    }
                }
            }
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
