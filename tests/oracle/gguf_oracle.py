"""Reference outputs from the `gguf` package and transformers' GGUF loader for ftune's GGUF tests.

  quant OUT                 OUT/quants.gguf: one [2, 512] tensor per type ftune dequantises (the
                            gguf quantiser where it has one, random blocks with finite scales
                            otherwise) and OUT/<TYPE>.f32, gguf.quants.dequantize's float32 bytes.
  weights GGUF DIR          compares every tensor of transformers' model loaded from GGUF with
                            DIR/model.safetensors (ftune's import), bit for bit; prints JSON.
  tokenizer GGUF CORPUS OUT ids of transformers' GGUF tokenizer for each line of CORPUS (JSONL with
                            "text"), and apply_chat_template renders; writes JSON to OUT.
  generate GGUF N SYSTEM USER  greedy ids (N new tokens, float32) through the chat template; prints JSON.
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


def weights(path, ours_dir):
    from safetensors.numpy import load_file
    model = hf_model(path)
    ours = load_file(os.path.join(ours_dir, "model.safetensors"))
    ref = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        ref.pop("lm_head.weight", None)
    diff = []
    for k, v in ref.items():
        if k not in ours:
            diff.append(f"{k}: missing in ftune's import")
        elif ours[k].shape != v.shape:
            diff.append(f"{k}: shape {ours[k].shape} vs {v.shape}")
        elif ours[k].tobytes() != v.astype(np.float32).tobytes():
            n = int((ours[k].view(np.uint32) != v.astype(np.float32).view(np.uint32)).sum())
            diff.append(f"{k}: {n} values differ")
    extra = sorted(set(ours) - set(ref))
    print(json.dumps({"tensors": len(ref), "differ": diff, "extra": extra,
                      "tie_word_embeddings": bool(model.config.tie_word_embeddings)}))


def tokenizer(path, corpus, out):
    tok = hf_tokenizer(path)
    ids = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            ids.append(tok.encode(json.loads(line)["text"], add_special_tokens=True))
    chats = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2+2?"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! 👋"},
         {"role": "user", "content": "日本語で答えて"}],
    ]
    renders = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"ids": ids, "chats": chats, "renders": renders}, f, ensure_ascii=False)


def generate(path, n, system, user):
    import torch
    tok = hf_tokenizer(path)
    model = hf_model(path)
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=int(n), do_sample=False)
    new = out[0, len(ids):].tolist()
    print(json.dumps({"prompt": ids, "ids": new, "text": tok.decode(new, skip_special_tokens=True)}))


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
    {"quant": quant, "weights": weights, "tokenizer": tokenizer, "generate": generate,
     "read-back": read_back}[cmd](*args)
