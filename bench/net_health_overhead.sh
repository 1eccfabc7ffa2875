#!/usr/bin/env bash
# What the network-health programs (tcp_retransmit_skb, tcp_send_reset, tcp_receive_reset,
# tcp_probe, kfree_skb) cost connections that have none of those events: nginx under wrk on
# loopback (no loss, no resets), alternating in one invocation a baseline without agent, the
# agent with --no-net-health and the full agent, with per-program eBPF run counts and times.
#
#   sudo bench/net_health_overhead.sh      # same environment knobs as l7_overhead.sh
set -euo pipefail
KINDS="${KINDS:-baseline agent-nohealth agent}" BPF_STATS="${BPF_STATS:-1}" \
  exec "$(dirname "${BASH_SOURCE[0]}")/l7_overhead.sh"
