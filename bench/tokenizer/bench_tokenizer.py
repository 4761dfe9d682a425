#!/usr/bin/env python3
"""Tokenizer throughput: ftune vs the `tokenizers` library on the same tokenizer.json and corpus.

Trains a Llama-3-style byte-level BPE tokenizer (Split regex + ByteLevel, ignore_merges,
32k vocab) on a generated multi-script corpus of a few MB, then times
  - ftune's C++ tokenizer (build target ftune_bench_tokenizer), 1 thread and all threads,
  - `ftune data encode` end to end (JSON in and out),
  - tokenizers' encode_batch with 1 rayon thread and with all threads,
prints tokens/s for each and checks that the ids are identical.

  .venv/bin/python bench/tokenizer/bench_tokenizer.py [--build build] [--mb 4]
"""
import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SYLLABLES = {
    "latin": "ka ro mi te sa lu ne po di va the and ing tion er re in on at en".split(),
    "cjk": list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区"),
    "arabic": "ال من في على إلى عن مع هذا كان قد لا ما هو هي كل بين".split(),
    "devanagari": "का की के में है और से को पर यह था लिए नहीं भी कर".split(),
    "cyrillic": "и в не на я что он с как а то все она так его но да ты".split(),
}
EMOJI = ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🚀", "✨", "🇫🇷", "😀"]
CODE = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
        "if err != nil {\n\treturn nil, err\n}\n", "    self.assertEqual(result, [1, 2, 3])\n"]


def make_word(rng, script):
    syl = SYLLABLES[script]
    n = rng.randint(1, 4) if script != "cjk" else rng.randint(1, 3)
    return ("" if script == "cjk" else "").join(rng.choice(syl) for _ in range(n))


def generate_corpus(path, megabytes, seed=7):
    """Zipf-like words in several scripts with numbers, punctuation, emoji, code and whitespace."""
    rng = random.Random(seed)
    lexicon = {s: [make_word(rng, s) for _ in range(4000)] for s in SYLLABLES}
    weights = [1.0 / (k + 1) for k in range(4000)]
    scripts = list(SYLLABLES)
    script_weights = [6, 2, 1, 1, 1]
    total = 0
    with open(path, "w", encoding="utf-8") as f:
        while total < megabytes * 1_000_000:
            script = rng.choices(scripts, script_weights)[0]
            words = rng.choices(lexicon[script], weights, k=rng.randint(20, 200))
            sep = "" if script == "cjk" else " "
            parts = []
            for w in words:
                r = rng.random()
                if r < 0.05:
                    w = w.capitalize() + rng.choice([".", ",", "!", "?", "'s", "'LL"])
                elif r < 0.07:
                    w = str(rng.randint(0, 10 ** rng.randint(1, 7)))
                elif r < 0.075:
                    w = rng.choice(EMOJI)
                parts.append(w)
            text = sep.join(parts)
            if rng.random() < 0.1:
                text += "\n\n" + rng.choice(CODE)
            if rng.random() < 0.1:
                text = text.replace(" ", "  ", 3) + "\r\n\t  \n"
            line = json.dumps({"text": text}, ensure_ascii=False)
            f.write(line + "\n")
            total += len(text.encode("utf-8"))


def train_tokenizer(corpus, out_dir):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=32000, special_tokens=["<|begin_of_text|>", "<|eot_id|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [json.loads(l)["text"] for l in open(corpus, encoding="utf-8")]
    tok.train_from_iterator(texts, trainer)
    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    return path


def time_tokenizers(tok_path, corpus, threads):
    """Best of three encode_batch passes in a child process with RAYON_NUM_THREADS=threads."""
    code = f"""
import json, time, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file({tok_path!r})
texts = [json.loads(l)["text"] for l in open({corpus!r}, encoding="utf-8")]
best = 1e30
for _ in range(3):
    t0 = time.perf_counter()
    enc = tok.encode_batch(texts, add_special_tokens=False)
    best = min(best, time.perf_counter() - t0)
ids = [e.ids for e in enc]
json.dump({{"seconds": best, "ids": ids}}, sys.stdout)
"""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    r = json.loads(out.stdout)
    return r["seconds"], r["ids"]


def read_ftune_ids(path):
    ids, data, pos = [], open(path, "rb").read(), 0
    while pos < len(data):
        (n,) = struct.unpack_from("<i", data, pos)
        ids.append(list(struct.unpack_from(f"<{n}i", data, pos + 4)))
        pos += 4 + 4 * n
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--mb", type=float, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    exe = os.path.join(args.build, "bench", "tokenizer", "ftune_bench_tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.jsonl")
        generate_corpus(corpus, args.mb)
        tok_path = train_tokenizer(corpus, tmp)
        ids_bin = os.path.join(tmp, "ids.bin")
        out = subprocess.run([exe, tok_path, corpus, str(args.threads), ids_bin], check=True,
                             capture_output=True, text=True).stdout
        print(out, end="")
        ftune_ids = read_ftune_ids(ids_bin)
        tokens = sum(len(x) for x in ftune_ids)
        # The CLI end to end: JSONL parse, encode, JSON out (single-threaded).
        ftune_bin = os.path.join(args.build, "launcher", "ftune")
        if os.path.exists(ftune_bin):
            t0 = time.perf_counter()
            subprocess.run([ftune_bin, "data", "encode", "--tokenizer", tok_path, corpus], check=True,
                           stdout=subprocess.DEVNULL)
            secs = time.perf_counter() - t0
            print(f"ftune data encode (CLI, 1 thread, incl. JSON I/O): {secs:.3f} s  {tokens / secs:.0f} tokens/s")
        for threads in (1, args.threads):
            secs, ref_ids = time_tokenizers(tok_path, corpus, threads)
            print(f"tokenizers {threads} thread(s): {secs:.3f} s  {tokens / secs:.0f} tokens/s")
            if ref_ids != ftune_ids:
                bad = next(i for i, (a, b) in enumerate(zip(ref_ids, ftune_ids)) if a != b)
                sys.exit(f"MISMATCH: ids differ from tokenizers at document {bad}")
        print(f"ids identical to tokenizers for all {len(ftune_ids)} documents ({tokens} tokens)")


if __name__ == "__main__":
    main()
