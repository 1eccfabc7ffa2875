#!/usr/bin/env bash
# Query latency of the dashboard queries (bench/queries/*.sql, with Grafana's time macros) over
# synthetic `calls` rows spread over the last hour, for each number of rows in SIZES and each
# number of agents in AGENT_COUNTS (`kindling-agent --replay`, one slice each).
#
# Time is the wall time of one `kindling query --since 1h` process (start, connections,
# planning, agents' work, merge, printing), the median and the max of ROUNDS runs after one
# uncounted run; agents and coordinator share this machine's cores. Each query's result must
# have the same number of rows with 1 agent and with 4 (the same rows, split differently),
# and the service map's calls must add up to the rows generated.
#
#   bench/query_latency.sh
#
# Each configuration runs with the agents' sealed chunks compressed (the default, lz4) and, side
# by side, with COMPARE_COMPRESSION (none: plain Arrow), to show what decoding costs a query.
#
# Environment: SIZES ("1000000 10000000"), AGENT_COUNTS ("1 4"), ROUNDS (5),
# COMPRESSION (lz4), COMPARE_COMPRESSION (none; empty for no comparison), BIN (release
# binaries, target/release), WORK (/tmp/kindling-query-latency).
set -euo pipefail

SIZES="${SIZES:-1000000 10000000}"
AGENT_COUNTS="${AGENT_COUNTS:-1 4}"
ROUNDS="${ROUNDS:-5}"
COMPRESSION="${COMPRESSION:-lz4}"
COMPARE_COMPRESSION="${COMPARE_COMPRESSION-none}"
BIN="${BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release}"
WORK="${WORK:-/tmp/kindling-query-latency}"
QUERIES="$(cd "$(dirname "${BASH_SOURCE[0]}")/queries" && pwd)"

TMP="$WORK" # bench_cleanup removes it unless KEEP_TMP=1: generated data is cheap to remake
mkdir -p "$WORK"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for b in kindling-agent kindling gen_calls; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: build in release first (bench/run does)" >&2; exit 1; }
done
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bench_cleanup
}
trap cleanup EXIT

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
echo "== query latency: $(nproc) CPUs, queries: $(cd "$QUERIES" && echo *.sql)"
# Runs every query against AGENTS replay agents of $1 (a gen_calls directory) holding $2 rows,
# their chunks compressed with $4; $3 is the number of agents.
measure() {
  local data="$1" rows="$2" agents="$3" codec="$4" r held bytes name sql times f t0 t1 args \
    result_rows total median max
  PIDS=()
  start_replay_agents "$data" "$agents" --chunk-compression "$codec"
  args=("${REPLAY_ARGS[@]}")
  IFS=, read -r held bytes < <("$BIN/kindling" query "${args[@]}" --format csv \
    "SELECT sum(rows_held), sum(bytes_held) FROM agent_stats WHERE table_name = 'calls'" | tail -1)
  [[ "$held" == "$rows" ]] || { echo "agents hold $held rows, not $rows" >&2; exit 1; }
  echo "-- $rows rows over $agents agent(s), chunks $codec: $(echo "$bytes / $rows" | bc -l | xargs printf '%.1f') bytes per row held"
  for f in "$QUERIES"/*.sql; do
    name="$(basename "$f" .sql)"
    sql="$(grep -v '^--' "$f")"
    times=()
    for ((r = 0; r <= ROUNDS; r++)); do
      t0="$(date +%s.%N)"
      "$BIN/kindling" query "${args[@]}" --since 1h --format csv --timeout 120 --memory-mib 2048 "$sql" \
        >"$WORK/out.csv"
      t1="$(date +%s.%N)"
      ((r > 0)) && times+=("$(echo "$t1 - $t0" | bc -l)")
    done
    result_rows=$(($(wc -l <"$WORK/out.csv") - 1))
    if [[ "$name" == service_map || "$name" == call_rate ]]; then
      total="$(python3 -c 'import csv, sys; print(sum(int(r["calls"]) for r in csv.DictReader(open(sys.argv[1]))))' "$WORK/out.csv")"
      [[ "$total" == "$rows" ]] || { echo "$name counts $total calls, not $rows" >&2; exit 1; }
    fi
    read -r median max < <(printf '%s\n' "${times[@]}" | sort -g | awk '{ t[NR] = $1 } END { printf "%.3f %.3f\n", t[int((NR + 1) / 2)], t[NR] }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rows" "$agents" "$codec" "$median" "$max" "$result_rows" >>"$RESULTS"
    printf '%-22s %9s rows %s agent(s) %-4s: median %6.3f s, max %6.3f s, %s result rows\n' \
      "$name" "$rows" "$agents" "$codec" "$median" "$max" "$result_rows"
  done
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}

for rows in $SIZES; do
  for agents in $AGENT_COUNTS; do
    data="$WORK/data-$rows-$agents"
    rm -rf "$data"
    # Timestamps over the last 50 minutes: every row is inside --since 1h for the next ten.
    "$BIN/gen_calls" "$data" "$rows" "$agents" 3000 >/dev/null
    rm -rf "$data/all" # only DuckDB reads it
    for codec in $COMPRESSION $COMPARE_COMPRESSION; do
      measure "$data" "$rows" "$agents" "$codec"
    done
    rm -rf "$data"
  done
done

echo
echo "== summary: median (max) seconds of $ROUNDS runs"
python3 - "$RESULTS" <<'EOF'
import sys
cells, cols, names = {}, [], []
for line in open(sys.argv[1]):
    name, size, agents, codec, median, mx, n = line.rstrip("\n").split("\t")
    col = f"{int(size):,} rows, {agents} agent{'s' if agents != '1' else ''}, {codec}"
    cols += [col] if col not in cols else []
    names += [name] if name not in names else []
    cells[(name, col)] = f"{median} ({mx})"
print("| query | " + " | ".join(cols) + " |")
print("|" + " --- |" * (len(cols) + 1))
for n in names:
    print(f"| `{n}` | " + " | ".join(cells.get((n, c), "") for c in cols) + " |")
EOF

# The same rows split over 1 or 4 agents, plain or compressed: every query must give as many
# result rows (but call_rate, whose time buckets depend on when the rows were generated; its
# calls are checked above, like the service map's).
python3 - "$RESULTS" <<'EOF'
import collections, sys
rows = collections.defaultdict(set)
for line in open(sys.argv[1]):
    name, size, agents, codec, median, mx, n = line.rstrip("\n").split("\t")
    if name != "call_rate":
        rows[(name, size)].add(n)
bad = [k for k, v in rows.items() if len(v) > 1]
if bad:
    sys.exit(f"result row counts differ between agent counts: {bad}")
EOF

