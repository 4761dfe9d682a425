#!/usr/bin/env bash
# Kept for muscle memory and old notes: the safetensors row of scripts/fuzz.sh.
#   scripts/fuzz-safetensors.sh [SECONDS=20] [WORK_DIR=/tmp/ftune-fuzz-safetensors-$USER]
exec "$(dirname "${BASH_SOURCE[0]}")/fuzz.sh" safetensors "$@"
