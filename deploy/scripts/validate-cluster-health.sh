#!/bin/bash
# validate-cluster-health.sh [--flux] [--storage] [--networking] [--applications] [--all] [--json] [--config FILE]
#
# The cluster's health now (`upkeep validate`, docs/validate.md): every node Ready at one
# version, no unexpected cordon, etcd healthy with quorum; --flux: Flux's controllers and
# objects; --storage: Longhorn's managers, volumes and rebuilds; --networking: CoreDNS and
# Traefik available; --applications: the checks upkeep.yaml declares (validate.applications);
# --all: all of them. Each check prints
# its verdict, the evidence and what to do; --json: `upkeep validate -o json`.
# Exit 0 healthy, 1 unhealthy, 2 usage.
# --post-update comes with issue 18.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

checks=()
output=()
later_checks=()
while [ $# -gt 0 ]; do
  case "$1" in
    --flux|--storage|--networking|--applications|--all) checks+=("$1"); shift ;;
    --json) output=(-o json); shift ;;
    --post-update) later_checks+=("$1"); shift ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done

if [ ${#later_checks[@]} -gt 0 ]; then
  later 18 "${later_checks[*]}" "run \`upkeep validate --all\` for the cluster, Flux and Longhorn"
fi

run_upkeep validate "${checks[@]}" "${output[@]}"
