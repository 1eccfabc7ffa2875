#!/usr/bin/env bash
# The README's second command: sets everything up and runs every test, as root.
#
#   scripts/test.sh       (in a root shell; else: sudo scripts/test.sh)
#
# Rust: unit tests, the store and SQL (.slt) tests, and the end-to-end tests that load the eBPF
# programs, drive real TCP traffic and query it through the `kindling` CLI and through Grafana
# host emulation (gpx_kindling spoken to over the plugin protocol). Frontend: typecheck, Jest,
# build, and the editors in Debian's Chromium (frontend/harness). Ends with one line counting
# every test: "tests: N passed, M failed".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT

# The real kube-apiserver the Kubernetes tests start: ../shared/kube beside the repository on
# these machines, or the nearest shared/kube above a clone made elsewhere, or /work/shared/kube.
if [[ -z "${KINDLING_KUBE_DIR:-}" ]]; then
  dir="$ROOT"
  while [[ "$dir" != / && -z "${KINDLING_KUBE_DIR:-}" ]]; do
    dir="$(dirname "$dir")"
    [[ -x "$dir/shared/kube/start-apiserver.sh" ]] && KINDLING_KUBE_DIR="$dir/shared/kube"
  done
  if [[ -z "${KINDLING_KUBE_DIR:-}" && -x /work/shared/kube/start-apiserver.sh ]]; then
    KINDLING_KUBE_DIR=/work/shared/kube
  fi
fi
# Unset when none was found: the Kubernetes tests then fail, naming what is missing.
[[ -n "${KINDLING_KUBE_DIR:-}" ]] && export KINDLING_KUBE_DIR && echo "kube-apiserver scripts: $KINDLING_KUBE_DIR"

echo "== module imports form a DAG (scripts/check_modules.py)"
modules_status=0
python3 scripts/check_modules.py || modules_status=$?

echo "== cargo test --no-run (dev profile: the tests and every binary they start)"
# Not `cargo build`: dev-dependencies unify features differently, so a separate `cargo build`
# links a second copy of every binary (each links DataFusion) for nothing.
cargo test --no-run

echo "== cargo test"
# One test thread: the end-to-end tests attach eBPF programs that see every TCP connection on
# the host, so their traffic must not overlap.
rust_status=0
cargo test --no-fail-fast -- --test-threads=1 2>&1 | tee "$LOGS/cargo.txt" || rust_status=$?

echo "== frontend"
js_status=0
(cd frontend && npm run --silent typecheck && npm test --silent -- --ci 2>&1) | tee "$LOGS/jest.txt" || js_status=$?
(cd frontend && npm run --silent build) && bash scripts/package-plugin.sh --debug

echo "== browser (Debian's Chromium driving the editors on the harness page)"
browser_status=0
(cd frontend && node harness/browser.test.mjs) || browser_status=$?

# (grep finds nothing when a runner printed no such count: that is a zero, not a failure.)
count() { grep -oE "$1" "$2" | awk "{s+=\$$3} END {print s+0}" || true; }
passed=$(count 'test result: [a-zA-Z]+\. [0-9]+ passed' "$LOGS/cargo.txt" 4)
failed=$(count '[0-9]+ failed;' "$LOGS/cargo.txt" 1)
grep -E '^Tests:' "$LOGS/jest.txt" | tail -1 >"$LOGS/jest-line.txt" || true
js_passed=$(count '[0-9]+ passed' "$LOGS/jest-line.txt" 1)
js_failed=$(count '[0-9]+ failed' "$LOGS/jest-line.txt" 1)
browser_passed=$((browser_status == 0 ? 1 : 0))
browser_failed=$((browser_status == 0 ? 0 : 1))
modules_passed=$((modules_status == 0 ? 1 : 0))
modules_failed=$((modules_status == 0 ? 0 : 1))
echo "tests: $((passed + ${js_passed:-0} + browser_passed + modules_passed)) passed, $((failed + ${js_failed:-0} + browser_failed + modules_failed)) failed"
[[ $rust_status -eq 0 && $js_status -eq 0 && $browser_status -eq 0 && $modules_status -eq 0 ]]
