#!/usr/bin/env bash
# Fuzzes the frame decoder for a bounded time: fuzz/run.sh SECONDS (default 30).
#
# SwiftPM cannot build libFuzzer targets, so the harness is compiled with swiftc directly against
# the decoder's sources (SwiftPM links its own `main` over libFuzzer's). The corpus starts
# from the golden vectors and the regression inputs. A crash is written to fuzz/out/crashes/ and
# the script exits non-zero: copy the input into fuzz/regressions/ (the Swift tests replay every
# file there), fix the bug, and commit both.
set -euo pipefail

seconds="${1:-30}"
case "$seconds" in (*[!0-9]*|'') echo "usage: fuzz/run.sh SECONDS" >&2; exit 2;; esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="$here/out"
corpus="$here/corpus"
mkdir -p "$out/crashes" "$corpus"

sources=(
  "$root/protocol/Sources/UpkeepProtocolCore/Frames/FrameCore.swift"
  "$root"/protocol/Sources/UpkeepProtocolCore/Messages/*.swift
  "$here/FrameDecoderFuzzer.swift"
)
# The message types import UpkeepCore (stdlib only): built first as a module of its own.
core_sources=("$root"/Sources/UpkeepCore/*.swift)
modules="$out/modules"
binary="$out/frame-decoder-fuzzer"
if [[ ! -x "$binary" ]] || [[ -n "$(find "${sources[@]}" "${core_sources[@]}" -newer "$binary" 2>/dev/null)" ]]; then
  echo "building $binary"
  mkdir -p "$modules"
  swiftc -parse-as-library -O -g -module-name UpkeepCore -emit-module -emit-module-path "$modules/UpkeepCore.swiftmodule" \
    -emit-library -static -o "$modules/libUpkeepCore.a" "${core_sources[@]}"
  swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name UpkeepProtocolFuzz \
    -I "$modules" -L "$modules" -lUpkeepCore "${sources[@]}" -o "$binary"
fi

cp -n "$root"/protocol/vectors/*.bin "$corpus"/ 2>/dev/null || true
for input in "$here"/regressions/*.bin; do [[ -e "$input" ]] && cp -n "$input" "$corpus"/; done

echo "fuzzing the frame decoder for ${seconds}s"
"$binary" "$corpus" -dict="$here/frames.dict" -max_len=4096 -max_total_time="$seconds" \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/crashes/"
