#!/bin/bash
# maintenance-mode.sh --enable [--reason TEXT] | --notify-users | --status | --disable [--config FILE]
#
# Maintenance mode (Flux reconciliation suspended, the cluster marked, its notification sent)
# comes with issue 17 as `upkeep maintenance enable|status|disable`. Until then every flag is refused
# (exit 2) with what to do instead.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=wrapper-lib.sh
. "$(dirname "$0")/wrapper-lib.sh"

action=""
while [ $# -gt 0 ]; do
  case "$1" in
    --enable|--notify-users|--status|--disable)
      [ -z "$action" ] || refuse "$action and $1: give one of --enable, --notify-users, --status, --disable"
      action=$1; shift ;;
    --reason) need "$1" $# "${2:-}"; shift 2 ;;
    *) common_option "$@"; shift "$taken" ;;
  esac
done

case "$action" in
  --enable) later 17 "--enable (maintenance mode: \`upkeep maintenance enable\`)" \
              "suspend Flux yourself (\`flux suspend kustomization --all -n NAMESPACE\`, likewise helmrelease); \`upkeep apply\` needs no maintenance mode" ;;
  --disable) later 17 "--disable (\`upkeep maintenance disable\`)" \
               "resume what you suspended (\`flux resume kustomization NAME -n NAMESPACE\`, likewise helmrelease)" ;;
  --status) later 17 "--status (\`upkeep maintenance status\`)" \
              "\`upkeep status\` shows whether a rollout runs or is blocked, and \`flux get all -A\` what Flux has suspended" ;;
  --notify-users) later 17 "--notify-users (maintenance mode's maintenance.enabled to the notifications: sinks)" \
                    "the sinks of notifications: in upkeep.yaml hear of every rollout (docs/notifications.md; \`upkeep notify test\` checks them); tell your users of the window yourself" ;;
  *) refuse "give one of --enable, --notify-users, --status, --disable" ;;
esac
