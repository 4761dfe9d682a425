#!/usr/bin/env bash
# The main job on an embedded default: build ftune, import the real SmolLM2-135M-Instruct GGUF
# (fetched by scripts/setup.sh) into a Hugging Face directory, describe it, ask it two
# questions through its chat template, then fine-tune it on 2 CPU ranks (LoRA, then a short
# full fine-tune) and ask again. No Python at run time, no network after set-up.
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

# A real fine-tune on text every Debian machine has: chat records asking what a package is,
# answered with its description; SmolLM2's tokenizer and chat template; LoRA on 2 CPU ranks,
# held-out loss before and after; the same question to the base and to the fine-tuned model.
question="What is the Debian package rsync?"
echo "[demo] base model, Q: $question"
echo -n "[demo] A: "
"$ftune" generate --model "$smollm2" --chat "$question" --greedy --max-new-tokens 48
bash scripts/demo-data.sh "$out/packages.jsonl" 3000
rm -rf "$out/shards" "$out/lora" "$out/full"
"$ftune" data tokenize --inputs "$out/packages.jsonl" --output "$out/shards" --tokenizer "$smollm2" \
  --format chat
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none -np 2)
echo "[demo] LoRA fine-tune, 2 ranks, 24 steps (a few minutes on 2 cores)"
"${mpi[@]}" "$ftune" train --config configs/train-quickstart-lora.toml --data "$out/shards" \
  --out "$out/lora" --resume none
echo "[demo] fine-tuned (LoRA adapter), Q: $question"
echo -n "[demo] A: "
"$ftune" generate --model "$smollm2" --adapter "$out/lora/final" --chat "$question" --greedy \
  --max-new-tokens 48

# Then a short full fine-tune: every weight trained, sharded over the 2 ranks (each holds half
# of the fp32 master and AdamW state), exported as a Hugging Face directory unit by unit.
echo "[demo] full fine-tune, 2 ranks, 3 steps"
"${mpi[@]}" "$ftune" train --config configs/train-quickstart-lora.toml --method full --lr 2e-5 \
  --steps 3 --log.every 1 --data "$out/shards" --out "$out/full" --resume none
echo "[demo] fully fine-tuned, Q: $question"
echo -n "[demo] A: "
"$ftune" generate --model "$out/full/final" --chat "$question" --greedy --max-new-tokens 48
