#!/usr/bin/env bash
# The main job on an embedded default: build ftune, import the real SmolLM2-135M-Instruct GGUF
# (fetched by scripts/setup.sh) into a Hugging Face directory, describe it, and ask it two
# questions through its chat template; then the tiny random models (ids in, ids out; text with
# the built-in byte-level tokenizer). No Python at run time, no network after set-up.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh --target ftune
ftune=${FTUNE_BUILD_DIR:-build}/launcher/ftune
out=${1:-runs/demo}
mkdir -p "$out"

# Imported once; a second run reuses the directory (config.json is written last).
smollm2=runs/smollm2
gguf=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$smollm2/config.json" ] || [ "$gguf" -nt "$smollm2/config.json" ]; then
  "$ftune" model import "$gguf" --out "$smollm2"
fi
"$ftune" model info --model "$smollm2"
for q in "What is the capital of France?" "Give me three tips for writing clear code."; do
  echo "[demo] Q: $q"
  echo -n "[demo] A: "
  "$ftune" generate --model "$smollm2" --chat "$q" --greedy --max-new-tokens 96
done

"$ftune" model init --model.preset tiny-llama --out "$out/tiny-llama"
"$ftune" model info --model "$out/tiny-llama"
"$ftune" generate --model "$out/tiny-llama" --prompt-ids 1,5,9 --max-new-tokens 16 --greedy --json

# Text in, text out: tiny-llama3's 512 embedding rows hold the byte tokenizer's 258 tokens. The
# weights are random, so the continuation is noise; it shows the path, not a language model.
"$ftune" model init --model.preset tiny-llama3 --model.tokenizer byte --out "$out/tiny-llama3"
"$ftune" generate --model "$out/tiny-llama3" --prompt "Hello, world" --max-new-tokens 16 --greedy --json
