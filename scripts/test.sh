#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test (ctest labels
# unit, mpi, oracle, slurm; gpu tests skip visibly without a GPU; the slurm tests start and stop
# a local Slurm cluster of their own, tests/slurm/cluster.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
cd "${FTUNE_BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)" "$@"
