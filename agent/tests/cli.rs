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
