#!/usr/bin/env bash
# The README's second command: sets everything up and runs every test, as root.
#
#   sudo scripts/test.sh
#
# Rust: unit tests, the store and SQL (.slt) tests, and the end-to-end tests that load the eBPF
# programs, drive real TCP traffic and query it through the `kindling` CLI and through Grafana
# host emulation (gpx_kindling spoken to over the plugin protocol). Frontend: typecheck, Jest,
# build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo build (dev profile, every binary the tests start)"
cargo build --workspace --bins

echo "== cargo test"
# One test thread per binary: the end-to-end tests attach eBPF programs and count every TCP
# connection on the host, so they must not overlap with each other's traffic.
cargo test --workspace --no-fail-fast -- --test-threads=1

echo "== frontend"
(cd frontend && npm run --silent typecheck && npm test --silent -- --ci && npm run --silent build)
bash scripts/package-plugin.sh --debug
