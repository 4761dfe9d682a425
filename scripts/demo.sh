#!/usr/bin/env bash
# The main job on an embedded default: build ftune, write a tiny random Llama in Hugging Face
# format, print its architecture and parameter count, and generate from it: from token ids,
# then from text with a byte-level tokenizer this script writes (no Python, no network).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh --target ftune
ftune=${FTUNE_BUILD_DIR:-build}/launcher/ftune
out=${1:-runs/demo}
mkdir -p "$out"

# A byte-level tokenizer.json with no merges: one token per byte (ids 0-255, spelled as GPT-2's
# byte-to-unicode table spells them), plus <|begin_of_text|> (256, added by the post-processor)
# and <|end_of_text|> (257). Every token is written as JSON \u escapes, so no quoting is needed.
write_byte_tokenizer() {
  local dir=$1 b cp extra=0 sep=""
  mkdir -p "$dir"
  {
    printf '{"version": "1.0", "truncation": null, "padding": null, "added_tokens": ['
    printf '{"id": 256, "content": "<|begin_of_text|>", "single_word": false, "lstrip": false, '
    printf '"rstrip": false, "normalized": false, "special": true}, '
    printf '{"id": 257, "content": "<|end_of_text|>", "single_word": false, "lstrip": false, '
    printf '"rstrip": false, "normalized": false, "special": true}], "normalizer": null, '
    printf '"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, '
    printf '"use_regex": true}, "post_processor": {"type": "TemplateProcessing", "single": '
    printf '[{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", '
    printf '"type_id": 0}}], "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": '
    printf '"B", "type_id": 1}}], "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", '
    printf '"ids": [256], "tokens": ["<|begin_of_text|>"]}}}, "decoder": {"type": "ByteLevel", '
    printf '"add_prefix_space": true, "trim_offsets": true, "use_regex": true}, '
    printf '"model": {"type": "BPE", "dropout": null, "unk_token": null, "merges": [], "vocab": {'
    for b in $(seq 0 255); do
      # Printable Latin-1 bytes stand for themselves; the others map to U+0100 onwards in order.
      if (( (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174 )); then
        cp=$b
      else
        cp=$((256 + extra)); extra=$((extra + 1))
      fi
      printf '%s"\\u%04X": %d' "$sep" "$cp" "$b"
      sep=", "
    done
    printf '}}}\n'
  } > "$dir/tokenizer.json"
  printf '{"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}\n' > "$dir/tokenizer_config.json"
}

"$ftune" model init --model.preset tiny-llama --out "$out/tiny-llama"
"$ftune" model info --model "$out/tiny-llama"
"$ftune" generate --model "$out/tiny-llama" --prompt-ids 1,5,9 --max-new-tokens 16 --greedy --json

# Text in, text out: tiny-llama3's 512 embedding rows hold the tokenizer's 258 tokens. The
# weights are random, so the continuation is noise; it shows the path, not a language model.
write_byte_tokenizer "$out/byte-tokenizer"
"$ftune" model init --model.preset tiny-llama3 --model.tokenizer "$out/byte-tokenizer" --out "$out/tiny-llama3"
"$ftune" generate --model "$out/tiny-llama3" --prompt "Hello, world" --max-new-tokens 16 --greedy --json
