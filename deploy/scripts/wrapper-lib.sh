# shellcheck shell=bash
# Shared by the wrapper scripts beside it (sourced, never run): the seed's script names and flags
# mapped onto `upkeep` commands (docs/operations.md, "The wrapper scripts").
#
# Every wrapper passes `--config FILE` on to upkeep (without it upkeep finds its file as always:
# UPKEEP_CONFIG, ./upkeep.yaml, ~/.config/upkeep/upkeep.yaml, /etc/upkeep/upkeep.yaml) and
# refuses, with exit 2 and what to use instead, a flag it cannot honour.

script=$(basename "$0")
config_args=()

# refuse MESSAGE: a flag or combination this wrapper cannot honour.
refuse() {
  echo "$script: $*" >&2
  exit 2
}

# later ISSUE WHAT TODAY: what comes with a later issue, and what to do until then.
later() {
  echo "$script: $2 comes with issue $1; today $3" >&2
  exit 2
}

# need FLAG ARGUMENTS-LEFT VALUE: refuses a flag given without its value.
need() {
  if [ "$2" -lt 2 ] || [ -z "$3" ]; then refuse "$1 needs a value (see $script --help)"; fi
}

# usage: prints the script's usage (its header comment) and exits 0.
usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//p}' "$0"
  exit 0
}

# common_option ARGUMENTS...: what every wrapper takes (--config FILE, --help), else a refusal of
# an unknown option; sets `taken` to how many arguments it used.
taken=0
# shellcheck disable=SC2034  # taken is read by the wrapper that sourced this
common_option() {
  case "$1" in
    --config) need "$1" $# "${2:-}"; config_args=(--config "$2"); taken=2 ;;
    -h|--help) usage ;;
    *) refuse "unknown option $1 (see $script --help)" ;;
  esac
}

# run_upkeep ARGUMENTS...: upkeep with the configuration; its exit code is returned.
run_upkeep() {
  upkeep "${config_args[@]}" "$@"
}
