#!/bin/bash
# maintenance-mode.sh --enable [--reason TEXT] [--notify-users] | --status | --disable [--notify-users] [--config FILE]
#
# Maintenance mode (docs/maintenance.md): Flux's reconciliation suspended while the cluster is
# worked on, the cluster marked with the ConfigMap kube-system/upkeep-maintenance.
#   --enable        suspend what maintenance.suspend names (`upkeep maintenance enable`)
#   --reason TEXT   why, for the record (with --enable)
#   --notify-users  also hand maintenance.enabled / maintenance.disabled to the notifications:
#                   sinks (`--notify`; with --enable or --disable)
#   --status        since when, why, by whom, what is suspended (`upkeep maintenance status`)
#   --disable       resume exactly what maintenance mode suspended (`upkeep maintenance disable`)
# Exit codes are upkeep maintenance's (docs/maintenance.md).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

action="" notify=() reason=()
while [ $# -gt 0 ]; do
  case "$1" in
    --enable|--status|--disable)
      [ -z "$action" ] || refuse "$action and $1: give one of --enable, --status, --disable"
      action=$1; shift ;;
    --notify-users) notify=(--notify); shift ;;
    --reason) need "$1" $# "${2:-}"; reason=(--reason "$2"); shift 2 ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done

[ ${#reason[@]} -eq 0 ] || [ "$action" = --enable ] || refuse "--reason goes with --enable"
[ ${#notify[@]} -eq 0 ] || [ "$action" = --enable ] || [ "$action" = --disable ] \
  || refuse "--notify-users goes with --enable or --disable: the sinks are told when maintenance mode switches (\`upkeep notify test\` checks them)"

case "$action" in
  --enable) run_upkeep maintenance enable "${reason[@]}" "${notify[@]}" ;;
  --status) run_upkeep maintenance status ;;
  --disable) run_upkeep maintenance disable "${notify[@]}" ;;
  *) refuse "give one of --enable, --status, --disable" ;;
esac
