#!/bin/bash
# validate-cluster-health.sh [--flux] [--storage] [--networking] [--applications] [--all] [--post-update] [--json] [--config FILE]
#
# The cluster's health now (`upkeep validate`, docs/validate.md): every node Ready at one
# version, no unexpected cordon, etcd healthy with quorum; --flux: Flux's controllers and
# objects; --storage: Longhorn's managers, volumes and rebuilds; --networking: CoreDNS and
# Traefik available; --applications: the checks upkeep.yaml declares (validate.applications);
# --all: all of them; --post-update: all of them, and every component at the version the last
# rollout or update of it meant. Each check prints
# its verdict, the evidence and what to do; --json: `upkeep validate -o json`.
# Exit 0 healthy, 1 unhealthy, 2 usage.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

checks=()
output=()
while [ $# -gt 0 ]; do
  case "$1" in
    --flux|--storage|--networking|--applications|--all|--post-update) checks+=("$1"); shift ;;
    --json) output=(-o json); shift ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done

run_upkeep validate "${checks[@]}" "${output[@]}"
