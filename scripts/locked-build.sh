#!/usr/bin/env bash
# For developers sharing a 2-core machine: runs `cmake --build "$@"` once one of two build
# slots is free, so at most two builds compete for the cores.
set -euo pipefail
while true; do
  for slot in 0 1; do
    exec 9>"/tmp/ftune-build-slot-$slot.lock"
    if flock -n 9; then
      cmake --build "$@"
      exit $?
    fi
  done
  sleep 2
done
