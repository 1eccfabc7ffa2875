//! The agent binary's command line: bad flags and unusable inputs end the process at once with
//! a message that says what to fix. (The end-to-end tests in plugin-backend run this binary
//! with eBPF; building it here also makes `cargo test` build it for them.)
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kindling-agent"))
        .args(args)
        .output()
        .expect("run kindling-agent")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unknown_chunk_compression_is_refused_with_the_choices() {
    let out = agent(&["--chunk-compression", "gzip", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'gzip' for '--chunk-compression <CHUNK_COMPRESSION>'")
            && err.contains("[possible values: none, lz4, zstd]"),
        "{err}"
    );
}

#[test]
fn a_replay_directory_without_tables_is_refused() {
    let dir = std::env::temp_dir().join(format!("kindling-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = agent(&["--replay", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).lines().last().unwrap(),
        format!(
            "kindling-agent: {} holds none of calls.parquet, dns.parquet, flows.parquet, \
             tcp_events.parquet (write one with `kindling dump --out DIR`)",
            dir.display()
        )
    );
}

#[test]
fn a_budget_that_is_not_a_size_is_refused() {
    let out = agent(&["--memory-budget", "lots", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'lots' for '--memory-budget <MEMORY_BUDGET>'")
            && err.contains("`lots` is not a size (examples: 256MiB, 1GiB, 65536)"),
        "{err}"
    );
}

/// An empty directory: `--replay` of it fails after the listen checks, which shows that they
/// passed without starting a server.
fn empty_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kindling-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn serving_beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
    let dir = empty_dir("exposure");
    let replay = dir.to_str().unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let last_line = |out: &Output| stderr(out).lines().last().unwrap_or_default().to_owned();
    let replay_refusal = format!(
        "kindling-agent: {replay} holds none of calls.parquet, dns.parquet, flows.parquet, \
         tcp_events.parquet (write one with `kindling dump --out DIR`)"
    );

    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        let out = agent(&["--replay", replay, "--listen", listen]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(
            last_line(&out),
            format!(
                "kindling-agent: refusing to serve {listen} without a token: anyone who reaches \
                 it could read what this agent captures. Give --token-file FILE, or \
                 --insecure-no-auth where a network policy or firewall protects the port"
            )
        );
    }
    // The default address is loopback: no token needed.
    let out = agent(&["--replay", replay]);
    assert_eq!(last_line(&out), replay_refusal);
    // A token, or the explicit opt-out, passes the check (warning about clear text).
    let out = agent(&[
        "--replay",
        replay,
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(last_line(&out), replay_refusal);
    assert!(
        stderr(&out).contains("The token travels in clear text"),
        "{}",
        stderr(&out)
    );
    let out = agent(&[
        "--replay",
        replay,
        "--listen",
        "0.0.0.0:0",
        "--insecure-no-auth",
    ]);
    assert_eq!(last_line(&out), replay_refusal);
    assert!(
        stderr(&out).contains("without a token (--insecure-no-auth)"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
