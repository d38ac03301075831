#!/bin/bash
# update-report.sh [--since AGE | --monthly [--month YYYY-MM] [--time-zone ZONE]] [--format md|json|html|pdf]
#                  [--paper a4|letter] [--output PATH] [--config FILE]
#
# A report from the state database alone: `upkeep report`. Without --since or --monthly, the
# newest rollout; --since 30d (12h, 90m) a period: rollouts, updates and backups; --monthly a
# calendar month (default: the last complete one; --month 2026-11) on --time-zone's calendar
# (default UTC): rollouts and GitOps updates with outcomes and durations, nodes touched,
# maintenance, rollbacks, backups and two charts. --format md (default) or json; with --monthly
# also html (one self-contained page) or pdf (--paper a4, the default, or letter). --output
# writes a file (replaced atomically).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --monthly) args+=(--monthly); shift ;;
    --month|--time-zone|--paper) need "$1" $# "${2:-}"; args+=("$1" "$2"); shift 2 ;;
    --since) need "$1" $# "${2:-}"; args+=(--since "$2"); shift 2 ;;
    --format)
      need "$1" $# "${2:-}"
      case "$2" in
        md|markdown) args+=(--format markdown) ;;
        json|html|pdf) args+=(--format "$2") ;;
        *) refuse "--format $2: write md, json, html or pdf" ;;
      esac
      shift 2 ;;
    --output) need "$1" $# "${2:-}"; args+=(--output "$2"); shift 2 ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done
run_upkeep report "${args[@]}"
