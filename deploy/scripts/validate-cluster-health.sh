#!/bin/bash
# validate-cluster-health.sh [--post-update] [--flux] [--storage] [--networking] [--applications] [--config FILE]
#
# Validation on demand comes with issue 18 as `upkeep validate` (each check with a verdict, its
# evidence and what to do). Until then it is refused (exit 2) with what to run instead.
# Every rollout already validates each node it upgrades (docs/controller.md).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

checks=()
while [ $# -gt 0 ]; do
  case "$1" in
    --post-update|--flux|--storage|--networking|--applications) checks+=("$1"); shift ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done

later 18 "validation on demand (\`upkeep validate${checks[*]:+ ${checks[*]}}\`)" \
  "run \`upkeep agents\` (every node's agent reachable and agreeing with the API), \`kubectl get nodes\` (every node Ready at one version), \`upkeep status\` (no rollout blocked) and, for Flux and Longhorn, \`flux get all -A\` and \`kubectl -n longhorn-system get volumes.longhorn.io\`"
