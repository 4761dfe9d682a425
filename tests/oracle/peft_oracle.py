"""PEFT-side references for ftune's fine-tuning methods (float32, CPU).

  make BASE OUT_ROOT IDS          PEFT creates a LoRA, a DoRA, an IA3, a LoRA adapter with
                                  rank and alpha patterns and a prefix on BASE with
                                  non-trivial weights, saves each to OUT_ROOT/<kind>, and writes
                                  OUT_ROOT/<kind>.safetensors with PEFT's logits of IDS
  logits BASE ADAPTER IDS OUT [BLOCK DQ]
                                  logits and greedy ids of BASE + ADAPTER as PEFT loads it; with
                                  BLOCK and DQ (0/1), every projection of BASE is first replaced
                                  by its NF4 round trip (the reference below), as bitsandbytes'
                                  Linear4bit would compute it
  nf4 IN OUT BLOCK DQ             the reference NF4 round trip of IN's "w": OUT gets "deq",
                                  "idx" (uint8 level indices) and "absmax" (float32, as decoded)
  bnb BASE OUT                    BASE with every projection in bitsandbytes' 4-bit layout (NF4,
                                  block 64, double quantisation, by the reference below): OUT/ is
                                  the checkpoint, OUT.safetensors the reference dequantised weights
IDS is a safetensors file with "ids" [B, T]; "greedy" is 16 new tokens after the first 5 ids of
row 0. bitsandbytes has no CPU path here, so NF4 is written out below from the QLoRA paper and
bitsandbytes' documented layout (not imported from either).
"""
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

transformers.logging.set_verbosity_error()

# The 16 NF4 levels (QLoRA, appendix E).
NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                    0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                    0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                    0.7229568362236023, 1.0], dtype=torch.float32)


def dynamic_map():
    """bitsandbytes' signed dynamic 8-bit map: 7 exponent bits, linspace(0.1, 1) means."""
    values = []
    for i in range(7):
        bounds = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        values += ((10 ** (i - 6)) * means).tolist() + (-(10 ** (i - 6)) * means).tolist()
    values += [0.0, 1.0]
    return torch.tensor(sorted(values), dtype=torch.float32)


def quantize_blockwise(x, code, block):
    """Nearest level of x / absmax per block (first on ties): (indices, absmax)."""
    n = x.numel()
    blocks = (n + block - 1) // block
    padded = torch.zeros(blocks * block, dtype=torch.float32)
    padded[:n] = x
    b = padded.view(blocks, block)
    absmax = b.abs().max(dim=1).values
    scaled = torch.clamp(b / absmax[:, None], -1, 1).reshape(-1)[:n]
    idx = (scaled[:, None] - code[None, :]).abs().argmin(dim=1).to(torch.uint8)
    return idx, absmax


def nf4_round_trip(w, block, dq):
    flat = w.detach().reshape(-1).float()
    idx, absmax = quantize_blockwise(flat, NF4, block)
    if dq:
        code = dynamic_map()
        offset = absmax.mean()
        q, nested = quantize_blockwise(absmax - offset, code, 256)
        decoded = torch.zeros(nested.numel() * 256)
        decoded[:absmax.numel()] = code[q.long()]
        absmax = (decoded.view(-1, 256) * nested[:, None]).reshape(-1)[:absmax.numel()] + offset
    deq = (NF4[idx.long()].view(-1, block) * absmax[:, None]).view(w.shape)
    return deq, idx, absmax


def write_bnb_4bit(base, out):
    """A bnb-4bit directory: packed uint8 [n/2, 1] weights beside their quant_state tensors."""
    import json
    import shutil
    os.makedirs(out, exist_ok=True)
    config = json.load(open(os.path.join(base, "config.json")))
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                     "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                     "bnb_4bit_compute_dtype": "float32"}
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
    if os.path.exists(os.path.join(base, "generation_config.json")):
        shutil.copy(os.path.join(base, "generation_config.json"), out)
    tensors, reference = {}, {}
    code = dynamic_map()
    for name, w in load_file(os.path.join(base, "model.safetensors")).items():
        if not name.endswith("_proj.weight"):
            tensors[name] = w
            continue
        flat = w.reshape(-1).float()
        idx, absmax = quantize_blockwise(flat, NF4, 64)
        offset = absmax.mean()
        qabsmax, nested = quantize_blockwise(absmax - offset, code, 256)
        tensors[name] = ((idx[0::2] << 4) | idx[1::2]).view(-1, 1).contiguous()
        tensors[name + ".absmax"] = qabsmax
        tensors[name + ".quant_map"] = NF4.clone()
        tensors[name + ".nested_absmax"] = nested
        tensors[name + ".nested_quant_map"] = code.clone()
        state = {"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": list(w.shape),
                 "nested_blocksize": 256, "nested_offset": offset.item(), "nested_dtype": "float32"}
        tensors[name + ".quant_state.bitsandbytes__nf4"] = torch.tensor(list(json.dumps(state).encode()),
                                                                         dtype=torch.uint8)
        reference[name] = nf4_round_trip(w, 64, True)[0].contiguous()
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    save_file(reference, out + ".safetensors")


def quantize_base(model, block, dq):
    projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in projections:
                module.weight.copy_(nf4_round_trip(module.weight, block, dq)[0])


def greedy_by_forward(model, prompt, new_tokens):
    """Greedy ids from PEFT's forward over the growing sequence (no cache)."""
    seq = prompt
    for _ in range(new_tokens):
        seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return seq


def peft_outputs(model, ids):
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.contiguous()
        if model.peft_config["default"].peft_type == "PREFIX_TUNING":
            # PEFT 0.21.2's generate() with transformers 5.24 scores a prefix adapter's first new
            # token unlike its own forward (0.836 vs 0.524 for the top logit, measured); the
            # forward is what the logits are compared with, so the greedy ids come from it too.
            seq = greedy_by_forward(model, ids[:1, :5], 16)
        else:
            seq = model.generate(input_ids=ids[:1, :5], do_sample=False, max_new_tokens=16, pad_token_id=0)
    return {"logits": logits, "greedy": seq[0, 5:].contiguous()}


def load_base(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def make(base, root, ids_path):
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, get_peft_model
    ids = load_file(ids_path)["ids"]
    configs = {
        "lora": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                           task_type="CAUSAL_LM"),
        "dora": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj", "up_proj"],
                           use_dora=True, task_type="CAUSAL_LM"),
        "ia3": IA3Config(task_type="CAUSAL_LM"),
        # Per-module ranks and alphas; layer 0's q_proj matches both of its rank keys and PEFT
        # takes the first.
        "patterns": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                               rank_pattern={"layers.0.self_attn.q_proj": 3, "q_proj": 2, "down_proj": 6},
                               alpha_pattern={"v_proj": 20}, task_type="CAUSAL_LM"),
        "prefix": PrefixTuningConfig(num_virtual_tokens=5, task_type="CAUSAL_LM"),
    }
    for kind, config in configs.items():
        torch.manual_seed(7)
        model = get_peft_model(load_base(base), config)
        # Move every adapter away from its identity start, so that a wrong formula shows.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
                elif "lora_magnitude_vector" in name or "ia3_l" in name:
                    p.mul_(1 + 0.2 * torch.randn_like(p))
        model.save_pretrained(os.path.join(root, kind))
        save_file(peft_outputs(model, ids), os.path.join(root, kind + ".safetensors"))


def main():
    torch.set_num_threads(1)
    cmd = sys.argv[1]
    if cmd == "make":
        return make(*sys.argv[2:5])
    if cmd == "nf4":
        src, out, block, dq = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
        deq, idx, absmax = nf4_round_trip(load_file(src)["w"], block, dq)
        return save_file({"deq": deq.contiguous(), "idx": idx, "absmax": absmax}, out)
    if cmd == "bnb":
        return write_bnb_4bit(sys.argv[2], sys.argv[3])
    if cmd == "logits":
        from peft import PeftModel
        base, adapter, ids_path, out = sys.argv[2:6]
        model = load_base(base)
        if len(sys.argv) > 6:
            quantize_base(model, int(sys.argv[6]), sys.argv[7] == "1")
        model = PeftModel.from_pretrained(model, adapter)
        return save_file(peft_outputs(model, load_file(ids_path)["ids"]), out)
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
