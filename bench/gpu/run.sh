#!/usr/bin/env bash
# The GPU benchmark in one go: builds ftune on this (single-GPU) machine, runs the PyTorch
# anchors and ftune on the same Llama shapes, prints one table. See bench/gpu/README.md.
# Usage: bench/gpu/run.sh LOGDIR [--only 1b|3b] [--steps N]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench/gpu/run.sh LOGDIR [--only 1b|3b] [--steps N]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
logs=$(cd "$1" && pwd)
shift
cd "$root"
if [ ! -f .devdeps/env.sh ]; then
  echo "bench/gpu: .devdeps/env.sh is missing: on the CPU machine run 'bash ../shared/device/pack-deps.sh'" \
       "in the project root and bring .devdeps/ along" >&2
  exit 2
fi
source .devdeps/env.sh
command -v nvidia-smi >/dev/null && nvidia-smi >"$logs/nvidia-smi.txt" 2>&1 || true
build=${FTUNE_GPU_BUILD:-/tmp/ftune-gpu-build}
t0=$(date +%s)
# Only the binary and its LibTorch library: tests and CPU benchmarks would double the build.
if ! { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFTUNE_BUILD_TESTS=OFF \
         -DFTUNE_BUILD_BENCH=OFF && cmake --build "$build" --target ftune; } >"$logs/build.log" 2>&1; then
  tail -40 "$logs/build.log"
  echo "bench/gpu: the build failed; the whole log is $logs/build.log" >&2
  exit 1
fi
echo "[bench] built ftune in $(( $(date +%s) - t0 )) s ($build)"
python3 bench/gpu/bench_gpu.py --ftune "$build/launcher/ftune" --logs "$logs" --started "$t0" "$@"
