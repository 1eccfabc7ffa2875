# Shared by the benchmark scripts (sourced, not run): an nginx of their own, a release agent,
# and the counters they read from /proc.
#
# Expects BIN (directory of the release binaries) and TMP (the script's temp dir, mode 755);
# sets NGINX_PORT, NGINX_PID, URL, AGENT_PORT and AGENT_PID. The caller's EXIT trap calls
# bench_cleanup.

NGINX_PID=""
AGENT_PID=""

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

bench_bins() { # $@: release binaries that must exist in $BIN
  local b
  for b in "$@"; do
    [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: build in release first (bench/run does)" >&2; exit 1; }
  done
}

bench_need() { # $@: as bench_bins, for benchmarks that capture (root)
  [[ $EUID -eq 0 ]] || { echo "run as root (the agent loads eBPF programs)" >&2; exit 1; }
  bench_bins "$@"
}

# duckdb_venv DIR: a venv under DIR with PyPI's duckdb (made once); sets PY to its python.
duckdb_venv() {
  if [[ ! -x "$1/venv/bin/python" ]] || ! "$1/venv/bin/python" -c 'import duckdb' 2>/dev/null; then
    python3 -m venv "$1/venv"
    "$1/venv/bin/pip" install -q duckdb
  fi
  PY="$1/venv/bin/python"
}

bench_cleanup() {
  [[ -n "$AGENT_PID" ]] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  [[ -n "$NGINX_PID" ]] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  [[ "${KEEP_TMP:-0}" == 1 ]] || rm -rf "$TMP"
  true
}

# nginx on a free 127.0.0.1 port: one worker pinned to CPU $1, keep-alive, access_log off,
# sendfile ${NGINX_SENDFILE:-off}, /file.txt a 100-byte static file.
start_nginx() {
  if [[ "${GO_SERVER:-0}" == 1 ]]; then
    start_go_https "$1"
    return
  fi
  command -v nginx >/dev/null || { echo "nginx is not installed (bench/run installs it)" >&2; exit 1; }
  NGINX_PORT="$(free_port)"
  mkdir -p "$TMP/www" "$TMP/temp"
  head -c 99 /dev/zero | tr '\0' 'k' >"$TMP/www/file.txt"
  echo >>"$TMP/www/file.txt" # 100 bytes
  # NGINX_TLS=1: HTTPS with a self-signed certificate (nginx and wrk through the system's
  # OpenSSL, the library the agent's TLS uprobes read).
  local listen="127.0.0.1:$NGINX_PORT" scheme=http tls=""
  if [[ "${NGINX_TLS:-0}" == 1 ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
      -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    listen="$listen ssl"
    scheme=https
    tls="ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;"
  fi
  cat >"$TMP/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/plain;
  sendfile ${NGINX_SENDFILE:-off};
  keepalive_timeout 65;
  keepalive_requests 10000000;
  client_body_temp_path $TMP/temp/body;
  proxy_temp_path $TMP/temp/proxy;
  fastcgi_temp_path $TMP/temp/fastcgi;
  uwsgi_temp_path $TMP/temp/uwsgi;
  scgi_temp_path $TMP/temp/scgi;
  server {
    listen $listen;
    $tls
    location = /file.txt { root $TMP/www; }
  }
}
EOF
  taskset -c "$1" nginx -p "$TMP" -c "$TMP/nginx.conf" &
  NGINX_PID=$!
  URL="$scheme://127.0.0.1:$NGINX_PORT/file.txt"
  for _ in $(seq 50); do curl -skf -o /dev/null "$URL" && break; sleep 0.1; done
  [[ "$(curl -skf "$URL" | wc -c)" == 100 ]] || { echo "nginx does not serve $URL" >&2; cat "$TMP/error.log" >&2; exit 1; }
}

# GO_SERVER=1, in place of nginx: the Go HTTPS test server (crypto/tls, HTTP/1.1 to wrk, 100-byte
# /ok), built from the test fixture with the host's Go, pinned to CPU $1 (so GOMAXPROCS is 1);
# NGINX_PORT, NGINX_PID and URL as start_nginx sets them.
start_go_https() {
  command -v go >/dev/null || { echo "go is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
  local fixture
  fixture="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/plugin-backend/tests/fixtures/go_https.go"
  GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPROXY=off go build -o "$TMP/go_https" "$fixture"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
  taskset -c "$1" "$TMP/go_https" server "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/go_https.out" &
  NGINX_PID=$!
  for _ in $(seq 50); do [[ -s "$TMP/go_https.out" ]] && break; sleep 0.1; done
  NGINX_PORT="$(cut -d' ' -f2 "$TMP/go_https.out")"
  URL="https://127.0.0.1:$NGINX_PORT/ok"
  [[ "$(curl -skf "$URL" | wc -c)" == 100 ]] || { echo "the Go server does not serve $URL" >&2; exit 1; }
}

q() { "$BIN/kindling" query --agent "127.0.0.1:$AGENT_PORT" "$@"; }

# A release agent on a free port, waited for until healthy. Extra agent flags as arguments;
# AGENT_BIN picks another build, AGENT_WRAP (e.g. "taskset -c 1 nice -n 19") runs it under a
# command.
start_agent() {
  AGENT_PORT="$(free_port)"
  ${AGENT_WRAP:-} "${AGENT_BIN:-$BIN/kindling-agent}" --listen "127.0.0.1:$AGENT_PORT" "$@" \
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

# Resident set size of a process, in KiB.
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# Replay agents (`kindling-agent --replay`), one per slice of a gen_calls directory: $1 the
# directory, $2 how many, then extra agent flags. Appends their PIDs to PIDS, sets REPLAY_ARGS
# (their --agent flags) and waits until every one answers (at most 5 minutes: big slices take
# a while to load).
start_replay_agents() {
  local data="$1" n="$2" a i port
  shift 2
  REPLAY_ARGS=()
  for ((a = 0; a < n; a++)); do
    port="$(free_port)"
    "$BIN/kindling-agent" --listen "127.0.0.1:$port" --node-name "node-$a" --replay "$data/agent-$a" \
      --memory-budget 8GiB --query-memory 2GiB "$@" 2>"$data/agent-$a.log" &
    PIDS+=("$!")
    REPLAY_ARGS+=(--agent "127.0.0.1:$port")
  done
  for ((i = 0; i < 600; i++)); do
    "$BIN/kindling" health "${REPLAY_ARGS[@]}" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  "$BIN/kindling" health "${REPLAY_ARGS[@]}" # names the agents that did not come up
}

# duckdb_query PY PARQUET SQL OUT THREADS: SQL over PARQUET (a file, or a glob of files) as the
# view `calls` in DuckDB, in-process with PY (a python that has `duckdb`), in UTC, on THREADS
# threads; writes the rows as CSV lines to OUT and prints the query's own seconds (the view
# already created).
duckdb_query() {
  "$1" - "$2" "$3" "$4" "$5" <<'PYEOF'
import sys, time, duckdb
path, sql, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET TimeZone = 'UTC'")
con.execute(f"CREATE VIEW calls AS SELECT * FROM read_parquet('{path}')")
t0 = time.perf_counter()
rows = con.execute(sql).fetchall()
t1 = time.perf_counter()
with open(out, "w") as f:
    for r in rows:
        f.write(",".join(str(v) for v in r) + "\n")
print(f"{t1 - t0:.6f}")
PYEOF
}
