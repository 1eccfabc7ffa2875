#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each and prints, per target, the
# executions and the crashes found. Not part of CI: needs a nightly toolchain and cargo-fuzz
# (`cargo +nightly install cargo-fuzz --locked`).
#
#   bench/fuzz/run.sh [SECONDS] [TARGET...]      # SECONDS defaults to 60
#
# Corpora grow in bench/fuzz/corpus/<target>/ (seeded from seeds/<target>/, which make_seeds.py
# writes); crashing inputs land in bench/fuzz/artifacts/<target>/; libFuzzer's output in
# bench/fuzz/logs/<target>.log. Set CARGO_TARGET_DIR to build elsewhere than bench/fuzz/target.
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

cargo +nightly fuzz build >&2
mkdir -p logs
summary=logs/summary.tsv
printf 'target\tseconds\texecutions\tcrashes\texit\tartifacts\n' >"$summary"

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    corpora=("corpus/$t")
    [[ -d seeds/$t ]] && corpora+=("seeds/$t")
    before=$(find "artifacts/$t" -type f | sort)
    log=logs/$t.log
    echo "== $t: ${seconds}s" >&2
    start=$(date +%s)
    status=0
    cargo +nightly fuzz run "$t" "${corpora[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
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
