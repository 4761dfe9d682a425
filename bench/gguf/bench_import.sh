#!/usr/bin/env bash
# Import time and peak memory of the SmolLM2-135M-Instruct Q4_1 GGUF (scripts/setup.sh's cache):
# `ftune model import` (float32 safetensors written to disk) against transformers' GGUF load
# (AutoModelForCausalLM.from_pretrained(gguf_file=..., dtype=float32), dequantised in memory, not
# saved: transformers refuses save_pretrained on a GGUF-loaded model). One run each, cold
# process; wall time and peak RSS from /usr/bin/time.
# Usage: bench/gguf/bench_import.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ftune=${1:-build}/launcher/ftune
gguf=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
measure() {  # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$out/time" "$@" >/dev/null 2>"$out/err" || { cat "$out/err"; exit 1; }
  read -r wall rss <"$out/time"
  printf '%-44s %7.2f s  %7.0f MiB\n' "$label" "$wall" "$((rss / 1024))"
}
measure "ftune model import (float32)" "$ftune" model import "$gguf" --out "$out/f32"
measure "ftune model import (bfloat16)" "$ftune" model import "$gguf" --out "$out/bf16" --dtype bfloat16
measure "python: import torch + transformers only" .venv/bin/python -c "import torch, transformers"
measure "transformers GGUF load (float32)" .venv/bin/python -c "
import os, torch
from transformers import AutoModelForCausalLM
d, f = os.path.split(os.path.abspath('$gguf'))
AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)"
