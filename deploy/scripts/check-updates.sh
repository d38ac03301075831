#!/bin/bash
# check-updates.sh [--all | --component k3s|flux|longhorn ...] [--report] [--output table|json] [--config FILE]
#
# Installed and available versions of k3s, Flux and Longhorn: `upkeep check`. --all (the
# default) checks every component, --component one (repeatable), --report is the full report
# of every component, --output json its machine-readable form (docs/check.md).
# Exit codes are upkeep check's: 0 up to date, 10 updates available, others an error (docs/check.md).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --all|--report) args+=("$1"); shift ;;
    --component)
      need "$1" $# "${2:-}"
      case "$2" in
        k3s|flux|longhorn) args+=(--component "$2") ;;
        *) refuse "--component $2: the components are k3s, flux and longhorn" ;;
      esac
      shift 2 ;;
    --output|-o)
      need "$1" $# "${2:-}"
      case "$2" in
        table|json) args+=(--output "$2") ;;
        *) refuse "--output $2: write table or json (to keep it, redirect: --output json > check.json)" ;;
      esac
      shift 2 ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done
run_upkeep check "${args[@]}"
