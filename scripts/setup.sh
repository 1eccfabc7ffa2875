#!/usr/bin/env bash
# Installs everything a fresh machine of this kind lacks to build, run and test Kindling.
# Idempotent: every step checks before it acts, so a second run takes seconds.
#
#   scripts/setup.sh            toolchain, bpf-linker, test servers and node modules
#   SETUP_SKIP_FRONTEND=1 ...   skip `npm ci` (for quick agent-only iterations)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUST_VERSION="1.98.0"
BPF_LINKER_VERSION="0.13.0"

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

if [[ $EUID -ne 0 ]]; then
  echo "setup: must run as root (apt-get and eBPF need it)" >&2
  exit 1
fi

# Debian packages: the LLVM that bpf-linker links against, and the real servers and
# clients the tests drive.
APT_PACKAGES=(
  llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev pkg-config build-essential
  curl iproute2 procps python3 ca-certificates bpftool
  redis-server redis-tools mariadb-server mariadb-client postgresql postgresql-client
  dnsmasq-base bind9-dnsutils wrk nftables openssl chromium nghttp2-client nghttp2-server
  nghttp2-proxy nginx
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  # The tests start their own server instances; keep the packages' init scripts from starting
  # system-wide ones while installing (a policy-rc.d that we put there only for this step).
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ -n $own_policy ]]; then rm -f "$policy"; fi
fi

# Go >= 1.18 (register ABI) builds the Go TLS test's stdlib-only fixture: Debian's golang-go
# from the release's backports (Go 1.23 for bookworm, the version the tests run with).
if ! go version 2>/dev/null | grep -qE 'go1\.(1[89]|[2-9][0-9])'; then
  codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  sources=/etc/apt/sources.list.d/kindling-backports.sources
  if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d; then
    log "apt source ${codename}-backports"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$codename" >"$sources"
    apt-get update -qq
  fi
  log "apt-get install golang-go (${codename}-backports)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t "${codename}-backports" golang-go >/dev/null
fi

# PyPI: grpcio, the real gRPC server and client of the HTTP/2 tests (into the python3 the
# tests run; Debian's own python3 needs --break-system-packages, a pyenv one does not).
GRPCIO_VERSION="1.85.4"
if [[ "$(python3 -c 'import grpc; print(grpc.__version__)' 2>/dev/null)" != "$GRPCIO_VERSION" ]]; then
  log "pip install grpcio==${GRPCIO_VERSION}"
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check "grpcio==${GRPCIO_VERSION}")
  "${pip_install[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! rustup toolchain list | grep -q "^${RUST_VERSION}-"; then
  log "rustup toolchain install ${RUST_VERSION}"
  RUSTUP_AUTO_INSTALL=0 rustup toolchain install --no-self-update "$RUST_VERSION" \
    --profile minimal -c rust-src,clippy,rustfmt
fi

if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "cargo install bpf-linker@${BPF_LINKER_VERSION} (llvm-22)"
  PATH="/usr/lib/llvm-22/bin:$PATH" LLVM_PREFIX=/usr/lib/llvm-22 \
    cargo "+${RUST_VERSION}" install "bpf-linker@${BPF_LINKER_VERSION}" --locked \
    --no-default-features --features llvm-22
fi

if [[ -z "${SETUP_SKIP_FRONTEND:-}" && -f "$ROOT/frontend/package.json" ]]; then
  lock="$ROOT/frontend/package-lock.json"
  stamp="$ROOT/frontend/node_modules/.kindling-lock.sha256"
  want="$(sha256sum "$lock" 2>/dev/null | cut -d' ' -f1 || true)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "npm ci (frontend)"
    (cd "$ROOT/frontend" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
fi

log "ready"
