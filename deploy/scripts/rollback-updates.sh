#!/bin/bash
# rollback-updates.sh --to-previous | --component k3s --to-version VERSION  [--yes] [--dry-run] [--config FILE]
#
# --to-previous: every node the last rollout changed goes back to where it found it. Within a
# Kubernetes minor that is `upkeep rollback --to-previous` (the previous binaries). Across a
# minor k3s goes back only with the datastore snapshot taken before the hop
# (https://docs.k3s.io/upgrades/roll-back), so it is `upkeep rollback --restore`: the newest
# hop of the last rollout is undone by restoring that snapshot (every object written since is
# lost; it asks for the snapshot id unless --yes). Run it again to undo the hop before.
# --component k3s --to-version VERSION: `upkeep rollback --to-version VERSION`.
# Longhorn and Flux cannot be downgraded (their upgrade guides): refused.
# Exit codes are upkeep rollback's (docs/controller.md).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

previous=0 component="" version="" dry=0
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --to-previous) previous=1; shift ;;
    --component) need "$1" $# "${2:-}"; component=$2; shift 2 ;;
    --to-version) need "$1" $# "${2:-}"; version=$2; shift 2 ;;
    --yes) pass+=("$1"); shift ;;
    --dry-run) dry=1; pass+=("$1"); shift ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done

if [ "$previous" = 1 ]; then
  [ -z "$component$version" ] || refuse "--to-previous goes back to where the last rollout began; give it alone, or --component k3s --to-version VERSION"
  status=0
  planned=$(run_upkeep rollback --to-previous --dry-run 2>&1) || status=$?
  if [ "$status" = 0 ]; then
    if [ "$dry" = 1 ]; then printf '%s\n' "$planned"; exit 0; fi
    run_upkeep rollback --to-previous "${pass[@]}"
  elif [ "$status" = 5 ] && grep -q 'upkeep rollback --restore' <<<"$planned"; then
    echo "$script: the last rollout took the servers up a Kubernetes minor; k3s goes back a minor only with the"
    echo "datastore snapshot taken before that hop (https://docs.k3s.io/upgrades/roll-back), so this is"
    echo "\`upkeep rollback --restore\`: it undoes the newest hop not undone yet (run it again for the hop before)."
    run_upkeep rollback --restore "${pass[@]}"
  else
    printf '%s\n' "$planned" >&2
    exit "$status"
  fi
  exit 0
fi

case "$component" in
  k3s)
    [ -n "$version" ] || refuse "--component k3s needs --to-version VERSION (or use --to-previous)"
    run_upkeep rollback --component k3s --to-version "$version" "${pass[@]}" ;;
  longhorn) refuse "Longhorn cannot be downgraded (https://longhorn.io/docs/1.12.2/deploy/upgrade/): restore its volumes from their Longhorn backups or snapshots instead" ;;
  flux) refuse "Flux cannot be downgraded (https://fluxcd.io/flux/installation/upgrade/): revert the commit \`upkeep update\` made (\`upkeep history --updates\` names it) and restore the components with the flux CLI" ;;
  "") refuse "give --to-previous, or --component k3s --to-version VERSION" ;;
  *) refuse "--component $component: the components are k3s, longhorn and flux" ;;
esac
