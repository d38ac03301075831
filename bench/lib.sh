# Shared helpers for bench/ scripts: build the release driver once, pick medians.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BIN="$ROOT/.build/release/upkeep-bench"

build_bench() {
  (cd "$ROOT" && swift build -c release --product upkeep-bench >/dev/null)
}

# field KEY LINE: the value of KEY=value in a key=value line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

# median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# ratio A B with 3 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
