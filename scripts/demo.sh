#!/usr/bin/env bash
# The main job on an embedded default: build ftune, write a tiny random Llama in Hugging Face
# format, print its architecture and parameter count, and generate from it: from token ids,
# then from text with ftune's built-in byte-level tokenizer (no Python, no network).
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

# Text in, text out: tiny-llama3's 512 embedding rows hold the byte tokenizer's 258 tokens. The
# weights are random, so the continuation is noise; it shows the path, not a language model.
"$ftune" model init --model.preset tiny-llama3 --model.tokenizer byte --out "$out/tiny-llama3"
"$ftune" generate --model "$out/tiny-llama3" --prompt "Hello, world" --max-new-tokens 16 --greedy --json
