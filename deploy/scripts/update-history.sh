#!/bin/bash
# update-history.sh [--last-30-days] [--config FILE]
#
# Every k3s rollout (`upkeep history`), then every Longhorn and Flux update through Git
# (`upkeep history --updates`), newest first; --last-30-days: only those of the last 30 days.
# `upkeep history ID` shows one rollout in full.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

period=()
while [ $# -gt 0 ]; do
  case "$1" in
    --last-30-days) period=(--last-30-days); shift ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done

echo "k3s rollouts:"
run_upkeep history "${period[@]}"
echo
echo "Longhorn and Flux updates:"
run_upkeep history --updates "${period[@]}"
