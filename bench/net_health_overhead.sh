#!/usr/bin/env bash
# What the network-health programs (tcp_retransmit_skb, tcp_send_reset, tcp_receive_reset,
# kfree_skb; tcp_probe with --rtt-every-segment) cost connections that have none of those
# events: nginx under wrk on loopback (no loss, no resets), alternating in one invocation a
# baseline without agent, the agent with --no-net-health, the default agent and the agent with
# --rtt-every-segment, with per-program eBPF run counts and times.
#
#   sudo bench/net_health_overhead.sh      # same environment knobs as l7_overhead.sh
set -euo pipefail
KINDS="${KINDS:-baseline agent-nohealth agent agent-segment}" BPF_STATS="${BPF_STATS:-1}" \
  exec "$(dirname "${BASH_SOURCE[0]}")/l7_overhead.sh"
