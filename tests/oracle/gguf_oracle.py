"""Reference outputs from the `gguf` package and transformers' GGUF loader for ftune's GGUF tests.

  quant OUT                 OUT/quants.gguf: one [2, 512] tensor per type ftune dequantises (the
                            gguf quantiser where it has one, random blocks with finite scales
                            otherwise) and OUT/<TYPE>.f32, gguf.quants.dequantize's float32 bytes.
  reference GGUF CORPUS OUT from one load of transformers' GGUF model and tokenizer: the SHA-256
                            of every tensor's float32 bytes, the ids of each line of CORPUS (JSONL
                            with "text"), apply_chat_template renders, and 32 greedy tokens through
                            the chat template; JSON written to OUT.
  read-back DIR GGUF REIMPORT [GGUF REIMPORT ...]
                            ftune's exports of DIR read by gguf's reader (tensor bytes vs what DIR
                            implies) and by transformers (tensors vs ftune's re-import REIMPORT,
                            tokenizer ids vs DIR's); prints JSON, one entry per file.
  sp-gguf OUT CORPUS REF    OUT: a tiny llama GGUF with a SentencePiece BPE tokenizer trained on
                            CORPUS; REF: transformers' ids for each line from that file.
"""
import json
import os
import sys

import numpy as np

QUANT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# Where the f16 scales of a K-quant block lie (the rest of its bytes are random in the test).
K_SCALE_BYTES = {"Q2_K": (80, 84), "Q3_K": (108, 110), "Q4_K": (0, 4), "Q5_K": (0, 4), "Q6_K": (208, 210)}


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
            lo, hi = K_SCALE_BYTES[name]
            halves = rng.uniform(-0.1, 0.1, size=(blocks.shape[0], (hi - lo) // 2)).astype(np.float16)
            blocks[:, lo:hi] = halves.view(np.uint8).reshape(blocks.shape[0], hi - lo)
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
    # --dtype bfloat16 imports: torch's float32 -> bfloat16 rounding of the same tensors.
    weights_bf16 = {k: hashlib.sha256(v.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
                    .hexdigest() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
        weights_bf16.pop("lm_head.weight", None)
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
        json.dump({"weights": weights, "weights_bf16": weights_bf16, "tie_word_embeddings": bool(model.config.tie_word_embeddings),
                   "ids": ids, "chats": CHATS, "renders": renders,
                   "generate": dict(g, ids=new, text=tok.decode(new, skip_special_tokens=True))},
                  f, ensure_ascii=False)
    os.replace(out + ".tmp", out)


LAYER_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
               "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
               "ffn_norm": "post_attention_layernorm"}
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
TEXTS = ["Hello world! the theater", "<|im_start|>user\nhi<|im_end|>", "  spaces\tand 123 digits", "日本語 👋"]


def hf_name(name):
    parts = name.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}.{parts[3]}"
    return f"{TOP_NAMES[parts[0]]}.{parts[1]}"


def llama_cpp_permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute (HF rotary halves -> interleaved)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_back(source_dir, *pairs):
    """For each (GGUF, REIMPORT) pair: gguf's reader sees the tensors the source directory implies
    (f32/f16/bf16 bit for bit, Q8_0 equal to gguf's quantiser), transformers loads the file to the
    same tensors ftune re-imports, and its tokenizer encodes as the source directory's."""
    import gguf
    from gguf import GGMLQuantizationType as T, quants
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer
    src = load_file(os.path.join(source_dir, "model.safetensors"))
    cfg = json.load(open(os.path.join(source_dir, "config.json")))
    src_tok = AutoTokenizer.from_pretrained(source_dir)
    results = []
    for path, reimport in zip(pairs[0::2], pairs[1::2]):
        r = gguf.GGUFReader(path)
        diff, types = [], set()
        for t in r.tensors:
            if t.name == "rope_freqs.weight":  # llama3 RoPE factors: config, not a weight
                continue
            x = src[hf_name(t.name)].astype(np.float32)
            if ".attn_q." in t.name:
                x = llama_cpp_permute(x, cfg["num_attention_heads"])
            elif ".attn_k." in t.name:
                x = llama_cpp_permute(x, cfg["num_key_value_heads"])
            qt = T(t.tensor_type)
            types.add(qt.name)
            want = x.tobytes() if qt == T.F32 else (x.astype(np.float16).tobytes() if qt == T.F16 else
                                                   quants.quantize(x, qt).tobytes())
            if bytes(t.data.tobytes()) != want:
                diff.append(f"{t.name} ({qt.name}): bytes differ from the source")
        model = hf_model(path)
        ours = load_file(os.path.join(reimport, "model.safetensors"))
        ref = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            ref.pop("lm_head.weight", None)
        for k, v in ref.items():
            if k not in ours or ours[k].tobytes() != v.astype(np.float32).tobytes():
                diff.append(f"{k}: transformers' load differs from ftune's re-import")
        tok = hf_tokenizer(path)
        ids_equal = all(tok.encode(s) == src_tok.encode(s) for s in TEXTS)
        results.append({"file": path, "tensors": len(r.tensors), "types": sorted(types), "differ": diff,
                        "transformers_tensors": len(ref), "tokenizer_ids_equal": ids_equal,
                        "architecture": bytes(r.fields["general.architecture"].parts[-1]).decode()})
    print(json.dumps(results))


def sp_gguf(out, corpus, ref):
    """A tiny llama GGUF whose tokenizer is a SentencePiece BPE model (byte fallback) trained here,
    written as llama.cpp's converter writes one (pieces, scores, token types), and transformers'
    ids for each line of CORPUS from that file."""
    import io
    import gguf
    import sentencepiece as spm
    texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts * 20), model_writer=model, vocab_size=1000,
                                   model_type="bpe", byte_fallback=True, character_coverage=0.995,
                                   user_defined_symbols=["<|user|>"], minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else
                     5 if sp.is_unused(i) else 4 if tokens[-1] == "<|user|>" else 1)
    n, h, f, heads, kv = len(tokens), 64, 96, 4, 2
    w = gguf.GGUFWriter(out, "llama")
    for key, v in [("block_count", 1), ("context_length", 128), ("embedding_length", h),
                   ("feed_forward_length", f), ("attention.head_count", heads),
                   ("attention.head_count_kv", kv), ("rope.dimension_count", h // heads), ("vocab_size", n)]:
        w.add_uint32(f"llama.{key}", v)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    rng = np.random.default_rng(1)
    shapes = {"token_embd.weight": (n, h), "output_norm.weight": (h,), "blk.0.attn_norm.weight": (h,),
              "blk.0.ffn_norm.weight": (h,), "blk.0.attn_q.weight": (h, h), "blk.0.attn_k.weight": (h // 2, h),
              "blk.0.attn_v.weight": (h // 2, h), "blk.0.attn_output.weight": (h, h),
              "blk.0.ffn_gate.weight": (f, h), "blk.0.ffn_up.weight": (f, h), "blk.0.ffn_down.weight": (h, f)}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tok = hf_tokenizer(out)
    with open(ref, "w", encoding="utf-8") as fo:
        json.dump({"ids": [tok.encode(t) for t in texts], "sentencepiece": [sp.encode(t) for t in texts],
                   "decoded": [tok.decode(tok.encode(t), skip_special_tokens=True) for t in texts],
                   "tokenizer": json.loads(tok.backend_tokenizer.to_str())}, fo, ensure_ascii=False)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"quant": quant, "reference": reference, "read-back": read_back, "sp-gguf": sp_gguf}[cmd](*args)
