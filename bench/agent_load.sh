#!/usr/bin/env bash
# Agent cost at fixed request rates, and the ingest ceiling: what the agent uses and drops
# while nginx serves a steady, known load.
#
# For each rate of RATES (requests/s) a fresh release agent starts, then `loadgen` (bench/src/
# bin/loadgen.rs, pinned to CPU $LOADGEN_CPU) sends that many keep-alive GET requests per second
# to our own nginx (pinned to CPU $NGINX_CPU) for DURATION seconds. Every request is two `calls`
# rows on loopback (the client's and nginx's), so calls/s is twice the rate. Printed per rate:
# - the rate achieved, and the agent's CPU (utime+stime from /proc over the load) in cores and
#   in cores per 10k calls/s;
# - its RSS, sampled every second: idle before the load, mean and max during it, and whether
#   the max stayed within --memory-budget plus OVERHEAD;
# - events received per second and the drop counters (kernel, user) of `agent_stats`;
# - the accounting of calls: rows expected (2 x responses loadgen read), rows held plus rows
#   evicted from `calls`, the difference, and the parsers' `unmatched` and `unparsed` counts;
# - `calls` bytes per row held (Arrow buffers over rows, from `agent_stats`) and the retention
#   that gives: minutes of 10k calls/s per GiB; at the rate COLUMNS_AT, the bytes per row of
#   each column too (`kindling dump`, then bench/src/bin/column_bytes.rs).
# With STOP_AT_LIMIT=1 (the ingest ceiling) it stops at the first rate where drops begin or the
# load falls short of its target (this machine can generate no more).
#
#   sudo bench/agent_load.sh
#
# Environment: RATES ("500 5000 15000": 1k, 10k and 30k calls/s; RATE:none or RATE:zstd runs the
# agent with that --chunk-compression instead of lz4), DURATION (180), CONNS (32),
# BUDGET (256MiB), OVERHEAD (128: MiB of RSS allowed beyond the budget), AGENT_WRAP (a command
# to run the agent under, e.g. "taskset -c 1 nice -n 19" to starve it), STOP_AT_LIMIT (0),
# BIN (target/release), NGINX_CPU (1), LOADGEN_CPU (0), LABEL (a name for the
# summary), COLUMNS_AT (5000), KEEP_TMP=1, AGENT_ARGS (more agent flags, e.g.
# "--history-dir /tmp/h": a fresh directory per run is the caller's).
set -euo pipefail

RATES="${RATES:-500 5000 15000}"
DURATION="${DURATION:-180}"
CONNS="${CONNS:-32}"
BUDGET="${BUDGET:-256MiB}"
OVERHEAD="${OVERHEAD:-128}"
STOP_AT_LIMIT="${STOP_AT_LIMIT:-0}"
BIN="${BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release}"
NGINX_CPU="${NGINX_CPU:-1}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
LABEL="${LABEL:-agent load}"
COLUMNS_AT="${COLUMNS_AT:-5000}"

TMP="$(mktemp -d /tmp/kindling-agent-load.XXXXXX)"
chmod 755 "$TMP" # nginx workers run as www-data
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap bench_cleanup EXIT
bench_need kindling-agent kindling loadgen column_bytes
start_nginx "$NGINX_CPU"

budget_mib="$(echo "$BUDGET" | awk '/MiB$/ { print $0 + 0 } /GiB$/ { print 1024 * $0 }')"
[[ -n "$budget_mib" ]] || { echo "BUDGET must be in MiB or GiB, e.g. 256MiB" >&2; exit 1; }

echo "== $LABEL: $(nproc) CPUs, $(uname -r), $(nginx -v 2>&1); nginx on CPU $NGINX_CPU, loadgen on CPU $LOADGEN_CPU, agent ${AGENT_WRAP:-unpinned}, budget $BUDGET"
taskset -c "$LOADGEN_CPU" "$BIN/loadgen" "127.0.0.1:$NGINX_PORT" /file.txt 2000 3 "$CONNS" >/dev/null # warm-up

# The one value a query over the agent returns.
value() { q --format csv "$1" | tail -1; }

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
for run in $RATES; do
  rate="${run%%:*}"
  codec=lz4
  [[ "$run" == *:* ]] && codec="${run#*:}"
  # shellcheck disable=SC2086 # AGENT_ARGS is a list of flags
  start_agent --memory-budget "$BUDGET" --chunk-compression "$codec" ${AGENT_ARGS:-}
  sleep 2
  idle_kib="$(rss_kib "$AGENT_PID")"
  ev0="$(value "SELECT events_received FROM agent_stats WHERE table_name = 'calls'")"
  c0="$(cpu_ticks "$AGENT_PID")"
  t0="$(date +%s.%N)"
  taskset -c "$LOADGEN_CPU" "$BIN/loadgen" "127.0.0.1:$NGINX_PORT" /file.txt "$rate" "$DURATION" "$CONNS" \
    >"$TMP/loadgen.json" &
  load_pid=$!
  : >"$TMP/rss.txt"
  while kill -0 "$load_pid" 2>/dev/null; do rss_kib "$AGENT_PID" >>"$TMP/rss.txt"; sleep 1; done
  wait "$load_pid" || { echo "loadgen failed: $(cat "$TMP/loadgen.json")" >&2; exit 1; }
  t1="$(date +%s.%N)"
  c1="$(cpu_ticks "$AGENT_PID")"
  sleep 2 # a flush interval (200 ms) and then some: every call is queryable
  read -r requests achieved p99_us < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); print(r["requests"], r["achieved_rate"], r["p99_us"])' "$TMP/loadgen.json")
  IFS=, read -r received dropped_k dropped_u held evicted bytes < <(q --format csv \
    "SELECT events_received, events_dropped_kernel, events_dropped_user, rows_held, rows_evicted, bytes_held FROM agent_stats WHERE table_name = 'calls'" | tail -1)
  port_rows="$(value "SELECT count(*) FROM calls WHERE dst_port = $NGINX_PORT")"
  other_rows=$((held - port_rows)) # calls of anything else on this host during the run
  IFS=, read -r unmatched unparsed < <(q --format csv "SELECT unmatched, unparsed FROM protocol_stats WHERE protocol = 'http'" | tail -1)
  if [[ "$run" == "$COLUMNS_AT" ]]; then
    { "$BIN/kindling" dump --agent "127.0.0.1:$AGENT_PORT" --out "$TMP/dump" >/dev/null &&
      "$BIN/column_bytes" "$TMP/dump" calls >"$TMP/columns.txt"; } ||
      echo "(the dump for the column breakdown failed; see above)" >"$TMP/columns.txt"
    rm -rf "$TMP/dump"
  fi
  stop_agent
  python3 - "$run" "$requests" "$achieved" "$p99_us" "$c0" "$c1" "$HZ" "$t0" "$t1" "$TMP/rss.txt" \
    "$idle_kib" "$ev0" "$received" "$dropped_k" "$dropped_u" "$held" "$evicted" "$bytes" \
    "$port_rows" "$other_rows" "$unmatched" "$unparsed" "$budget_mib" "$OVERHEAD" >>"$RESULTS" <<'EOF'
import sys
a = sys.argv[1:]
run, requests, achieved, p99_us = a[0], int(a[1]), float(a[2]), int(a[3])
rate = float(run.split(":")[0])
cores = (int(a[5]) - int(a[4])) / int(a[6]) / (float(a[8]) - float(a[7]))
rss = [int(l) for l in open(a[9]) if l.strip()]
idle = int(a[10]) / 1024
ev0, received, dk, du = int(a[11]), int(a[12]), int(a[13]), int(a[14])
held, evicted, nbytes, port_rows, other_rows = (int(x) for x in a[15:20])
unmatched, unparsed, budget, overhead = int(a[20]), int(a[21]), int(a[22]), int(a[23])
secs = float(a[8]) - float(a[7])
calls_s = 2 * achieved
expected = 2 * requests
accounted = port_rows + evicted  # evicted rows were the port's calls or, rarely, other calls
bpr = nbytes / held if held else 0
max_rss = max(rss) / 1024 if rss else 0
print("\t".join(str(x) for x in [
    run, f"{achieved:.0f}", f"{calls_s:.0f}", f"{p99_us / 1000:.2f}",
    f"{cores:.3f}", f"{cores / (calls_s / 10000):.3f}" if calls_s else "",
    f"{idle:.0f}", f"{sum(rss) / len(rss) / 1024:.0f}" if rss else "", f"{max_rss:.0f}",
    "yes" if max_rss <= budget + overhead else "NO",
    f"{(received - ev0) / secs:.0f}", dk, du,
    expected, port_rows, evicted, expected - accounted, other_rows, unmatched, unparsed,
    f"{bpr:.1f}", f"{(1 << 30) / (bpr * 10000) / 60:.1f}" if bpr else "",
]))
EOF
  tail -1 "$RESULTS" | awk -F'\t' '{ printf "rate %s/s: achieved %s req/s = %s calls/s, agent %s cores (%s per 10k calls/s), RSS idle/mean/max %s/%s/%s MiB, within budget+overhead: %s, drops kernel %s user %s, rows expected %s held %s evicted %s missing %s\n", $1, $2, $3, $5, $6, $7, $8, $9, $10, $12, $13, $14, $15, $16, $17 }'
  if [[ "$STOP_AT_LIMIT" == 1 ]]; then
    short="$(awk -v r="$rate" -v a="$achieved" 'BEGIN { print (a < 0.95 * r) ? 1 : 0 }')"
    if [[ "$short" == 1 || "$dropped_k" != 0 || "$dropped_u" != 0 ]]; then
      echo "-- stopped: $([[ "$short" == 1 ]] && echo "the load fell short of its target" || echo "drops began")"
      break
    fi
  fi
done

echo
echo "== summary: $LABEL"
echo "| requests/s target (:compression) | achieved | calls/s | p99 ms | agent cores | cores per 10k calls/s | RSS idle MiB | RSS mean MiB | RSS max MiB | max <= budget + ${OVERHEAD} MiB | events/s | dropped kernel | dropped user | rows expected | rows held (port) | rows evicted | missing | other rows | unmatched | unparsed | bytes/row | min per GiB at 10k calls/s |"
echo "|$(printf ' --- |%.0s' $(seq 22))"
awk -F'\t' '{ line = "|"; for (i = 1; i <= NF; i++) line = line " " $i " |"; print line }' "$RESULTS"
if [[ -s "$TMP/columns.txt" ]]; then
  echo
  echo "== calls columns at $COLUMNS_AT requests/s (the rows held at the end, as one compacted chunk)"
  cat "$TMP/columns.txt"
fi
