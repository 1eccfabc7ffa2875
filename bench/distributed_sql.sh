#!/usr/bin/env bash
# Distributed SQL benchmark: a service-map aggregation and a p99-by-endpoint query over ROWS
# synthetic `calls` rows spread over AGENTS agents (`kindling-agent --replay`, one slice each),
# against DuckDB over the same rows in one Parquet file, in the same run.
#
# Each round runs, in turn: kindling (partial aggregation on agents, the default), kindling
# --no-partial-agg (agents send rows, the coordinator aggregates) and DuckDB (PyPI `duckdb`, in
# a venv under $WORK, its query time in-process with the file already registered). kindling's
# time is the `kindling query` process's wall time (connection set-up and process start
# included); its bytes are what the agents sent (`--stats`). Results are checked against each
# other before any time is printed: the group counts and every group's call count must match.
# All processes share this machine's cores: the agents, the coordinator and DuckDB are not
# pinned.
#
#   bench/distributed_sql.sh
#
# Environment: ROWS (10000000), AGENTS (4), ROUNDS (5), BIN (release binaries,
# /work/target-release/release), WORK (/tmp/kindling-dsql: generated data, reused when its
# size matches), DUCKDB_THREADS (2).
set -euo pipefail

ROWS="${ROWS:-10000000}"
AGENTS="${AGENTS:-4}"
ROUNDS="${ROUNDS:-5}"
BIN="${BIN:-/work/target-release/release}"
WORK="${WORK:-/tmp/kindling-dsql}"
DUCKDB_THREADS="${DUCKDB_THREADS:-2}"

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_bins kindling-agent kindling gen_calls
mkdir -p "$WORK"
duckdb_venv "$WORK"

if [[ "$(cat "$WORK/data/rows" 2>/dev/null)" != "$ROWS x $AGENTS" ]]; then
  rm -rf "$WORK/data"
  "$BIN/gen_calls" "$WORK/data" "$ROWS" "$AGENTS"
  echo "$ROWS x $AGENTS" >"$WORK/data/rows"
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_replay_agents "$WORK/data" "$AGENTS" --chunk-rows 65536
AGENT_ARGS=("${REPLAY_ARGS[@]}")
"$BIN/kindling" health "${AGENT_ARGS[@]}"

SERVICE_MAP="SELECT comm, dst_ip, dst_port, count(*) AS calls, \
sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, avg(waiting_ttfb_ns) AS mean_ttfb_ns \
FROM calls GROUP BY comm, dst_ip, dst_port ORDER BY comm, dst_ip"
P99_BY_ENDPOINT="SELECT resource, count(*) AS calls, \
approx_percentile_cont(waiting_ttfb_ns, 0.99) AS p99_ns FROM calls GROUP BY resource ORDER BY resource"
DUCK_SERVICE_MAP="${SERVICE_MAP}"
DUCK_P99="SELECT resource, count(*) AS calls, approx_quantile(waiting_ttfb_ns, 0.99) AS p99_ns \
FROM calls GROUP BY resource ORDER BY resource"

# kindling QUERY [extra args]: prints "seconds bytes" and leaves the CSV in $WORK/out.csv.
kindling() {
  local sql="$1"
  shift
  local t0 t1
  t0="$(date +%s.%N)"
  "$BIN/kindling" query "${AGENT_ARGS[@]}" --stats --format csv --timeout 600 --memory-mib 8192 \
    "$@" "$sql" >"$WORK/out.csv" 2>"$WORK/stats.txt"
  t1="$(date +%s.%N)"
  local bytes
  bytes="$(sed -n 's/.*; \([0-9]*\) bytes received from agents/\1/p' "$WORK/stats.txt")"
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $bytes"
}

# duck QUERY: prints "seconds" and leaves the CSV in $WORK/duck.csv.
duck() { duckdb_query "$PY" "$WORK/data/all/calls.parquet" "$1" "$WORK/duck.csv" "$DUCKDB_THREADS"; }

# check NAME: kindling's and DuckDB's results have the same groups with the same call counts.
check() {
  local got want
  got="$(tail -n +2 "$WORK/out.csv" | awk -F, -v n="$2" '{print $1","$n}' | sort | md5sum)"
  want="$(awk -F, -v n="$2" '{print $1","$n}' "$WORK/duck.csv" | sort | md5sum)"
  [[ "$got" == "$want" ]] || { echo "$1: kindling and DuckDB disagree on groups or counts" >&2; exit 1; }
}

echo "rows=$ROWS agents=$AGENTS rounds=$ROUNDS duckdb_threads=$DUCKDB_THREADS $(nproc) cores"
parquet_bytes="$(stat -c %s "$WORK/data/all/calls.parquet")"
echo "parquet file: $parquet_bytes bytes"
for name in service_map p99_by_endpoint; do
  if [[ $name == service_map ]]; then sql="$SERVICE_MAP"; dsql="$DUCK_SERVICE_MAP"; col=4; else sql="$P99_BY_ENDPOINT"; dsql="$DUCK_P99"; col=2; fi
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r t_split b_split < <(kindling "$sql")
    groups="$(($(wc -l <"$WORK/out.csv") - 1))"
    t_duck="$(duck "$dsql")"
    check "$name" "$col"
    read -r t_rows b_rows < <(kindling "$sql" --no-partial-agg)
    printf '%s round %d: groups=%d kindling=%.3fs (%s bytes) kindling-no-partial-agg=%.3fs (%s bytes) duckdb=%.3fs ratio_kindling/duckdb=%.2f ratio_rows/partial_bytes=%.0f\n' \
      "$name" "$r" "$groups" "$t_split" "$b_split" "$t_rows" "$b_rows" "$t_duck" \
      "$(awk -v a="$t_split" -v b="$t_duck" 'BEGIN { print a / b }')" "$(awk -v a="$b_rows" -v b="$b_split" 'BEGIN { print a / b }')"
  done
done

# Accuracy of the p99s: kindling's (merged t-digests) and DuckDB's approx_quantile against the
# exact quantile_cont, per endpoint.
kindling "$P99_BY_ENDPOINT" >/dev/null
cp "$WORK/out.csv" "$WORK/kindling_p99.csv"
duck "$DUCK_P99" >/dev/null
cp "$WORK/duck.csv" "$WORK/duck_p99.csv"
duck "SELECT resource, count(*) AS calls, quantile_cont(waiting_ttfb_ns, 0.99) AS p99_ns FROM calls GROUP BY resource ORDER BY resource" >/dev/null
"$PY" - "$WORK/kindling_p99.csv" "$WORK/duck_p99.csv" "$WORK/duck.csv" <<'PYEOF'
import csv, statistics, sys
def load(path, header):
    with open(path) as f:
        rows = list(csv.reader(f))
    return {r[0]: float(r[2]) for r in (rows[1:] if header else rows)}
kindling, duck_approx, exact = load(sys.argv[1], True), load(sys.argv[2], False), load(sys.argv[3], False)
for name, got in (("kindling", kindling), ("duckdb approx_quantile", duck_approx)):
    errors = [abs(got[k] - v) / v for k, v in exact.items()]
    print(f"p99 relative error vs exact, {name}: median {statistics.median(errors):.4f}, max {max(errors):.4f} over {len(errors)} endpoints")
PYEOF
