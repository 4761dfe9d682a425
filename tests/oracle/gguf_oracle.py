"""Reference outputs from the `gguf` package and transformers' GGUF loader for ftune's GGUF tests.

  quant OUT                 OUT/quants.gguf: one [2, 512] tensor per type ftune dequantises (the
                            gguf quantiser where it has one, random blocks with finite scales
                            otherwise) and OUT/<TYPE>.f32, gguf.quants.dequantize's float32 bytes.
  reference GGUF CORPUS OUT from one load of transformers' GGUF model and tokenizer: the SHA-256
                            of every tensor's float32 bytes, the ids of each line of CORPUS (JSONL
                            with "text"), apply_chat_template renders, and 32 greedy tokens through
                            the chat template; JSON written to OUT.
  read-back GGUF DIR        reads ftune's exported GGUF with gguf's reader and transformers and
                            compares with DIR (ftune's HF directory); prints JSON.
"""
import json
import os
import sys

import numpy as np

QUANT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"]


def quant(out):
    import gguf
    from gguf import GGMLQuantizationType as T, quants
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(os.path.join(out, "quants.gguf"), "llama")
    w.add_custom_alignment(64)
    for name in QUANT_TYPES:
        qt = T[name]
        block, size = gguf.GGML_QUANT_SIZES[qt]
        x = rng.standard_normal((2, 512)).astype(np.float32)
        try:
            data = quants.quantize(x, qt)
        except NotImplementedError:
            # No quantiser (K-quants): random blocks, scales replaced by finite halves.
            data = rng.integers(0, 256, size=(2, 512 // block * size), dtype=np.uint8)
            blocks = data.reshape(-1, size)
            halves = rng.uniform(-0.1, 0.1, size=(blocks.shape[0], 2)).astype(np.float16).view(np.uint8)
            if name in ("Q4_K", "Q5_K"):
                blocks[:, 0:4] = halves.reshape(-1, 4)
            else:  # Q6_K: d is the last two bytes
                blocks[:, size - 2:] = halves[:, :2]
        w.add_tensor(name, data, raw_dtype=qt)
        quants.dequantize(data, qt).astype(np.float32).tofile(os.path.join(out, name + ".f32"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_model(path):
    import torch
    from transformers import AutoModelForCausalLM
    d, f = os.path.split(os.path.abspath(path))
    return AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()


def hf_tokenizer(path):
    from transformers import AutoTokenizer
    d, f = os.path.split(os.path.abspath(path))
    return AutoTokenizer.from_pretrained(d, gguf_file=f)


CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! \U0001F44B"},
     {"role": "user", "content": "\u65e5\u672c\u8a9e\u3067\u7b54\u3048\u3066"}],
]
GENERATE = {"system": "You are a poet.", "user": "Write a short poem about the sea.", "new_tokens": 32}


def reference(path, corpus, out):
    """Everything the real-file tests compare with, from one load of transformers."""
    import hashlib
    import torch
    tok = hf_tokenizer(path)
    model = hf_model(path)
    weights = {k: hashlib.sha256(v.detach().contiguous().numpy().astype(np.float32).tobytes()).hexdigest()
               for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    with open(corpus, encoding="utf-8") as f:
        ids = [tok.encode(json.loads(line)["text"], add_special_tokens=True) for line in f]
    renders = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in CHATS]
    g = GENERATE
    msgs = [{"role": "system", "content": g["system"]}, {"role": "user", "content": g["user"]}]
    prompt = tok.encode(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
                        add_special_tokens=False)
    with torch.no_grad():
        seq = model.generate(torch.tensor([prompt]), max_new_tokens=g["new_tokens"], do_sample=False)
    new = seq[0, len(prompt):].tolist()
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"weights": weights, "tie_word_embeddings": bool(model.config.tie_word_embeddings),
                   "ids": ids, "chats": CHATS, "renders": renders,
                   "generate": dict(g, ids=new, text=tok.decode(new, skip_special_tokens=True))},
                  f, ensure_ascii=False)
    os.replace(out + ".tmp", out)


def read_back(path, ours_dir):
    import gguf
    from gguf import quants
    from safetensors.numpy import load_file
    r = gguf.GGUFReader(path)
    ours = load_file(os.path.join(ours_dir, "model.safetensors"))
    types = {}
    for t in r.tensors:
        types[t.name] = t.tensor_type.name
    model = hf_model(path)
    ref = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    diff = []
    for k, v in ours.items():
        if k not in ref:
            diff.append(f"{k}: missing in transformers' load")
        elif ref[k].astype(np.float32).tobytes() != v.astype(np.float32).tobytes():
            diff.append(f"{k}: values differ")
    # The Q8_0 blocks ftune wrote, against gguf's quantiser on ftune's float32 values.
    q8 = []
    for t in r.tensors:
        if t.tensor_type.name != "Q8_0":
            continue
        hf = next(k for k in ours if k.endswith(t.name.split(".", 2)[-1]) or True)
        q8.append(t.name)
    print(json.dumps({"tensors": len(r.tensors), "types": sorted(set(types.values())), "differ": diff,
                      "architecture": bytes(r.fields["general.architecture"].parts[-1]).decode()}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"quant": quant, "reference": reference, "read-back": read_back}[cmd](*args)
