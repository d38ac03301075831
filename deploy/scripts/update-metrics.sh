#!/bin/bash
# update-metrics.sh [--output FILE] [--config FILE]
#
# Upkeep's Prometheus metrics once (`upkeep metrics`, docs/metrics.md): rollouts, node upgrades,
# backups, the last check, certificate expiry; --output FILE writes them atomically (for
# node_exporter's textfile collector). `upkeep serve` serves them on /metrics.
# Not yet: --prometheus-query Q comes with issue 18 (`upkeep metrics --query`).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prometheus-query)
      later 18 "--prometheus-query (\`upkeep metrics --query PROMQL\`)" \
        "ask Prometheus's HTTP API yourself: curl -G http://PROMETHEUS:9090/api/v1/query --data-urlencode 'query=${2:-QUERY}'" ;;
    --output) need "$1" $# "${2:-}"; args+=(--output "$2"); shift 2 ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done
run_upkeep metrics "${args[@]}"
