"""Reference outputs from Hugging Face transformers for ftune's model tests (float32, CPU).

  make OUT            tiny random Llama / Llama-3.1-style / Qwen2 / Mistral models in OUT/<kind>,
                      each with ids.safetensors (token ids), logits.safetensors (HF logits),
                      generate.json (prompt + HF greedy continuation), and grads.safetensors:
                      gradients of the summed cross-entropy for a plain batch and for a packed
                      one (references: each packed document run alone, losses summed).
  logits DIR IDS OUT  HF logits of the model in DIR for the ids in IDS, written to OUT.
"""
import json
import sys

import torch
from safetensors.torch import load_file, save_file
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

transformers.logging.set_verbosity_error()

COMMON = dict(vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              bos_token_id=1, eos_token_id=2)


def build(kind):
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**COMMON, rms_norm_eps=1e-5))
    if kind == "llama3":
        cfg = LlamaConfig(**{**COMMON, "num_key_value_heads": 1}, tie_word_embeddings=True,
                          rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 16},
                          rope_theta=500000.0)
        return LlamaForCausalLM(cfg)
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**COMMON, rope_theta=1000000.0))
    if kind == "mistral":
        # A window shorter than the sequences, so the sliding-window mask matters.
        return MistralForCausalLM(MistralConfig(**COMMON, sliding_window=8))
    raise SystemExit(f"unknown kind {kind}")


def make(out):
    for i, kind in enumerate(["llama", "llama3", "qwen2", "mistral"]):
        torch.manual_seed(1234 + i)
        model = build(kind).eval()
        # HF's default init (std 0.02) gives near-uniform logits; larger weights make the
        # comparison and the greedy path sensitive to real differences.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.2)
                elif "norm" in name:
                    p.uniform_(0.5, 1.5)
                else:
                    p.normal_(0.0, 0.1)
        d = f"{out}/{kind}"
        model.save_pretrained(d, max_shard_size="100KB" if kind == "llama" else "5GB")
        ids = torch.randint(0, model.config.vocab_size, (2, 24), dtype=torch.int64)
        with torch.no_grad():
            logits = model(ids).logits
        save_file({"ids": ids}, f"{d}/ids.safetensors")
        save_file({"logits": logits.contiguous()}, f"{d}/logits.safetensors")
        prompt = torch.randint(3, model.config.vocab_size, (1, 5), dtype=torch.int64)
        with torch.no_grad():
            seq = model.generate(prompt, do_sample=False, max_new_tokens=32, pad_token_id=0)
        new = seq[0, prompt.shape[1]:].tolist()
        with open(f"{d}/generate.json", "w") as f:
            json.dump({"prompt": prompt[0].tolist(), "ids": new}, f)
        save_file(gradients(model), f"{d}/grads.safetensors")


def summed_ce(model, ids, labels):
    logits = model(ids).logits.float()
    return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                             reduction="sum", ignore_index=-100)


def grads_of(model, loss):
    model.zero_grad()
    loss.backward()
    return {f"{n}": p.grad.detach().clone() for n, p in model.named_parameters()}


def gradients(model):
    """Inputs and HF gradients, plain ("plain.*") and packed ("packed.*")."""
    v = model.config.vocab_size
    out = {}
    ids = torch.randint(0, v, (2, 24), dtype=torch.int64)
    labels = torch.randint(0, v, (2, 24), dtype=torch.int64)
    labels[0, 5] = labels[1, 0] = -100
    for n, g in grads_of(model, summed_ce(model, ids, labels)).items():
        out[f"plain.grad.{n}"] = g
    out.update({"plain.ids": ids, "plain.labels": labels})
    # Packed: row 0 holds documents of 10 and 14 tokens, row 1 one of 24.
    lengths = [10, 14, 24]
    docs = [torch.randint(0, v, (1, n), dtype=torch.int64) for n in lengths]
    doc_labels = [torch.randint(0, v, (1, n), dtype=torch.int64) for n in lengths]
    doc_labels[0][0, -1] = -100  # the last token of a document has no next token in its row
    loss = sum(summed_ce(model, d, l) for d, l in zip(docs, doc_labels))
    for n, g in grads_of(model, loss).items():
        out[f"packed.grad.{n}"] = g
    out["packed.ids"] = torch.cat([torch.cat(docs[:2], 1), docs[2]], 0)
    out["packed.labels"] = torch.cat([torch.cat(doc_labels[:2], 1), doc_labels[2]], 0)
    out["packed.positions"] = torch.stack([torch.cat([torch.arange(10), torch.arange(14)]),
                                           torch.arange(24)])
    out["packed.cu_seqlens"] = torch.tensor([0, 10, 24, 48], dtype=torch.int32)
    return {k: t.contiguous() for k, t in out.items()}


def logits(model_dir, ids_path, out):
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = load_file(ids_path)["ids"]
    with torch.no_grad():
        save_file({"logits": model(ids).logits.contiguous()}, out)


if __name__ == "__main__":
    torch.set_num_threads(1)
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
    elif cmd == "logits":
        logits(*sys.argv[2:5])
    else:
        raise SystemExit(f"unknown command {cmd}")
