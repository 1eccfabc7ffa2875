#!/usr/bin/env bash
# Puts the backend binary next to the frontend build, making frontend/dist a complete Grafana
# plugin directory (module.js, plugin.json, gpx_kindling_linux_amd64). Run after
# `npm run build` (which empties dist/). The copy is stripped: Grafana needs no debug info.
#
#   scripts/package-plugin.sh [--debug|--release]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=debug
[[ "${1:-}" == "--release" ]] && profile=release
bin="$ROOT/target/$profile/gpx_kindling"
[[ -x "$bin" ]] || { echo "package-plugin: $bin not built (cargo build --$profile -p kindling-plugin-backend)" >&2; exit 1; }
[[ -f "$ROOT/frontend/dist/plugin.json" ]] || { echo "package-plugin: run 'npm run build' in frontend/ first" >&2; exit 1; }
install -s -m 0755 "$bin" "$ROOT/frontend/dist/gpx_kindling_linux_amd64"
echo "package-plugin: frontend/dist is a complete plugin ($profile backend)"
