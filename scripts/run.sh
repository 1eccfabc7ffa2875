#!/usr/bin/env bash
# The README's first command: sets everything up and runs the main job, as root.
#
#   scripts/run.sh        (in a root shell; else: sudo scripts/run.sh)
#
# Builds Kindling, starts an agent on this host (left running, for a Grafana to query),
# makes some HTTP, Redis and raw TCP traffic, and prints what the agent saw through the
# `kindling` CLI: the service map from L7 calls and from connections, the latest calls with
# their timing breakdown, the latest connections and the agent's health. Also builds the
# Grafana plugin into frontend/dist (see provisioning/README.md).
#
# Environment: KINDLING_LISTEN (default 127.0.0.1:50051), KINDLING_PROFILE (debug|release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

LISTEN="${KINDLING_LISTEN:-127.0.0.1:50051}"
PROFILE="${KINDLING_PROFILE:-debug}"
BIN="$ROOT/target/$PROFILE"
PIDFILE="$ROOT/target/kindling-agent.pid"
LOG="$ROOT/target/kindling-agent.log"

echo "== build ($PROFILE)"
if [[ "$PROFILE" == release ]]; then cargo build --release; else cargo build; fi
(cd frontend && npm run --silent build)
bash scripts/package-plugin.sh "--$PROFILE"

echo "== agent"
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "stopping the agent started earlier (pid $(cat "$PIDFILE"))"
  kill -TERM "$(cat "$PIDFILE")"
  for _ in $(seq 50); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
fi
nohup "$BIN/kindling-agent" --listen "$LISTEN" --flush-ms 100 >"$LOG" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 100); do
  "$BIN/kindling" health --agent "$LISTEN" >/dev/null 2>&1 && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.2
done
echo "agent pid $(cat "$PIDFILE") serving on $LISTEN (log: $LOG)"

echo "== traffic: python http.server on 127.0.0.1:18080 (20 requests, 3 of them 404), redis-server on"
echo "   127.0.0.1:16379 (10 commands, 1 failing), 5 raw TCP sessions, 3 connects to a closed port"
# A traffic server of ours, started and waited for: refused when its port is already taken
# (the output would describe someone else's server), failed when it exits before answering.
SERVER_PIDS=()
trap 'kill "${SERVER_PIDS[@]}" 2>/dev/null || true' EXIT
start_server() {
  local name=$1 port=$2 ready=$3
  shift 3
  if ss -Hltn "sport = :$port" | grep -q .; then
    echo "run.sh: port $port is taken, so $name cannot start; the listener is:" >&2
    ss -Hltnp "sport = :$port" >&2
    exit 1
  fi
  "$@" >/dev/null 2>&1 &
  local pid=$!
  SERVER_PIDS+=("$pid")
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: $name exited at start (port $port)" >&2; exit 1; }
    eval "$ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "run.sh: $name did not answer on port $port within 10 s" >&2
  exit 1
}
start_server "python http.server" 18080 "curl -sf -o /dev/null http://127.0.0.1:18080/" \
  python3 -m http.server 18080 --bind 127.0.0.1
start_server redis-server 16379 "redis-cli -p 16379 PING" \
  redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no --loglevel warning
for i in $(seq 17); do curl -s -o /dev/null "http://127.0.0.1:18080/?request=$i"; done
for p in missing nothing-here gone; do curl -s -o /dev/null "http://127.0.0.1:18080/$p"; done
for i in $(seq 4); do redis-cli -p 16379 SET "key$i" "value$i" >/dev/null; done
for i in $(seq 4); do redis-cli -p 16379 GET "key$i" >/dev/null; done
redis-cli -p 16379 INCR key1 >/dev/null
exec 3< <(python3 plugin-backend/tests/fixtures/tcp_peer.py server 5)
read -r _ PEER_PORT <&3
python3 plugin-backend/tests/fixtures/tcp_peer.py client "$PEER_PORT" 5
# Refused connects (nothing listens on port 1): connect_failed rows with reason refused.
for _ in 1 2 3; do curl -s -m 2 -o /dev/null http://127.0.0.1:1/ || true; done
sleep 1

q() { "$BIN/kindling" query --agent "$LISTEN" "$1"; }
echo
echo "== service map from L7 calls (server side: who called whom, how often, how fast)"
q "WITH clients AS (SELECT DISTINCT src_ip, src_port, dst_ip, dst_port, comm FROM calls WHERE role = 'client')
   SELECT coalesce(c.comm, s.src_ip) AS client, s.comm AS server, s.protocol, s.dst_port AS port,
          count(*) AS calls, sum(CAST(s.is_error AS INT)) AS errors,
          round(approx_percentile_cont(s.duration_ns, 0.95) / 1e6, 3) AS p95_ms
   FROM calls s LEFT JOIN clients c
     ON c.src_ip = s.src_ip AND c.src_port = s.src_port AND c.dst_ip = s.dst_ip AND c.dst_port = s.dst_port
   WHERE s.role = 'server' GROUP BY 1, 2, 3, 4 ORDER BY calls DESC LIMIT 20"
echo "== latest calls (client side), timing in microseconds"
q "SELECT ts, comm, protocol, method, resource, status, is_error,
          duration_ns / 1000 AS total_us, request_sent_ns / 1000 AS sent_us,
          waiting_ttfb_ns / 1000 AS ttfb_us, content_download_ns / 1000 AS download_us,
          request_bytes, response_bytes
   FROM calls WHERE role = 'client' ORDER BY ts DESC LIMIT 12"
echo "== parsers"
q "SELECT protocol, calls, unparsed, truncated, unmatched FROM protocol_stats"
echo "== service map (processes; from flows: client process -> server process)"
q "SELECT c.comm AS client, s.comm AS server, s.dst_port AS port, count(*) AS connections,
          sum(c.bytes_sent) AS bytes_to_server, sum(c.bytes_received) AS bytes_to_client,
          round(avg(c.duration_ns) / 1e6, 3) AS avg_ms
   FROM flows c JOIN flows s
     ON c.role = 'client' AND s.role = 'server' AND c.src_ip = s.src_ip
    AND c.src_port = s.src_port AND c.dst_ip = s.dst_ip AND c.dst_port = s.dst_port
   GROUP BY c.comm, s.comm, s.dst_port ORDER BY connections DESC LIMIT 20"
echo "== latest connections (flows)"
q "SELECT end_ts, role, pid, comm, src_ip, src_port, dst_ip, dst_port, bytes_sent, bytes_received, duration_ns
   FROM flows ORDER BY end_ts DESC LIMIT 10"
echo "== TCP events of the last connection seen"
q "SELECT ts, event, role, comm, old_state, new_state, syscall_ret FROM tcp_events
   WHERE conn_id = (SELECT max(conn_id) FROM flows WHERE role = 'client') ORDER BY ts"
echo "== network health: connections by how they ended, RTT and retransmits per server port"
q "SELECT dst_port, close_reason, count(*) AS connections, round(avg(srtt_us)) AS avg_srtt_us,
          max(srtt_max_us) AS max_srtt_us, sum(retransmits) AS retransmits, sum(resets) AS resets,
          round(avg(connect_latency_ns) / 1000) AS avg_connect_us
   FROM flows WHERE role = 'client' GROUP BY 1, 2 ORDER BY connections DESC LIMIT 10"
echo "== failed connects, resets and drops (tcp_events)"
q "SELECT event, reason, dst_ip, dst_port, count(*) AS n FROM tcp_events
   WHERE event IN ('connect_failed', 'reset_sent', 'reset_received', 'drop', 'retransmit')
   GROUP BY 1, 2, 3, 4 ORDER BY n DESC LIMIT 10"
echo "== agent health"
"$BIN/kindling" health --agent "$LISTEN"
q "SELECT table_name, rows_held, bytes_held, chunks_held, rows_evicted, events_received, events_dropped FROM agent_stats"

cat <<MSG

The agent keeps running (pid $(cat "$PIDFILE"), $LISTEN); stop it with: kill \$(cat $PIDFILE)
Query it:   $BIN/kindling query --agent $LISTEN "SELECT * FROM flows LIMIT 10"
Grafana:    frontend/dist is the plugin; provisioning/ has the datasource and dashboards (see provisioning/README.md)
MSG
