#!/bin/bash
# apply-updates.sh --component k3s|longhorn|flux | --all [--to VERSION | --channel NAME] [--backup]
#                  [--maintenance-window | --emergency] [--validate] [--yes] [--dry-run] [--config FILE]
#
# --all: `upkeep apply --all`: k3s (target --to VERSION or --channel NAME, default stable), Longhorn
# (its next minor) and Flux (its newest release) as one set, in the order the compatibility table
# allows, one id in `upkeep history`; it stops at the first stage that fails (docs/operations.md).
# k3s: `upkeep apply` (a health-gated rolling upgrade, a datastore snapshot before every hop,
# automatic rollback; target --to VERSION or --channel NAME, default the stable channel).
# longhorn, flux: `upkeep update` through the Git repository Flux watches (target --to VERSION,
# default the next step `upkeep check` shows).
#   --backup              take a sealed datastore backup first (`upkeep backup now`)
#   --maintenance-window  start (and run) only inside maintenance.windows (what apply and update do)
#   --emergency           start now, outside the windows (`--ignore-window`)
#   --validate            after it succeeded, `upkeep validate --post-update` (docs/validate.md)
#   --yes                 do not ask for confirmation (needed without a terminal)
#   --dry-run             plan and check, change nothing
# Exit codes are upkeep apply's or upkeep update's (docs/controller.md, docs/gitops.md); with
# --validate, then upkeep validate's (1: the cluster is not healthy after the change).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

component="" all=0 to="" channel="" backup=0 window=0 emergency=0 validate=0 dry_run=0
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --component) need "$1" $# "${2:-}"; component=$2; shift 2 ;;
    --to) need "$1" $# "${2:-}"; to=$2; shift 2 ;;
    --channel) need "$1" $# "${2:-}"; channel=$2; shift 2 ;;
    --backup) backup=1; shift ;;
    --maintenance-window) window=1; shift ;;
    --emergency) emergency=1; shift ;;
    --yes) pass+=("$1"); shift ;;
    --dry-run) pass+=("$1"); dry_run=1; shift ;;
    --validate) validate=1; shift ;;
    --all) all=1; shift ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done
# validated: with --validate (and not --dry-run), the post-update validation of what just ran.
validated() {
  if [ "$validate" = 1 ] && [ "$dry_run" = 0 ]; then run_upkeep validate --post-update; fi
}

[ "$window" = 1 ] && [ "$emergency" = 1 ] && refuse "--maintenance-window and --emergency contradict each other: choose one"

if [ "$all" = 1 ]; then
  [ -n "$component" ] && refuse "--all updates every component: give it without --component"
  [ -n "$to" ] && [ -n "$channel" ] && refuse "give --to or --channel, not both"
  target=()
  # With --all, --to and --channel name k3s's target; Longhorn and Flux take their next version.
  if [ -n "$to" ]; then target=(--to "$to"); elif [ -n "$channel" ]; then target=(--channel "$channel"); fi
  [ "$emergency" = 1 ] && pass+=(--ignore-window)
  [ "$backup" = 1 ] && run_upkeep backup now
  # apply --all validates once at the end of a completed set (exit 10 when unhealthy).
  run_upkeep apply --all "${target[@]}" "${pass[@]}"
  validated
  exit 0
fi

case "$component" in
  k3s)
    [ -n "$to" ] && [ -n "$channel" ] && refuse "give --to or --channel, not both"
    target=()
    if [ -n "$to" ]; then target=(--to "$to"); elif [ -n "$channel" ]; then target=(--channel "$channel"); fi
    # Maintenance windows: apply honours maintenance.windows of upkeep.yaml by itself.
    [ "$emergency" = 1 ] && pass+=(--ignore-window)
    [ "$backup" = 1 ] && run_upkeep backup now
    run_upkeep apply "${target[@]}" "${pass[@]}"
    validated
    ;;
  longhorn|flux)
    [ -n "$channel" ] && refuse "--channel is for k3s; give $component's version with --to VERSION"
    # Maintenance windows: update honours maintenance.windows of upkeep.yaml by itself.
    [ "$emergency" = 1 ] && pass+=(--ignore-window)
    if [ -z "$to" ]; then
      # The first step of the path `upkeep check` shows (Longhorn goes one minor at a time).
      status=0
      report=$(run_upkeep check --component "$component" --output json) || status=$?
      [ "$status" = 0 ] || [ "$status" = 10 ] || exit "$status"
      to=$(awk '/"path" : \[/ { inpath = 1 } inpath && /"version" :/ { gsub(/[",]/, "", $3); print $3; exit }' <<<"$report")
      if [ -z "$to" ]; then
        echo "$script: no newer $component to apply (\`upkeep check --component $component\` shows none)"
        exit 0
      fi
      echo "$script: $component's next version is $to (\`upkeep check --component $component\`)"
    fi
    [ "$backup" = 1 ] && run_upkeep backup now
    run_upkeep update --component "$component" --to "$to" "${pass[@]}"
    validated
    ;;
  "") refuse "name the component: --component k3s, longhorn or flux, or --all" ;;
  *) refuse "--component $component: the components are k3s, longhorn and flux" ;;
esac
