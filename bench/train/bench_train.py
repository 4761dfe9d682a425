"""ftune train vs PyTorch eager on the CPU, one process, the same batches, side by side.

For SmolLM2-135M (imported by scripts/demo.sh into runs/smollm2) and the demo's token shards:
full fine-tuning and LoRA (r 16, all linear layers), float32, no activation checkpointing.
PyTorch side: transformers' LlamaForCausalLM (sdpa), torch.optim.AdamW(fused=True), PEFT for
LoRA, with the windows ftune's concat reader forms without shuffling. Prints step time, tokens/s
and peak RSS of each, and the ratios.

  python bench/train/bench_train.py [--build build] [--steps 6] [--batch 4] [--seq 256]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import h5py
import numpy as np


def windows(shards, batch, seq, steps):
    """The concat reader's windows without shuffling: documents end to end, seq + 1 tokens each."""
    index = json.load(open(os.path.join(shards, "index.json")))
    tokens = []
    for shard in index["shards"]:
        with h5py.File(os.path.join(shards, shard["file"]), "r") as f:
            tokens.append(np.asarray(f["tokens"][:], dtype=np.int64))
    flat = np.concatenate(tokens)
    need = steps * batch * (seq + 1)
    if flat.size < need:
        raise SystemExit(f"{shards}: {flat.size} tokens, need {need}")
    return flat[:need].reshape(steps, batch, seq + 1)


def run_ftune(args, method):
    out = f"/tmp/ftune-bench-train-{method}"
    subprocess.run(["rm", "-rf", out], check=True)
    cmd = ["/usr/bin/time", "-f", "%M", os.path.join(args.build, "launcher/ftune"), "train",
           "--model", args.model, "--data", args.shards, "--method", method, "--out", out,
           "--steps", str(args.steps), "--seq-len", str(args.seq), "--global-batch", str(args.batch),
           "--data.packing", "concat", "--data.shuffle=false", "--data.val_fraction", "0",
           "--train.activation_checkpointing", "off", "--log.every", "1", "--resume", "none",
           "--lr", "1e-5" if method == "full" else "1e-4", "--lora.target_modules", "all-linear"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(p.stdout + p.stderr)
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    steps = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if '"step_s"' in l]
    times = [s["step_s"] for s in steps[1:]]  # the first step warms caches up
    return statistics.median(times), peak_kb * 1024


def run_torch(args, method, batches):
    code = f"""
import resource, statistics, sys, time, torch, numpy as np, transformers
torch.set_num_threads({args.threads})
transformers.logging.set_verbosity_error()
m = transformers.AutoModelForCausalLM.from_pretrained({args.model!r}, dtype=torch.float32,
                                                      attn_implementation="sdpa")
if {method!r} == "lora":
    from peft import LoraConfig, get_peft_model
    m = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
m.train()
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5, fused=True)
b = torch.from_numpy(np.load({args.npy!r}))
times = []
for s in range(b.shape[0]):
    t0 = time.perf_counter()
    ids, labels = b[s, :, :-1].contiguous(), b[s, :, 1:].contiguous()
    out = m(input_ids=ids)
    logits = out.logits.float()
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
    opt.step(); opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
print(statistics.median(times[1:]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    if p.returncode != 0:
        raise SystemExit(p.stdout + p.stderr)
    step, peak = p.stdout.split()
    return float(step), int(peak)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", default="runs/smollm2")
    ap.add_argument("--shards", default="runs/demo/shards")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--methods", default="full,lora")
    args = ap.parse_args()
    args.npy = "/tmp/ftune-bench-train-batches.npy"
    np.save(args.npy, windows(args.shards, args.batch, args.seq, args.steps))
    tokens = args.batch * args.seq
    print(f"[bench] {args.model}, {args.steps} steps of {args.batch} x {args.seq} tokens, "
          f"{args.threads} threads, float32, CPU")
    for method in args.methods.split(","):
        f_step, f_peak = run_ftune(args, method)
        t_step, t_peak = run_torch(args, method, None)
        print(f"[bench] {method:4s}  ftune {tokens / f_step:8.1f} tok/s  peak {f_peak / 2**20:7.0f} MiB | "
              f"PyTorch eager {tokens / t_step:8.1f} tok/s  peak {t_peak / 2**20:7.0f} MiB | "
              f"speed {t_step / f_step:.2f}x  memory {f_peak / t_peak:.2f}x")


if __name__ == "__main__":
    main()
