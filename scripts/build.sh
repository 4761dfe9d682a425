#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds ftune into build/.
# Usage: scripts/build.sh [cmake --build args...]   e.g. scripts/build.sh --target ftune
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
build=${FTUNE_BUILD_DIR:-build}
# Let ccache hit across checkouts in different folders (CI builds a fresh clone).
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${FTUNE_BUILD_TYPE:-Release} >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
fi
cmake --build "$build" "$@"
