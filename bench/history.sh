#!/usr/bin/env bash
# History on disk: what a day of calls costs on disk and how fast dashboard queries read it.
#
# 1. `gen_calls --history` writes ROWS synthetic `calls` rows of one node, spread over the 24
#    hours that end now, through the agent's own store and history writer (the files a
#    `--history-dir` holds). Printed: bytes per row on disk, the days of 10k calls/s that 10 GiB
#    hold, and the writer's rows per CPU second.
# 2. `kindling-agent --replay` serves that directory (read-only, from the files: nothing is
#    loaded into memory) and the `kindling` CLI sends dashboard queries through the coordinator,
#    as Grafana would; DuckDB (PyPI `duckdb`, in a venv under $WORK) runs the same queries over
#    the same files, in the same run, alternating, ROUNDS times. kindling's time is the CLI's
#    wall time (process start and connection included); DuckDB's is its query time in-process.
#    The answers are checked against each other before any time is printed.
#
#   bench/history.sh
#
# Environment: ROWS (100000000), ROUNDS (3), BIN (/work/target-release/release), WORK
# (/tmp/kindling-history: reused when ROWS matches), DUCKDB_THREADS (2).
set -euo pipefail

ROWS="${ROWS:-100000000}"
ROUNDS="${ROUNDS:-3}"
BIN="${BIN:-/work/target-release/release}"
WORK="${WORK:-/tmp/kindling-history}"
DUCKDB_THREADS="${DUCKDB_THREADS:-2}"
SPAN=86400

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_bins kindling-agent kindling gen_calls
mkdir -p "$WORK"
duckdb_venv "$WORK"

if [[ "$(cat "$WORK/rows" 2>/dev/null)" != "$ROWS" ]]; then
  rm -rf "$WORK/history" "$WORK/rows"
  "$BIN/gen_calls" --history "$WORK/history" "$ROWS" "$SPAN" >"$WORK/gen.txt"
  date +%s >"$WORK/end"
  echo "$ROWS" >"$WORK/rows"
fi
cat "$WORK/gen.txt"
bytes="$(du -sb "$WORK/history/calls" | cut -f1)"
files="$(find "$WORK/history/calls" -name '*.parquet' | wc -l)"
awk -v b="$bytes" -v r="$ROWS" -v f="$files" 'BEGIN {
  per = b / r
  printf "on disk: %d bytes in %d files, %.1f bytes per call; 10 GiB hold %.2f days of 10k calls/s\n", b, f, per, 10 * 2^30 / per / 10000 / 86400
}'

PORT="$(free_port)"
"$BIN/kindling-agent" --listen "127.0.0.1:$PORT" --node-name node-0 --replay "$WORK/history" \
  2>"$WORK/agent.log" &
AGENT=$!
trap 'kill -TERM $AGENT 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do "$BIN/kindling" health --agent "127.0.0.1:$PORT" >/dev/null 2>&1 && break; sleep 0.1; done

# The hour and the five minutes before the data's end (the generator's "now").
end="$(cat "$WORK/end")"
hour="$(date -u -d "@$((end - 3600))" +%Y-%m-%dT%H:%M:%SZ)"
five="$(date -u -d "@$((end - 300))" +%Y-%m-%dT%H:%M:%SZ)"

declare -A KQ DQ
KQ[service_map_24h]="SELECT comm, dst_ip, dst_port, count(*) AS calls, sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors FROM calls GROUP BY comm, dst_ip, dst_port ORDER BY comm, dst_ip"
DQ[service_map_24h]="${KQ[service_map_24h]}"
KQ[p99_by_endpoint_1h]="SELECT resource, count(*) AS calls, approx_percentile_cont(waiting_ttfb_ns, 0.99) AS p99 FROM calls WHERE ts >= '$hour' GROUP BY resource ORDER BY resource"
DQ[p99_by_endpoint_1h]="SELECT resource, count(*) AS calls, approx_quantile(waiting_ttfb_ns, 0.99) AS p99 FROM calls WHERE ts >= TIMESTAMPTZ '$hour' GROUP BY resource ORDER BY resource"
KQ[slowest_1h]="SELECT resource, waiting_ttfb_ns FROM calls WHERE ts >= '$hour' ORDER BY waiting_ttfb_ns DESC, resource LIMIT 20"
DQ[slowest_1h]="SELECT resource, waiting_ttfb_ns FROM calls WHERE ts >= TIMESTAMPTZ '$hour' ORDER BY waiting_ttfb_ns DESC, resource LIMIT 20"
KQ[calls_5min]="SELECT count(*) AS calls FROM calls WHERE ts >= '$five'"
DQ[calls_5min]="SELECT count(*) AS calls FROM calls WHERE ts >= TIMESTAMPTZ '$five'"

kq() {
  local t0 t1
  t0="$(date +%s.%N)"
  "$BIN/kindling" query --agent "127.0.0.1:$PORT" --format csv --timeout 600 --memory-mib 4096 "$1" >"$WORK/out.csv"
  t1="$(date +%s.%N)"
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

dq() { duckdb_query "$PY" "$WORK/history/calls/*.parquet" "$1" "$WORK/duck.csv" "$DUCKDB_THREADS"; }

# The first two columns of both answers (groups and counts, or the slowest calls) must agree.
check() {
  local got want
  got="$(tail -n +2 "$WORK/out.csv" | cut -d, -f1,2 | sort | md5sum)"
  want="$(cut -d, -f1,2 "$WORK/duck.csv" | sort | md5sum)"
  [[ "$got" == "$want" ]] || { echo "$1: kindling and DuckDB disagree" >&2; diff <(tail -n +2 "$WORK/out.csv" | cut -d, -f1,2 | sort) <(cut -d, -f1,2 "$WORK/duck.csv" | sort) | head >&2; exit 1; }
}

echo "rows=$ROWS rounds=$ROUNDS duckdb_threads=$DUCKDB_THREADS $(nproc) cores"
for name in service_map_24h p99_by_endpoint_1h slowest_1h calls_5min; do
  for ((r = 1; r <= ROUNDS; r++)); do
    tk="$(kq "${KQ[$name]}")"
    td="$(dq "${DQ[$name]}")"
    check "$name"
    printf '%s round %d: rows_out=%d kindling=%.3fs duckdb=%.3fs ratio=%.2f\n' "$name" "$r" \
      "$(($(wc -l <"$WORK/out.csv") - 1))" "$tk" "$td" "$(awk -v a="$tk" -v b="$td" 'BEGIN { print a / b }')"
  done
done
echo "agent RSS after the queries: $(awk '/VmRSS/ {print $2, $3}' "/proc/$AGENT/status")"
