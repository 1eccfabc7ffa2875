#!/usr/bin/env bash
# HTTP/2 agent cost at fixed request rates: what following h2c streams costs the agent.
#
# nghttpd (h2c, one thread, pinned to CPU $SERVER_CPU) serves a 100-byte file; h2load (pinned to
# CPU $CLIENT_CPU) sends RATE requests/s for DURATION seconds over CONNS connections with up to
# STREAMS streams in flight on each; a fresh release agent runs unpinned for each rate. Printed
# per rate: the rate h2load achieved, the agent's CPU (utime+stime from /proc over the load) in
# cores and per 10k calls/s (each request is two `calls` rows, h2load's and nghttpd's, as in
# agent_load.sh for HTTP/1), the rows held for the port against 2 x h2load's succeeded requests,
# and the http2 parser's counters (`protocol_stats`).
#
#   sudo bench/h2_load.sh
#
# Environment: RATES ("2500 7500": 5k and 15k calls/s), DURATION (30), CONNS (4), STREAMS (4),
# BIN (target/release), SERVER_CPU (1), CLIENT_CPU (0), KEEP_TMP=1.
set -euo pipefail

RATES="${RATES:-2500 7500}"
DURATION="${DURATION:-30}"
CONNS="${CONNS:-4}"
STREAMS="${STREAMS:-4}"
BIN="${BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"

TMP="$(mktemp -d /tmp/kindling-h2-load.XXXXXX)"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVER_PID=""
trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null; bench_cleanup' EXIT
bench_need kindling-agent kindling
for t in nghttpd h2load; do
  command -v "$t" >/dev/null || { echo "$t is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
done

mkdir -p "$TMP/www"
head -c 100 /dev/zero | tr '\0' k >"$TMP/www/file.txt"
PORT="$(free_port)"
taskset -c "$SERVER_CPU" nghttpd --no-tls -d "$TMP/www" "$PORT" >/dev/null 2>&1 &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT/file.txt"
for _ in $(seq 50); do h2load -n 1 "$URL" 2>/dev/null | grep -q "1 succeeded" && break; sleep 0.1; done

echo "== h2 load: $(nproc) CPUs, $(uname -r), $(nghttpd --version | head -1); nghttpd on CPU $SERVER_CPU, h2load on CPU $CLIENT_CPU ($CONNS connections, $STREAMS streams each), agent unpinned"
value() { q --format csv "$1" | tail -1; }
echo "| requests/s target | achieved | calls/s | agent cores | cores per 10k calls/s | rows expected | rows held (port) | missing | unparsed | truncated | unmatched | dropped kernel | dropped user |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for rate in $RATES; do
  start_agent
  sleep 2
  per_client=$(( (rate + CONNS - 1) / CONNS ))
  c0="$(cpu_ticks "$AGENT_PID")"
  t0="$(date +%s.%N)"
  taskset -c "$CLIENT_CPU" h2load -c "$CONNS" -m "$STREAMS" --rps "$per_client" -D "$DURATION" "$URL" \
    >"$TMP/h2load.txt" 2>&1
  t1="$(date +%s.%N)"
  c1="$(cpu_ticks "$AGENT_PID")"
  sleep 2 # flushes: every call is queryable
  done_n="$(awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "succeeded,") print $i }' "$TMP/h2load.txt")"
  [[ -n "$done_n" ]] || { echo "h2load failed:" >&2; cat "$TMP/h2load.txt" >&2; exit 1; }
  held="$(value "SELECT count(*) FROM calls WHERE dst_port = $PORT")"
  IFS=, read -r unparsed truncated unmatched < <(q --format csv \
    "SELECT unparsed, truncated, unmatched FROM protocol_stats WHERE protocol = 'http2'" | tail -1)
  IFS=, read -r dk du < <(q --format csv \
    "SELECT events_dropped_kernel, events_dropped_user FROM agent_stats WHERE table_name = 'calls'" | tail -1)
  stop_agent
  python3 - "$rate" "$done_n" "$c0" "$c1" "$HZ" "$t0" "$t1" "$held" "$unparsed" "$truncated" "$unmatched" "$dk" "$du" <<'PY'
import sys
a = sys.argv[1:]
rate, done = int(a[0]), int(a[1])
secs = float(a[6]) - float(a[5])
cores = (int(a[3]) - int(a[2])) / int(a[4]) / secs
achieved = done / secs
calls_s = 2 * achieved
held = int(a[7])
print(f"| {rate} | {achieved:.0f} | {calls_s:.0f} | {cores:.3f} | {cores / (calls_s / 10000):.3f} | "
      f"{2 * done} | {held} | {2 * done - held} | {a[8]} | {a[9]} | {a[10]} | {a[11]} | {a[12]} |")
PY
done
