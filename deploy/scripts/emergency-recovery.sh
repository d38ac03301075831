#!/bin/bash
# emergency-recovery.sh --restore-from-backup [ID|FILE] [--agent NODE=HOST:PORT ...] [--k3s-version V] [--yes] [--config FILE]
#
# Restores a cluster whose Kubernetes API is down from a sealed datastore backup, through the
# agents alone: `upkeep recover --from-backup ID|FILE` (docs/controller.md). Without an ID, the
# newest backup `upkeep backup list` shows. Every object written since the backup is lost; it
# asks for the backup id to be typed unless --yes. --agent gives an agent's address when the
# state database does not know it; --k3s-version the version a backup FILE was taken at.
# Exit codes are upkeep recover's (those of upkeep apply; 0 once the recovery finished).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

restore=0 backup=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --restore-from-backup)
      restore=1; shift
      if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then backup=$1; shift; fi ;;
    --agent|--k3s-version) need "$1" $# "${2:-}"; pass+=("$1" "$2"); shift 2 ;;
    --yes) pass+=("$1"); shift ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done
[ "$restore" = 1 ] || refuse "give --restore-from-backup [ID|FILE] (\`upkeep backup list\` shows the backups)"

if [ -z "$backup" ]; then
  listed=$(run_upkeep backup list --output json)
  backup=$(awk '/"id" :/ { gsub(/[",]/, "", $3); print $3; exit }' <<<"$listed")
  [ -n "$backup" ] || refuse "no backup is recorded (\`upkeep backup list\`); give a sealed .upkb file and --k3s-version"
  echo "$script: the newest backup is $backup"
fi
run_upkeep recover --from-backup "$backup" "${pass[@]}"
