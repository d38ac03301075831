#!/bin/bash
# update-metrics.sh [--output FILE] [--prometheus-query PROMQL [--json]] [--config FILE]
#
# Upkeep's Prometheus metrics once (`upkeep metrics`, docs/metrics.md): rollouts, Longhorn and
# Flux updates, node upgrades, backups, the last check, certificate expiry; --output FILE writes
# them atomically (for node_exporter's textfile collector). `upkeep serve` serves them on /metrics.
# --prometheus-query PROMQL asks the configured Prometheus instead (`upkeep metrics --query`,
# gates.prometheus.url): a table, or with --json Prometheus's own JSON.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

args=()
query=()
json=no
while [ $# -gt 0 ]; do
  case "$1" in
    --prometheus-query) need "$1" $# "${2:-}"; query=(--query "$2"); shift 2 ;;
    --json) json=yes; shift ;;
    --output) need "$1" $# "${2:-}"; args+=(--output "$2"); shift 2 ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done
if [ ${#query[@]} -gt 0 ]; then
  [ ${#args[@]} -eq 0 ] || refuse "--output goes without --prometheus-query (redirect standard output to keep a query's result)"
  [ "$json" = no ] || query+=(--output json)
  run_upkeep metrics "${query[@]}"
else
  [ "$json" = no ] || refuse "--json goes with --prometheus-query"
  run_upkeep metrics "${args[@]}"
fi
