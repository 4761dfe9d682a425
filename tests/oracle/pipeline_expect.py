"""Oracle for `ftune data tokenize`: the reference ids and loss mask of rendered documents,
and what a shard directory holds.

usage: pipeline_expect.py TOKENIZER_DIR CASES.json SHARD_DIR OUT.json
CASES.json: [[[text, trained], ...], ...]: each document as segments; a token is trained when
its character span overlaps a trained segment (so " Paris" after "ASSISTANT:" is trained).
OUT.json: {"expected": [{"ids", "mask"}], "docs": [{"ids", "mask"}], "index": {...},
           "attrs": {...}, "tokenizer_sha256": str}
"""
import hashlib
import json
import os
import sys

import h5py
from tokenizers import Tokenizer


def expected(tok, cases):
    out = []
    for segments in cases:
        text, spans, pos = "", [], 0
        for piece, trained in segments:
            if trained:
                spans.append((pos, pos + len(piece)))
            text += piece
            pos += len(piece)
        enc = tok.encode(text, add_special_tokens=False)
        mask = []
        for a, b in enc.offsets:
            mask.append(int(any(s < max(b, a + 1) and a < e for s, e in spans)))
        out.append({"ids": enc.ids, "mask": mask})
    return out


def read_shards(shard_dir):
    index = json.load(open(os.path.join(shard_dir, "index.json")))
    docs, attrs = [], {}
    for entry in index["shards"]:
        with h5py.File(os.path.join(shard_dir, entry["file"]), "r") as f:
            tokens = f["tokens"][:].tolist()
            offs = f["doc_offsets"][:].tolist()
            mask = f["loss_mask"][:].tolist() if "loss_mask" in f else None
            if not attrs:
                attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
                attrs = {k: ([x.decode() if isinstance(x, bytes) else x for x in v] if isinstance(v, list)
                             else v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            for i in range(len(offs) - 1):
                docs.append({"ids": tokens[offs[i]:offs[i + 1]],
                             "mask": None if mask is None else mask[offs[i]:offs[i + 1]]})
    return index, docs, attrs


def main():
    tok_dir, cases_path, shard_dir, out_path = sys.argv[1:5]
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    result = {"expected": expected(tok, json.load(open(cases_path, encoding="utf-8")))}
    if os.path.exists(os.path.join(shard_dir, "index.json")):
        result["index"], result["docs"], result["attrs"] = read_shards(shard_dir)
    result["tokenizer_sha256"] = hashlib.sha256(open(os.path.join(tok_dir, "tokenizer.json"), "rb").read()).hexdigest()
    json.dump(result, open(out_path, "w"))


if __name__ == "__main__":
    main()
