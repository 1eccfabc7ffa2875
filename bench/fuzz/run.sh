#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each and prints, per target, the
# executions and the crashes found. Not part of CI: needs cargo-fuzz
# (`cargo +nightly install cargo-fuzz --locked`) and nightly features.
#
#   bench/fuzz/run.sh [SECONDS] [TARGET...]      # SECONDS defaults to 60
#
# Corpora grow in bench/fuzz/corpus/<target>/ (seeded from seeds/<target>/, which make_seeds.py
# writes); crashing inputs land in bench/fuzz/artifacts/<target>/; libFuzzer's output in
# bench/fuzz/logs/<target>.log; dicts/<target>.dict is passed as libFuzzer's -dict when present.
# Set CARGO_TARGET_DIR to build elsewhere than bench/fuzz/target.
#
# Two kinds of targets:
# - The parser targets (http, http2, redis, dns, mysql, postgres, detect, sql_normalize) build with
#   `cargo +nightly fuzz`, as before.
# - The agent targets (events, ticket) link kindling-agent (the `agent` feature): DataFusion,
#   and the agent's build.rs, which builds the eBPF object with a nested cargo (aya-build).
#   kindling-agent needs aya 0.16, whose rust-version is 1.98.0, newer than the installed
#   nightly (1.97.0-nightly), and the project pins 1.98.0 anyway (its LLVM must match
#   bpf-linker's). So they build with the pinned toolchain, `cargo +1.98.0 fuzz`, with
#   RUSTC_BOOTSTRAP=1 for the -Z flags cargo-fuzz passes (sanitizer, sancov); cargo-fuzz itself
#   treats RUSTC_BOOTSTRAP as nightly.
#   cargo-fuzz's RUSTFLAGS (sanitizer, sancov, --cfg fuzzing) do not reach the nested eBPF build:
#   aya-build sets CARGO_ENCODED_RUSTFLAGS for its child cargo, which takes precedence over
#   RUSTFLAGS, and cargo-fuzz passes --target, so build scripts are built without them. The
#   nested build uses `rustup run 1.98.0 cargo` and its own target dir under OUT_DIR.
#   AGENT_SANITIZER picks their sanitizer (default: address; `none` builds without ASan).
set -euo pipefail

cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
if [[ ! $seconds =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

agent_sanitizer=${AGENT_SANITIZER:-address}
is_agent() { [[ $1 == events || $1 == ticket ]]; }
# fuzz SUBCOMMAND TARGET [ARGS...]: cargo-fuzz with the toolchain and options of TARGET's kind.
fuzz() {
    local sub=$1 t=$2
    shift 2
    if is_agent "$t"; then
        RUSTC_BOOTSTRAP=1 cargo +1.98.0 fuzz "$sub" --features agent \
            --sanitizer "$agent_sanitizer" "$t" "$@"
    else
        cargo +nightly fuzz "$sub" "$t" "$@"
    fi
}

mkdir -p logs
summary=logs/summary.tsv
printf 'target\tseconds\texecutions\tcrashes\texit\tartifacts\n' >"$summary"

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    corpora=("corpus/$t")
    [[ -d seeds/$t ]] && corpora+=("seeds/$t")
    before=$(find "artifacts/$t" -type f | sort)
    log=logs/$t.log
    # Built right before its run, so that the seconds counted are fuzzing, not a rebuild
    # after a source change.
    fuzz build "$t" >&2
    echo "== $t: ${seconds}s" >&2
    start=$(date +%s)
    status=0
    dict=()
    [[ -f dicts/$t.dict ]] && dict=("-dict=dicts/$t.dict")
    fuzz run "$t" "${corpora[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+$' || true)
    if [[ -z $execs ]]; then
        execs=$(grep -oE '^Done [0-9]+ runs' "$log" | tail -n1 | grep -oE '[0-9]+' || true)
    fi
    new=$(comm -13 <(echo "$before") <(find "artifacts/$t" -type f | sort) | grep -E '/(crash|oom|timeout|leak|slow-unit)-' || true)
    crashes=$(grep -c . <<<"$new" || true)
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        # A failure that left no artifact (a build error, a crash of the fuzzer itself).
        crashes="? (exit $status)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$elapsed" "${execs:-?}" "$crashes" "$status" \
        "$(tr '\n' ' ' <<<"$new")" >>"$summary"
done

echo
if command -v column >/dev/null; then column -t -s $'\t' "$summary"; else cat "$summary"; fi
