#!/usr/bin/env python3
"""`ftune data tokenize` on 1 and 2 ranks (mpirun) with a real-sized tokenizer: tokens/s and
MB/s of input, and the scaling. Not a test.

Builds, once (cached under --cache), a Llama-3-sized byte-level BPE tokenizer: the Llama 3
pre-tokenizer regex + ByteLevel, ignore_merges, 128,000 BPE entries trained with `tokenizers`
on a generated multi-script corpus, plus 256 special tokens (<|begin_of_text|>, <|eot_id|>,
reserved ones): 128,256 ids, as Llama 3. Then generates a JSONL corpus of --mb MB (text
format) and times the tool on it, one uncompressed file cut into work items of --item-mb.

  scripts/build.sh --target ftune
  .venv/bin/python bench/data/bench_tokenize.py --build build --mb 200

Each configuration runs --repeat times; the best is kept. "tool s" is the time the tool
reports for its work (after the tokenizer is loaded); "wall s" includes start-up.
"""
import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenizer"))
from bench_tokenizer import CODE, EMOJI, LLAMA3_PATTERN, SYLLABLES  # noqa: E402

MPIRUN = ["mpirun", "--oversubscribe", "--bind-to", "none"]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def lexicon(rng, words_per_script):
    """Zipf-weighted random words per script: enough distinct words for 128k merges."""
    out = {}
    for script, syl in SYLLABLES.items():
        words = set()
        while len(words) < words_per_script:
            words.add("".join(rng.choice(syl) for _ in range(rng.randint(1, 5))))
        out[script] = sorted(words)
    return out


def generate_corpus(path, megabytes, seed=11, words_per_script=60000):
    rng = random.Random(seed)
    lex = lexicon(rng, words_per_script)
    weights = [1.0 / (k + 1) ** 0.9 for k in range(words_per_script)]
    scripts, script_weights = list(SYLLABLES), [6, 2, 1, 1, 1]
    total = 0
    with open(path, "w", encoding="utf-8") as f:
        while total < megabytes * 1_000_000:
            script = rng.choices(scripts, script_weights)[0]
            words = rng.choices(lex[script], weights, k=rng.randint(20, 300))
            parts = []
            for w in words:
                r = rng.random()
                if r < 0.05:
                    w = w.capitalize() + rng.choice([".", ",", "!", "?", "'s"])
                elif r < 0.07:
                    w = str(rng.randint(0, 10 ** rng.randint(1, 7)))
                elif r < 0.075:
                    w = rng.choice(EMOJI)
                parts.append(w)
            text = ("" if script == "cjk" else " ").join(parts)
            if rng.random() < 0.1:
                text += "\n\n" + rng.choice(CODE)
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            total += len(line.encode("utf-8"))


def train_tokenizer(corpus, out_dir, sample_mb):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=128000, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts, size = [], 0
    for line in open(corpus, encoding="utf-8"):
        texts.append(json.loads(line)["text"])
        size += len(line)
        if size > sample_mb * 1_000_000:
            break
    tok.train_from_iterator(texts, trainer)
    bpe = tok.get_vocab_size()
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(254)]
    specials[9] = "<|eot_id|>"
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, f)
    return bpe, tok.get_vocab_size()


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # ranks too, once mpirun has reaped them
    return r.ru_utime + r.ru_stime


def run(cmd):
    t0, c0 = time.perf_counter(), cpu_seconds()
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    m = re.search(r"-> (\d+) documents, (\d+) tokens", p.stdout)
    s = re.search(r"\[data\] ([\d.]+) s, ", p.stdout)
    return int(m.group(2)), float(s.group(1)), wall, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--cache", default=None, help="where the tokenizer and corpus are kept (default BUILD/bench-data)")
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--item-mb", type=float, default=16)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    exe = os.path.join(args.build, "launcher", "ftune")
    cache = args.cache or os.path.join(args.build, "bench-data")
    os.makedirs(cache, exist_ok=True)
    tok_dir, corpus = os.path.join(cache, "tok128k"), os.path.join(cache, f"corpus-{args.mb:g}mb.jsonl")
    if not os.path.exists(corpus):
        t0 = time.time()
        generate_corpus(corpus, args.mb)
        print(f"corpus: {args.mb:g} MB in {time.time() - t0:.0f} s", flush=True)
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        t0 = time.time()
        bpe, vocab = train_tokenizer(corpus, tok_dir, sample_mb=min(args.mb, 40))
        print(f"tokenizer: {bpe} BPE entries + specials = {vocab} ids, trained in {time.time() - t0:.0f} s", flush=True)
    vocab = json.load(open(os.path.join(tok_dir, "tokenizer.json")))
    n_ids = len(vocab["model"]["vocab"]) + len([t for t in vocab["added_tokens"] if t["id"] >= len(vocab["model"]["vocab"])])
    in_bytes = os.path.getsize(corpus)
    out = os.path.join(cache, "out")
    rows = {}
    for ranks, threads in [(1, 1), (2, 1), (1, 2), (2, 2)]:
        best = None
        for _ in range(args.repeat):
            shutil.rmtree(out, ignore_errors=True)
            cmd = [exe, "data", "tokenize", "--inputs", corpus, "--output", out, "--tokenizer", tok_dir,
                   "--threads", str(threads), "--item-bytes", str(int(args.item_mb * 1_000_000))]
            if ranks > 1:
                cmd = MPIRUN + ["-np", str(ranks)] + cmd
            r = run(cmd)
            best = r if best is None or r[1] < best[1] else best
        tokens, tool_s, wall_s, cpu_s = best
        rows[(ranks, threads)] = (tokens, tool_s, wall_s, cpu_s)
        print(f"{ranks} rank(s) x {threads} thread(s): {tokens / tool_s / 1e6:6.2f} M tok/s, "
              f"{in_bytes / tool_s / 1e6:6.1f} MB/s of input (tool {tool_s:.2f} s, wall {wall_s:.2f} s, "
              f"cpu {cpu_s:.2f} s)", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    print(f"\ninput {in_bytes / 1e6:.0f} MB, {rows[(1, 1)][0]:,} tokens, vocabulary {n_ids:,} ids, "
          f"items of {args.item_mb:g} MB, load {os.getloadavg()[0]:.1f}")
    # cpu/wall: how many cores the job got; with a free second core 2 ranks should reach ~2.
    print("| ranks x threads | tokens/s | MB/s of input | tool s | wall s | cpu s | cpu/wall | scaling vs 1 rank |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (ranks, threads), (tokens, tool_s, wall_s, cpu_s) in rows.items():
        scale = rows[(1, threads)][1] / tool_s
        print(f"| {ranks} x {threads} | {tokens / tool_s / 1e6:.2f} M | {in_bytes / tool_s / 1e6:.1f} | "
              f"{tool_s:.2f} | {wall_s:.2f} | {cpu_s:.2f} | {cpu_s / wall_s:.2f} | {scale:.2f}x |")


if __name__ == "__main__":
    main()
