//! The `events` fuzz target's harness (`bench/fuzz/src/events.rs`) on its seed corpus and its
//! regressions: the same capture rounds the agent runs (`CaptureState::round`), the harness's
//! invariants asserted after every round. cargo-fuzz needs nightly and is not run by CI; this
//! keeps the harness compiling and its corpus passing on the stable toolchain.

#[path = "../../bench/fuzz/src/events.rs"]
#[allow(dead_code, unreachable_pub)]
mod events;

/// What `bench/fuzz/src/ticket.rs` provides to the harness.
mod ticket {
    pub(crate) fn debug() -> bool {
        false
    }
}

fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&path) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn seeds_and_regressions_run_through_the_capture_round() {
    let seeds = inputs("../bench/fuzz/seeds/events");
    assert!(!seeds.is_empty(), "no seeds in bench/fuzz/seeds/events");
    let regressions = inputs("../bench/fuzz/regressions/events");
    for (name, input) in seeds.iter().chain(&regressions) {
        // A failed invariant panics with the harness's message; name the input first.
        eprintln!("events: {name} ({} bytes)", input.len());
        events::Harness::run(input);
    }
}
