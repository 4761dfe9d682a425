"""Oracle: reads a shard set written by ftune with h5py and checks it against data/FORMAT.md
and against what the test says it wrote.

usage: shards_layout.py SHARD_DIR EXPECTED_JSON
EXPECTED_JSON: {"tokenizer_hash", "vocab_size", "bos_id", "eos_id", "source_files",
                "tool_version", "with_loss_mask", "documents": [[ids...]...],
                "masks": [[0/1...]... or null]}
Prints "OK ..." and exits 0, or prints the first mismatch and exits 1.
"""
import json
import os
import sys

import h5py
import numpy as np


def fail(msg):
    print("MISMATCH: " + msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def as_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def check_shard(path, exp, index_entry):
    with h5py.File(path, "r") as f:
        a = f.attrs
        expect(int(a["format_version"]) == 2, f"{path}: format_version {a['format_version']}")
        expect(as_str(a["tokenizer_hash"]) == exp["tokenizer_hash"], f"{path}: tokenizer_hash")
        for key in ("vocab_size", "bos_id", "eos_id"):
            expect(int(a[key]) == exp[key], f"{path}: {key} {a[key]} != {exp[key]}")
        expect([as_str(s) for s in a["source_files"]] == exp["source_files"], f"{path}: source_files")
        expect(as_str(a["tool_version"]) == exp["tool_version"], f"{path}: tool_version")
        for key in ("format_version", "vocab_size", "bos_id", "eos_id", "n_documents", "n_tokens",
                    "n_masked_tokens"):
            expect(np.asarray(a[key]).dtype == np.int64, f"{path}: attribute {key} is not int64")
        for key in ("tokenizer_hash", "tool_version"):
            expect(isinstance(a[key], str), f"{path}: attribute {key} is not a UTF-8 string")
        tokens, offsets = f["tokens"], f["doc_offsets"]
        expect(tokens.chunks == (32768,) and tokens.compression is None,
               f"{path}: tokens chunks {tokens.chunks}, compression {tokens.compression}")
        want = np.uint16 if exp["vocab_size"] <= 65536 else np.uint32
        expect(tokens.dtype == want, f"{path}: tokens dtype {tokens.dtype}, want {want}")
        expect(tokens.ndim == 1 and tokens.chunks is not None, f"{path}: tokens not 1-D chunked")
        expect(offsets.dtype == np.int64 and offsets.ndim == 1, f"{path}: doc_offsets dtype")
        off = offsets[()]
        n_docs = int(a["n_documents"])
        expect(len(off) == n_docs + 1 and off[0] == 0 and off[-1] == len(tokens),
               f"{path}: offsets do not cover tokens")
        expect(int(a["n_tokens"]) == len(tokens), f"{path}: n_tokens")
        expect(index_entry["documents"] == n_docs and index_entry["tokens"] == len(tokens),
               f"{path}: index counts")
        mask = None
        if exp["with_loss_mask"]:
            expect(f["loss_mask"].dtype == np.uint8, f"{path}: loss_mask dtype")
            mask = f["loss_mask"][()]
            expect(len(mask) == len(tokens), f"{path}: loss_mask length")
            expect(int(a["n_masked_tokens"]) == int((mask == 0).sum()), f"{path}: n_masked_tokens")
        else:
            expect("loss_mask" not in f, f"{path}: unexpected loss_mask")
        toks = tokens[()]
        docs = [toks[off[i]:off[i + 1]].tolist() for i in range(n_docs)]
        masks = [mask[off[i]:off[i + 1]].tolist() for i in range(n_docs)] if mask is not None else None
        return docs, masks


def main():
    shard_dir, exp_path = sys.argv[1], sys.argv[2]
    exp = json.load(open(exp_path))
    index = json.load(open(os.path.join(shard_dir, "index.json")))
    expect(index["kind"] == "ftune-token-shards" and index["format_version"] == 2, "index kind/version")
    expect(index["tokenizer_hash"] == exp["tokenizer_hash"], "index tokenizer_hash")
    docs, masks = [], []
    for entry in index["shards"]:
        d, m = check_shard(os.path.join(shard_dir, entry["file"]), exp, entry)
        docs += d
        masks += m or []
    expect(docs == exp["documents"], "token values differ from what was written")
    if exp["with_loss_mask"]:
        want = [m if m is not None else [1] * len(d) for d, m in zip(exp["documents"], exp["masks"])]
        expect(masks == want, "loss mask values differ from what was written")
    expect(index["documents"] == len(docs), "index document count")
    expect(index["tokens"] == sum(len(d) for d in docs), "index token count")
    print(f"OK {len(index['shards'])} shards, {len(docs)} documents")


if __name__ == "__main__":
    main()
