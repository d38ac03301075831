#!/bin/bash
# update-report.sh [--since AGE] [--format md|json] [--output PATH] [--config FILE]
#
# A report for a change record or a post-mortem, from the state database alone: `upkeep report`.
# Without --since, the newest rollout; --since 30d (12h, 90m) a period: rollouts, updates and
# backups. --format md (default) or json; --output writes a file (replaced atomically).
# Not yet: --monthly (a calendar month) and --format pdf|html come with issue 18; today use
# --since 30d and --format md or json.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --monthly) later 18 "--monthly (a calendar month's report, \`upkeep report --monthly\`)" "use --since 30d (the last 30 days)" ;;
    --since) need "$1" $# "${2:-}"; args+=(--since "$2"); shift 2 ;;
    --format)
      need "$1" $# "${2:-}"
      case "$2" in
        md|markdown) args+=(--format markdown) ;;
        json) args+=(--format json) ;;
        pdf|html) later 18 "--format $2 (\`upkeep report --format $2\`)" "use --format md (Markdown, which pandoc turns into HTML or PDF) or json" ;;
        *) refuse "--format $2: write md or json" ;;
      esac
      shift 2 ;;
    --output) need "$1" $# "${2:-}"; args+=(--output "$2"); shift 2 ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done
run_upkeep report "${args[@]}"
