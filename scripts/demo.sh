#!/usr/bin/env bash
# The main job on an embedded default: build ftune, write a tiny random Llama in Hugging Face
# format, print its architecture and parameter count, and generate from it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh --target ftune
ftune=${FTUNE_BUILD_DIR:-build}/launcher/ftune
out=${1:-runs/demo}
mkdir -p "$out"
"$ftune" model init --model.preset tiny-llama --out "$out/tiny-llama"
"$ftune" model info --model "$out/tiny-llama"
"$ftune" generate --model "$out/tiny-llama" --prompt-ids 1,5,9 --max-new-tokens 16 --greedy --json
