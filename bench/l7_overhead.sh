#!/usr/bin/env bash
# Application overhead benchmark: what the agent costs an HTTP server at saturation.
#
# Runs its own nginx (one worker, keep-alive, access_log off, a 100-byte static file) on a free
# 127.0.0.1 port and saturates it with `wrk -t1 -c16`, in alternating runs within one
# invocation: baseline (no agent), agent (release `kindling-agent` running), baseline, agent...
# For every run it prints wrk's requests/s and p99 latency; for agent runs also the agent's
# CPU (utime+stime from /proc/PID/stat over the wrk run, in cores), agent cores per 10k calls/s
# (each request is two `calls` rows: wrk's client row and nginx's server row), the `calls` rows
# the agent recorded for the nginx port, and its drop counters (agent_stats, protocol_stats).
# wrk is pinned to CPU 0 and nginx to CPU 1 (2-vCPU machines); the agent is not pinned.
# Loopback traffic only; bounded duration (about PAIRS * 2 * (DURATION + 8) seconds).
#
#   sudo bench/l7_overhead.sh
#
# Environment: PAIRS (3), DURATION (wrk seconds, 20), CONNS (16), BIN (directory of the
# release binaries, /work/target-release/release), NGINX_SENDFILE (off), PROFILE=1 (one more,
# uncounted agent run with `perf record -a` for 5 s, top symbols printed), KEEP_TMP=1,
# KINDS ("baseline agent": the kinds of run alternated in each round; `agent-nohealth` is the
# agent with --no-net-health, without the network-health programs, `agent-segment` the agent
# with --rtt-every-segment, `agent-b` the agent binary in $BIN_B: another build, side by side),
# BPF_STATS=1 (turn on
# kernel.bpf_stats_enabled and print, per agent run, each eBPF program's runs and average ns).
set -euo pipefail

PAIRS="${PAIRS:-3}"
DURATION="${DURATION:-20}"
CONNS="${CONNS:-16}"
BIN="${BIN:-/work/target-release/release}"
NGINX_SENDFILE="${NGINX_SENDFILE:-off}"
WRK_CPU="${WRK_CPU:-0}"
KINDS="${KINDS:-baseline agent}"
if [[ " $KINDS " == *" agent-b "* ]]; then
  [[ -x "${BIN_B:-}/kindling-agent" ]] || { echo "KINDS has agent-b: set BIN_B to a directory with kindling-agent" >&2; exit 1; }
fi
NGINX_CPU="${NGINX_CPU:-1}"

[[ $EUID -eq 0 ]] || { echo "run as root (the agent loads eBPF programs)" >&2; exit 1; }
for b in kindling-agent kindling; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: build in release first (see BENCHMARKS.md)" >&2; exit 1; }
done
command -v nginx >/dev/null || apt-get install -y nginx >/dev/null
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

TMP="$(mktemp -d /tmp/kindling-l7-overhead.XXXXXX)"
chmod 755 "$TMP" # nginx workers run as www-data
NGINX_PORT="$(free_port)"
AGENT_PORT="$(free_port)"
NGINX_PID=""
AGENT_PID=""
cleanup() {
  [[ -n "$AGENT_PID" ]] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  [[ -n "$NGINX_PID" ]] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  [[ "${KEEP_TMP:-0}" == 1 ]] || rm -rf "$TMP"
  true
}
trap cleanup EXIT

# --- nginx: own config, own prefix, foreground.
mkdir -p "$TMP/www" "$TMP/temp"
head -c 99 /dev/zero | tr '\0' 'k' >"$TMP/www/file.txt"
echo >>"$TMP/www/file.txt" # 100 bytes
cat >"$TMP/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  sendfile $NGINX_SENDFILE;
  keepalive_timeout 65;
  keepalive_requests 10000000;
  client_body_temp_path $TMP/temp/body;
  proxy_temp_path $TMP/temp/proxy;
  fastcgi_temp_path $TMP/temp/fastcgi;
  uwsgi_temp_path $TMP/temp/uwsgi;
  scgi_temp_path $TMP/temp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location = /file.txt { root $TMP/www; }
  }
}
EOF
taskset -c "$NGINX_CPU" nginx -p "$TMP" -c "$TMP/nginx.conf" &
NGINX_PID=$!
URL="http://127.0.0.1:$NGINX_PORT/file.txt"
for _ in $(seq 50); do curl -sf -o /dev/null "$URL" && break; sleep 0.1; done
[[ "$(curl -sf "$URL" | wc -c)" == 100 ]] || { echo "nginx does not serve $URL" >&2; cat "$TMP/error.log" >&2; exit 1; }

q() { "$BIN/kindling" query --agent "127.0.0.1:$AGENT_PORT" "$@"; }

start_agent() { # extra agent flags as arguments; AGENT_BIN picks another build
  "${AGENT_BIN:-$BIN/kindling-agent}" --listen "127.0.0.1:$AGENT_PORT" --memory-budget 4GiB "$@" \
    >"$TMP/agent.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 150); do
    "$BIN/kindling" health --agent "127.0.0.1:$AGENT_PORT" >/dev/null 2>&1 && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$TMP/agent.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "agent did not become healthy" >&2; cat "$TMP/agent.log" >&2; exit 1
}

stop_agent() {
  kill -TERM "$AGENT_PID"
  wait "$AGENT_PID" || true
  AGENT_PID=""
}

# utime + stime of a process, in clock ticks (fields 14 and 15; comm may hold spaces).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
HZ="$(getconf CLK_TCK)"

# wrk's p99 in ms from a "99%  1.23ms" line.
p99_ms() {
  awk '$1 == "99%" {
    v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1;
    printf "%.3f", v * f }' "$1"
}

run_wrk() { # $1: output file, $2: seconds
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${2}s" --latency "$URL" >"$1"
}

echo "== machine: $(nproc) CPUs, $(uname -r), $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "== nginx 127.0.0.1:$NGINX_PORT (pid $NGINX_PID, CPU $NGINX_CPU, sendfile $NGINX_SENDFILE), wrk on CPU $WRK_CPU, agent on 127.0.0.1:$AGENT_PORT"
echo "== warm-up: wrk 5 s (not counted)"
run_wrk "$TMP/warmup.txt" 5
grep -E "Requests/sec" "$TMP/warmup.txt"

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
# Per eBPF program of the agent: runs and total ns so far (kernel.bpf_stats_enabled).
bpf_stats() {
  bpftool -j prog show 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if "run_cnt" in p and p.get("name"):
        print(p["name"], p["run_cnt"], p["run_time_ns"])' | sort
}
if [[ "${BPF_STATS:-0}" == 1 ]]; then
  sysctl -qw kernel.bpf_stats_enabled=1
fi

run_one() { # $1: run number, $2: baseline|agent|agent-nohealth
  local n="$1" kind="$2" out="$TMP/wrk-$1.txt" t0 t1 c0 c1 cores="" calls="" rps p99 reqs
  if [[ "$kind" == agent* ]]; then
    case "$kind" in
      agent-nohealth) start_agent --no-net-health ;;
      agent-segment) start_agent --rtt-every-segment ;;
      agent-b) AGENT_BIN="$BIN_B/kindling-agent" start_agent ;;
      *) start_agent ;;
    esac
    sleep 1
    c0="$(cpu_ticks "$AGENT_PID")"
    [[ "${BPF_STATS:-0}" == 1 ]] && bpf_stats >"$TMP/bpf-before-$n.txt"
  fi
  t0="$(date +%s.%N)"
  run_wrk "$out" "$DURATION"
  t1="$(date +%s.%N)"
  rps="$(awk '/^Requests\/sec/ { print $2 }' "$out")"
  reqs="$(awk '/requests in/ { print $1 }' "$out")"
  p99="$(p99_ms "$out")"
  if [[ "$kind" == agent* ]]; then
    c1="$(cpu_ticks "$AGENT_PID")"
    cores="$(echo "($c1 - $c0) / $HZ / ($t1 - $t0)" | bc -l)"
    if [[ "${BPF_STATS:-0}" == 1 ]]; then
      bpf_stats >"$TMP/bpf-after-$n.txt"
      echo "-- run $n ($kind): eBPF programs during wrk (runs, per request, average ns, ns per request)"
      join "$TMP/bpf-before-$n.txt" "$TMP/bpf-after-$n.txt" | awk -v reqs="$reqs" '
        { runs = $4 - $2; ns = $5 - $3; if (runs > 0)
            printf "   %-22s %10d runs %6.2f/req %7.0f ns %8.1f ns/req\n", $1, runs, runs / reqs, ns / runs, ns / reqs }'
    fi
    sleep 2 # a flush interval (200 ms) and then some: every call is queryable
    calls="$(q --format csv "SELECT count(*) FROM calls WHERE dst_port = $NGINX_PORT" | tail -1 || echo 0)"
    echo "-- run $n ($kind): agent_stats / protocol_stats after the run"
    q "SELECT table_name, rows_held, events_received, events_dropped, events_dropped_kernel, events_dropped_user, rows_evicted FROM agent_stats"
    q "SELECT protocol, calls, unparsed, truncated, unmatched, sessions_undetected, sessions_dropped FROM protocol_stats WHERE calls > 0 OR unparsed > 0 OR unmatched > 0"
    q "SELECT role, method, resource, status, count(*) AS calls, round(avg(duration_ns) / 1000, 1) AS avg_us FROM calls WHERE dst_port = $NGINX_PORT GROUP BY 1, 2, 3, 4 ORDER BY calls DESC LIMIT 6"
    stop_agent
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$kind" "$rps" "$p99" "$reqs" "$cores" "$calls" >>"$RESULTS"
  printf 'run %s %-8s requests/s %10s  p99 %8s ms  requests %9s' "$n" "$kind" "$rps" "$p99" "$reqs"
  [[ "$kind" == agent* ]] && printf '  agent cores %.3f  calls rows %s (%.1f%% of 2 x requests)' \
    "$cores" "$calls" "$(echo "100 * $calls / (2 * $reqs)" | bc -l)"
  echo
}

n=0
for _ in $(seq "$PAIRS"); do
  for kind in $KINDS; do
    n=$((n + 1)); run_one "$n" "$kind"
  done
done

if [[ "${PROFILE:-0}" == 1 ]] && command -v perf >/dev/null; then
  echo "== profile: one more agent run (not counted), perf record -a -g for 5 s in its middle"
  start_agent
  sleep 1
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d12s "$URL" >/dev/null &
  WRK_PID=$!
  sleep 3
  perf record -a -g -F 999 -o "$TMP/perf.data" -- sleep 5 >/dev/null 2>&1
  wait "$WRK_PID"
  stop_agent
  echo "-- by command (share of all samples, both CPUs)"
  perf report -i "$TMP/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
  echo "-- top symbols"
  perf report -i "$TMP/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40 || true
fi

echo
echo "== summary (run, kind, requests/s, p99 ms, requests, agent cores, calls rows)"
column -t "$RESULTS"
awk -F'\t' '
  { rps[$2] += $3; p99[$2] += $4; runs[$2]++; if ($6 != "") { cores[$2] += $6; calls[$2] += 2 * $3 } }
  END {
    for (k in runs) {
      line = sprintf("%-15s mean %8.0f req/s  p99 %6.3f ms", k, rps[k] / runs[k], p99[k] / runs[k])
      if ("baseline" in runs)
        line = line sprintf("  ratio to baseline %.3f", (rps[k] / runs[k]) / (rps["baseline"] / runs["baseline"]))
      if (calls[k] > 0)
        line = line sprintf("  agent %.3f cores = %.3f cores per 10k calls/s", cores[k] / runs[k], cores[k] / (calls[k] / 10000))
      print line
    }
    if (("agent" in runs) && ("agent-nohealth" in runs))
      printf "agent / agent-nohealth requests/s: %.3f\n", (rps["agent"] / runs["agent"]) / (rps["agent-nohealth"] / runs["agent-nohealth"])
    if (("agent" in runs) && ("agent-b" in runs))
      printf "agent / agent-b requests/s: %.3f, agent cores / agent-b cores: %.3f\n", (rps["agent"] / runs["agent"]) / (rps["agent-b"] / runs["agent-b"]), (cores["agent"] / runs["agent"]) / (cores["agent-b"] / runs["agent-b"])
    if (("agent-segment" in runs) && ("agent-nohealth" in runs))
      printf "agent-segment / agent-nohealth requests/s: %.3f\n", (rps["agent-segment"] / runs["agent-segment"]) / (rps["agent-nohealth"] / runs["agent-nohealth"])
  }' "$RESULTS"
