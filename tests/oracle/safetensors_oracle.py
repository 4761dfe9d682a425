"""Python `safetensors` as the reference for ftune's safetensors reader and writer.

  write DIR             write files with Python safetensors (numpy and torch, bf16 included) and
                        each tensor's raw bytes plus a manifest, for ftune to read and compare
  write-sharded DIR     write a sharded checkpoint with huggingface_hub.save_torch_state_dict (the
                        code transformers' save_pretrained uses), raw bytes in DIR/expect
  check FILE EXPECT     load a file ftune wrote; compare every tensor with EXPECT/<name>.bin and the
                        ramps with values computed here; metadata must match EXPECT/metadata.json
  check-sharded DIR EXPECT
                        load a sharded checkpoint ftune wrote the way Hugging Face does: read the
                        index, load every shard, check weight_map and total_size, compare bytes
Exit 0 and "OK" on success; any mismatch raises.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64",
            torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL", torch.float64: "F64",
            torch.int8: "I8", torch.int16: "I16"}


def raw_bytes(t):
    """The tensor's bytes as safetensors stores them (little-endian, row-major)."""
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write(out_dir):
    gen = torch.Generator().manual_seed(0)
    by_torch = {
        "model.embed_tokens.weight": torch.randn(7, 5, generator=gen).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(3, 4, generator=gen).to(torch.float16),
        "model.norm.weight": torch.randn(5, generator=gen),
        "positions": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "scalar": torch.tensor(3.5, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 3),
    }
    rng = np.random.default_rng(1)
    by_numpy = {
        "f32": rng.standard_normal((4, 3)).astype(np.float32),
        "f16": rng.standard_normal(9).astype(np.float16),
        "f64": rng.standard_normal(2),
        "i64": np.array([-3, 1 << 40], dtype=np.int64),
        "u8": np.arange(11, dtype=np.uint8),
        "mask": np.array([True, False, True]),
    }
    save_torch(by_torch, os.path.join(out_dir, "torch.safetensors"), metadata={"format": "pt"})
    save_numpy(by_numpy, os.path.join(out_dir, "numpy.safetensors"), metadata={"source": "numpy", "n": "6"})
    manifest = {"torch.safetensors": {"metadata": {"format": "pt"}, "tensors": {}},
                "numpy.safetensors": {"metadata": {"source": "numpy", "n": "6"}, "tensors": {}}}
    tensors = {"torch.safetensors": by_torch,
               "numpy.safetensors": {k: torch.from_numpy(v) for k, v in by_numpy.items()}}
    for file, named in tensors.items():
        for name, t in named.items():
            bin_name = f"{file}.{name}.bin"
            with open(os.path.join(out_dir, bin_name), "wb") as f:
                f.write(raw_bytes(t))
            manifest[file]["tensors"][name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "bytes": bin_name}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f)


def write_sharded(out_dir):
    from huggingface_hub import save_torch_state_dict

    gen = torch.Generator().manual_seed(2)
    state = {f"model.layers.{i}.self_attn.q_proj.weight": torch.randn(16, 16, generator=gen).to(torch.bfloat16)
             for i in range(4)}
    state["model.norm.weight"] = torch.randn(16, generator=gen)
    save_torch_state_dict(state, out_dir, max_shard_size=1200)
    os.makedirs(os.path.join(out_dir, "expect"))
    for name, t in state.items():
        with open(os.path.join(out_dir, "expect", name + ".bin"), "wb") as f:
            f.write(raw_bytes(t))


def compare(name, t, expect_dir):
    want = open(os.path.join(expect_dir, name + ".bin"), "rb").read()
    got = raw_bytes(t)
    assert got == want, f"{name}: bytes differ ({len(got)} vs {len(want)} bytes)"


def check_ramps(tensors):
    """ftune writes these with values computed in C++; recompute them here."""
    if "ramp.f32" in tensors:
        t = tensors["ramp.f32"]
        want = torch.arange(t.numel(), dtype=torch.float32).reshape(t.shape) * 0.25
        assert torch.equal(t, want), "ramp.f32 values differ"
    if "ramp.bf16" in tensors:
        t = tensors["ramp.bf16"]
        assert t.dtype == torch.bfloat16, t.dtype
        want = torch.arange(t.numel(), dtype=torch.float32).reshape(t.shape) - 8
        assert torch.equal(t.float(), want), "ramp.bf16 values differ"


def check(path, expect_dir):
    expected_names = json.load(open(os.path.join(expect_dir, "names.json")))
    tensors = {}
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        for name in f.keys():
            tensors[name] = f.get_tensor(name)
    assert sorted(tensors) == sorted(expected_names), f"names differ: {sorted(tensors)} vs {sorted(expected_names)}"
    want_meta = json.load(open(os.path.join(expect_dir, "metadata.json")))
    assert (meta or {}) == want_meta, f"metadata differs: {meta} vs {want_meta}"
    for name, t in tensors.items():
        compare(name, t, expect_dir)
    check_ramps(tensors)
    print("OK", len(tensors), "tensors")


def check_sharded(ckpt_dir, expect_dir):
    index = json.load(open(os.path.join(ckpt_dir, "model.safetensors.index.json")))
    weight_map = index["weight_map"]
    shards = sorted(set(weight_map.values()))
    n = len(shards)
    assert shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)], shards
    tensors, total = {}, 0
    for shard in shards:
        with safe_open(os.path.join(ckpt_dir, shard), framework="pt") as f:
            assert f.metadata() == {"format": "pt"}, f.metadata()
            for name in f.keys():
                assert weight_map.get(name) == shard, f"{name} is in {shard} but the index says {weight_map.get(name)}"
                tensors[name] = f.get_tensor(name)
                total += tensors[name].numel() * tensors[name].element_size()
    assert sorted(tensors) == sorted(weight_map), "index and shards list different tensors"
    assert index["metadata"]["total_size"] == total, (index["metadata"]["total_size"], total)
    for name, t in tensors.items():
        compare(name, t, expect_dir)
    check_ramps(tensors)
    print("OK", len(tensors), "tensors in", n, "shards")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write":
        write(sys.argv[2])
    elif cmd == "write-sharded":
        write_sharded(sys.argv[2])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3])
    elif cmd == "check-sharded":
        check_sharded(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
