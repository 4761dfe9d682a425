#!/usr/bin/env bash
# Fuzzes the safetensors length prefix and header parser with libFuzzer for a bounded time.
#   scripts/fuzz-safetensors.sh [SECONDS=20] [WORK_DIR=/tmp/ftune-fuzz-safetensors-$USER]
# The main build uses g++ and LibTorch; this compiles only the torch-free sources the parser
# needs with clang (-fsanitize=fuzzer,address,undefined), so it needs no CMake build dir.
# Exit codes: 0 no crash, 77 clang++ missing (ctest reports a skip), other: the fuzzer found a
# crash, a leak or a timeout; the reproducer is WORK_DIR/crash-* (re-run: BINARY FILE).
set -euo pipefail

seconds=${1:-20}
work=${2:-${TMPDIR:-/tmp}/ftune-fuzz-safetensors-$(id -un)}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cxx=${FTUNE_FUZZ_CXX:-$(command -v clang++ || true)}
if [[ -z "$cxx" ]]; then
  echo "[fuzz] clang++ not found; install Debian's clang to run the fuzzer" >&2
  exit 77
fi

sources=(tests/runtime/fuzz_safetensors_header.cpp runtime/checkpoint/safetensors.cpp
         runtime/checkpoint/posix_file.cpp common/error.cpp common/text.cpp)
headers=(runtime/checkpoint/safetensors.h runtime/checkpoint/posix_file.h common/error.h common/text.h)
bin="$work/fuzz_safetensors_header"
mkdir -p "$work/corpus"

# Rebuild only when a source is newer than the binary: the compile takes far longer than a run.
stale=0
[[ -x "$bin" ]] || stale=1
for f in "${sources[@]}" "${headers[@]}" scripts/fuzz-safetensors.sh; do
  [[ "$root/$f" -nt "$bin" ]] && stale=1
done
if (( stale )); then
  echo "[fuzz] compiling $bin with $cxx"
  args=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -I"$root" "${sources[@]/#/$root/}" -o "$bin.tmp")
  # Share the machine's two build slots with scripts/locked-build.sh.
  while true; do
    for slot in 0 1; do
      exec 9>"/tmp/ftune-build-slot-$slot.lock"
      if flock -n 9; then
        "$cxx" "${args[@]}"
        exec 9>&-
        mv "$bin.tmp" "$bin"
        break 2
      fi
    done
    sleep 2
  done
fi

# Seeds go into a working copy so that the inputs libFuzzer adds never touch the repository.
cp -n "$root"/tests/runtime/fuzz_corpus/safetensors/* "$work/corpus/"
echo "[fuzz] running for ${seconds}s on $(ls "$work/corpus" | wc -l) corpus inputs"
exec "$bin" "$work/corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -dict="$root/tests/runtime/fuzz_corpus/safetensors.dict" -artifact_prefix="$work/" -print_final_stats=1
