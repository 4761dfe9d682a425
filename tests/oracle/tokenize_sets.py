"""Oracle for `ftune data tokenize` on several ranks: reads shard sets through h5py alone and
checks that each holds the reference set's documents (token ids and loss masks), in the same
order, with the same set attributes; shard boundaries may differ.

usage: tokenize_sets.py REF_DIR DIR [DIR ...]
Prints "OK DIR <documents> <shards>" per set, or "DIFF DIR: what" and exits 1.
"""
import json
import os
import sys

import h5py

SET_ATTRS = ("tokenizer_hash", "vocab_size", "bos_id", "eos_id", "source_files", "format_version")


def as_py(v):
    if isinstance(v, bytes):
        return v.decode()
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list):
        return [as_py(x) for x in v]
    return v


def read_set(d):
    index = json.load(open(os.path.join(d, "index.json")))
    docs, attrs = [], None
    for entry in index["shards"]:
        with h5py.File(os.path.join(d, entry["file"]), "r") as f:
            a = {k: as_py(f.attrs[k]) for k in SET_ATTRS}
            if attrs is None:
                attrs = a
            elif a != attrs:
                raise SystemExit(f"DIFF {d}: {entry['file']} has attributes {a}, the first shard {attrs}")
            tokens, off = f["tokens"][:], f["doc_offsets"][:]
            mask = f["loss_mask"][:] if "loss_mask" in f else None
            for i in range(len(off) - 1):
                m = None if mask is None else mask[off[i]:off[i + 1]].tolist()
                docs.append((tokens[off[i]:off[i + 1]].tolist(), m))
    return index, docs, attrs


def main():
    ref_index, ref_docs, ref_attrs = read_set(sys.argv[1])
    bad = False
    for d in sys.argv[2:]:
        index, docs, attrs = read_set(d)
        problem = None
        if attrs != ref_attrs:
            problem = f"attributes {attrs} != {ref_attrs}"
        elif len(docs) != len(ref_docs):
            problem = f"{len(docs)} documents, the reference {len(ref_docs)}"
        elif docs != ref_docs:
            i = next(i for i in range(len(docs)) if docs[i] != ref_docs[i])
            problem = f"document {i} differs"
        elif index["has_loss_mask"] != ref_index["has_loss_mask"] or index["tokens"] != ref_index["tokens"]:
            problem = "index totals differ"
        if problem:
            print(f"DIFF {d}: {problem}")
            bad = True
        else:
            print(f"OK {d} {len(docs)} {len(index['shards'])}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
