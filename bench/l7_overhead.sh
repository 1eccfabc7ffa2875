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
# release binaries, /work/target-release/release), NGINX_SENDFILE (off), NGINX_TLS=1 (HTTPS: nginx and wrk through
# OpenSSL, a self-signed certificate), GO_SERVER=1 (the Go HTTPS test server, Go's crypto/tls, in
# place of nginx: wrk over TLS to it), PROFILE=1 (one more,
# uncounted agent run with `perf record -a` for 5 s, top symbols printed), SCHED=1 (one more,
# uncounted agent run with `perf sched record` for 2 s: each thread's waits for a CPU and its
# CPU time per CPU), KEEP_TMP=1,
# KINDS ("baseline agent": the kinds of run alternated in each round; `agent-nohealth` is the
# agent with --no-net-health, without the network-health programs, `agent-segment` the agent
# with --rtt-every-segment, `agent-b` the agent binary in $BIN_B: another build, side by side
# (`agent-c`: a third one, in $BIN_C),
# `agent-wrap` the agent run under the command in $WRAP_B (e.g. "chrt -b 0": SCHED_BATCH),
# `tcpdump` the libpcap approach writing every packet of the port to a file (`tcpdump -w`),
# `tshark` the libpcap approach decoding HTTP live; for these two "observer cores" is their CPU
# and what they saw is their packet and drop counts), BPF_STATS=1 (turn on
# kernel.bpf_stats_enabled and print, per agent run, each eBPF program's runs and average ns).
set -euo pipefail

PAIRS="${PAIRS:-3}"
DURATION="${DURATION:-20}"
CONNS="${CONNS:-16}"
BIN="${BIN:-/work/target-release/release}"
NGINX_SENDFILE="${NGINX_SENDFILE:-off}"
WRK_CPU="${WRK_CPU:-0}"
KINDS="${KINDS:-baseline agent}"
if [[ " $KINDS " == *" agent-wrap "* && -z "${WRAP_B:-}" ]]; then
  echo "KINDS has agent-wrap: set WRAP_B to the command to run the agent under" >&2; exit 1
fi
for other in b c; do
  if [[ " $KINDS " == *" agent-$other "* ]]; then
    dir_var="BIN_${other^^}"
    [[ -x "${!dir_var:-}/kindling-agent" ]] || { echo "KINDS has agent-$other: set $dir_var to a directory with kindling-agent" >&2; exit 1; }
  fi
done
NGINX_CPU="${NGINX_CPU:-1}"

TMP="$(mktemp -d /tmp/kindling-l7-overhead.XXXXXX)"
chmod 755 "$TMP" # nginx workers run as www-data
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap bench_cleanup EXIT
bench_need kindling-agent kindling
command -v wrk >/dev/null || { echo "wrk is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
for kind in $KINDS; do
  case "$kind" in
    tcpdump | tshark) command -v "$kind" >/dev/null || { echo "$kind is not installed (bench/run installs it)" >&2; exit 1; } ;;
  esac
done
start_nginx "$NGINX_CPU"

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

echo "== machine: $(nproc) CPUs, $(uname -r), $(nginx -v 2>&1), $(go version 2>/dev/null), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "== nginx 127.0.0.1:$NGINX_PORT (pid $NGINX_PID, CPU $NGINX_CPU, sendfile $NGINX_SENDFILE), wrk on CPU $WRK_CPU"
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
    if p.get("name"):
        # A program not run yet has no counts (the TLS uprobes before the first request).
        print(p["name"], p.get("run_cnt", 0), p.get("run_time_ns", 0))' | sort
}
if [[ "${BPF_STATS:-0}" == 1 ]]; then
  sysctl -qw kernel.bpf_stats_enabled=1
fi

# libpcap observers, started before wrk and stopped after it. tcpdump writes every packet of
# the nginx port to a file; tshark decodes them and prints one line per HTTP request. Each
# sets OBS_PIDS (their processes, for CPU) and is stopped by stop_pcap.
start_pcap() { # $1: tcpdump|tshark
  case "$1" in
    tcpdump) tcpdump -i lo -n -s 0 -B 16384 -w "$TMP/cap.pcap" "tcp port $NGINX_PORT" 2>"$TMP/pcap.err" & ;;
    tshark) tshark -i lo -n -B 16 -f "tcp port $NGINX_PORT" -Y http.request -T fields \
      -e http.request.uri >"$TMP/tshark.out" 2>"$TMP/pcap.err" & ;;
  esac
  PCAP_PID=$!
  for _ in $(seq 100); do grep -qiE 'listening on|capturing on' "$TMP/pcap.err" && break; sleep 0.1; done
  sleep 0.5
  OBS_PIDS="$PCAP_PID $(pgrep -P "$PCAP_PID" | tr '\n' ' ' || true)" # tshark's dumpcap child
}

# Sets SEEN: packets captured and dropped by the kernel, or the HTTP requests tshark decoded.
# SIGTERM, not SIGINT: background jobs of a script start with SIGINT ignored.
stop_pcap() {
  kill -TERM "$PCAP_PID"
  wait "$PCAP_PID" 2>/dev/null || true
  if [[ "$1" == tshark ]]; then
    SEEN="$(wc -l <"$TMP/tshark.out") requests decoded, $(grep -oE '[0-9]+ packets? dropped' "$TMP/pcap.err" | head -1 || echo '0 packets dropped')"
  else
    SEEN="$(grep -oE '^[0-9]+ packets captured' "$TMP/pcap.err"), $(grep -oE '[0-9]+ packets dropped by kernel' "$TMP/pcap.err")"
  fi
  rm -f "$TMP/cap.pcap"
}

# CPU ticks of every process in $OBS_PIDS (those that still exist).
obs_ticks() {
  local p t=0
  for p in $OBS_PIDS; do [[ -r "/proc/$p/stat" ]] && t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}

run_one() { # $1: run number, $2: a kind of $KINDS
  local n="$1" kind="$2" out="$TMP/wrk-$1.txt" t0 t1 c0 c1 cores="" seen="" rps p99 reqs
  OBS_PIDS=""
  case "$kind" in
    agent-nohealth) start_agent --memory-budget 4GiB --no-net-health ;;
    agent-segment) start_agent --memory-budget 4GiB --rtt-every-segment ;;
    agent-b) AGENT_BIN="$BIN_B/kindling-agent" start_agent --memory-budget 4GiB ;;
    agent-c) AGENT_BIN="$BIN_C/kindling-agent" start_agent --memory-budget 4GiB ;;
    agent-wrap) AGENT_WRAP="$WRAP_B" start_agent --memory-budget 4GiB ;;
    agent) start_agent --memory-budget 4GiB ;;
    tcpdump | tshark) start_pcap "$kind" ;;
  esac
  [[ "$kind" == agent* ]] && { sleep 1; OBS_PIDS="$AGENT_PID"; }
  if [[ -n "$OBS_PIDS" ]]; then
    c0="$(obs_ticks)"
    [[ "${BPF_STATS:-0}" == 1 ]] && bpf_stats >"$TMP/bpf-before-$n.txt"
  fi
  t0="$(date +%s.%N)"
  run_wrk "$out" "$DURATION"
  t1="$(date +%s.%N)"
  rps="$(awk '/^Requests\/sec/ { print $2 }' "$out")"
  reqs="$(awk '/requests in/ { print $1 }' "$out")"
  p99="$(p99_ms "$out")"
  if [[ -n "$OBS_PIDS" ]]; then
    c1="$(obs_ticks)"
    cores="$(echo "($c1 - $c0) / $HZ / ($t1 - $t0)" | bc -l | xargs printf '%.3f')"
  fi
  if [[ "$kind" == agent* ]]; then
    if [[ "${BPF_STATS:-0}" == 1 ]]; then
      bpf_stats >"$TMP/bpf-after-$n.txt"
      echo "-- run $n ($kind): eBPF programs during wrk (runs, per request, average ns, ns per request)"
      join "$TMP/bpf-before-$n.txt" "$TMP/bpf-after-$n.txt" | awk -v reqs="$reqs" '
        { runs = $4 - $2; ns = $5 - $3; if (runs > 0)
            printf "   %-22s %10d runs %6.2f/req %7.0f ns %8.1f ns/req\n", $1, runs, runs / reqs, ns / runs, ns / reqs }'
    fi
    sleep 2 # a flush interval (200 ms) and then some: every call is queryable
    local calls
    calls="$(q --format csv "SELECT count(*) FROM calls WHERE dst_port = $NGINX_PORT" | tail -1 || echo 0)"
    seen="$calls calls rows ($(echo "100 * $calls / (2 * $reqs)" | bc -l | xargs printf '%.1f')% of 2 x requests)"
    echo "-- run $n ($kind): agent_stats / protocol_stats after the run"
    q "SELECT table_name, rows_held, events_received, events_dropped, events_dropped_kernel, events_dropped_user, rows_evicted FROM agent_stats"
    q "SELECT protocol, calls, unparsed, truncated, unmatched, sessions_undetected, sessions_dropped FROM protocol_stats WHERE calls > 0 OR unparsed > 0 OR unmatched > 0"
    q "SELECT role, method, resource, status, count(*) AS calls, round(avg(duration_ns) / 1000, 1) AS avg_us FROM calls WHERE dst_port = $NGINX_PORT GROUP BY 1, 2, 3, 4 ORDER BY calls DESC LIMIT 6"
    stop_agent
  elif [[ "$kind" == tcpdump || "$kind" == tshark ]]; then
    stop_pcap "$kind"
    seen="$SEEN"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$kind" "$rps" "$p99" "$reqs" "$cores" "$seen" >>"$RESULTS"
  printf 'run %s %-8s requests/s %10s  p99 %8s ms  requests %9s' "$n" "$kind" "$rps" "$p99" "$reqs"
  [[ -n "$cores" ]] && printf '  observer cores %.3f  saw: %s' "$cores" "$seen"
  echo
}

n=0
for _ in $(seq "$PAIRS"); do
  for kind in $KINDS; do
    n=$((n + 1)); run_one "$n" "$kind"
  done
done

# One more agent run, not counted: wrk for $1 seconds, and the recorder "${@:2}" from its
# third second.
recorded_agent_run() {
  start_agent --memory-budget 4GiB
  sleep 1
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${1}s" "$URL" >/dev/null &
  WRK_PID=$!
  sleep 3
  "${@:2}" >/dev/null 2>&1
  wait "$WRK_PID"
  stop_agent
}

if [[ "${SCHED:-0}" == 1 ]] && command -v perf >/dev/null; then
  echo "== scheduler trace: one more agent run (not counted), perf sched record for 2 s in its middle"
  recorded_agent_run 8 perf sched record -o "$TMP/sched.data" -- sleep 2
  echo "-- waits for a CPU, per thread (the applications' are what the agent costs in latency)"
  perf sched latency -i "$TMP/sched.data" --sort max 2>/dev/null | grep -E 'nginx|wrk|capture|store-compress|query' || true
  echo "-- CPU time per thread and CPU (ms)"
  perf sched timehist -i "$TMP/sched.data" 2>/dev/null | awk 'NR > 3 && $3 ~ /nginx|wrk|capture|store-compress|idle/ {
    split($3, name, "["); k = sprintf("%-16s %s", name[1], $2); t[k] += $NF }
    END { for (k in t) printf "   %s %9.1f\n", k, t[k] }' | sort || true
fi

if [[ "${PROFILE:-0}" == 1 ]] && command -v perf >/dev/null; then
  echo "== profile: one more agent run (not counted), perf record -a -g for 5 s in its middle"
  recorded_agent_run 12 perf record -a -g -F 999 -o "$TMP/perf.data" -- sleep 5
  echo "-- by command (share of all samples, both CPUs)"
  perf report -i "$TMP/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
  echo "-- top symbols"
  perf report -i "$TMP/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40 || true
fi

echo
echo "== summary (run, kind, requests/s, p99 ms, requests, observer cores, what the observer saw)"
column -t -s $'\t' "$RESULTS"
awk -F'\t' '
  { rps[$2] += $3; p99[$2] += $4; runs[$2]++; if ($6 != "") { cores[$2] += $6; calls[$2] += 2 * $3 } }
  END {
    for (k in runs) {
      line = sprintf("%-15s mean %8.0f req/s  p99 %6.3f ms", k, rps[k] / runs[k], p99[k] / runs[k])
      if ("baseline" in runs)
        line = line sprintf("  ratio to baseline %.3f", (rps[k] / runs[k]) / (rps["baseline"] / runs["baseline"]))
      if (calls[k] > 0 && k ~ /^agent/)
        line = line sprintf("  agent %.3f cores = %.3f cores per 10k calls/s", cores[k] / runs[k], cores[k] / (calls[k] / 10000))
      else if (calls[k] > 0)
        line = line sprintf("  observer %.3f cores", cores[k] / runs[k])
      print line
    }
    if (("agent" in runs) && ("agent-nohealth" in runs))
      printf "agent / agent-nohealth requests/s: %.3f\n", (rps["agent"] / runs["agent"]) / (rps["agent-nohealth"] / runs["agent-nohealth"])
    if (("agent" in runs) && ("agent-b" in runs))
      printf "agent / agent-b requests/s: %.3f, agent cores / agent-b cores: %.3f\n", (rps["agent"] / runs["agent"]) / (rps["agent-b"] / runs["agent-b"]), (cores["agent"] / runs["agent"]) / (cores["agent-b"] / runs["agent-b"])
    if (("agent-segment" in runs) && ("agent-nohealth" in runs))
      printf "agent-segment / agent-nohealth requests/s: %.3f\n", (rps["agent-segment"] / runs["agent-segment"]) / (rps["agent-nohealth"] / runs["agent-nohealth"])
  }' "$RESULTS"
