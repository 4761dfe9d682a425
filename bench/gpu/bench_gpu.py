"""ftune vs the PyTorch anchors on one GPU, the same shapes, one table (run by bench/gpu/run.sh).

For each of full fine-tuning and LoRA (r 16, all linear layers) at the Llama-3.2-1B and 3B
shapes, sequence 2048, bf16: the anchor run (pytorch_anchors.py: FSDP2 at world size 1, PEFT)
and `ftune train` on synthetic token shards, with the anchors' micro-batches and no activation
checkpointing. ftune's figures come from its metrics.jsonl (tokens_per_s, mfu, peak_memory_gb,
the mean over the steps after warm-up); its peak is also compared with `ftune plan`'s
prediction (allocated bytes) for the same run. Everything goes to LOGDIR.

  python3 bench/gpu/bench_gpu.py --ftune BUILD/launcher/ftune --logs LOGDIR [--only 1b] [--steps 8]
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# (name, preset, method, micro batch, anchor tag): the anchors' own shapes and batches.
RUNS = [
    ("full-1b", "llama-3.2-1b", "full", 8, "fsdp2-bf16-1b"),
    ("lora-1b", "llama-3.2-1b", "lora", 8, "peft-lora-1b"),
    ("full-3b", "llama-3.2-3b", "full", 4, "fsdp2-bf16-3b"),
    ("lora-3b", "llama-3.2-3b", "lora", 4, "peft-lora-3b"),
]
SEQ = 2048
WARM = 3  # steps not measured (allocator warm-up, cuDNN/cuBLAS heuristics)


def log(msg):
    print(f"[bench] {msg}", flush=True)


def sh(cmd, logfile, env=None, timeout=None):
    with open(logfile, "w") as out:
        p = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}); see {logfile}:\n" + open(logfile).read()[-3000:])


def run_anchors(args, tags):
    env = dict(os.environ, OUT_DIR=args.logs, BASELINE_BUDGET_S=str(args.anchor_budget))
    log(f"PyTorch anchors: {' '.join(tags)}")
    sh([sys.executable, os.path.join(HERE, "pytorch_anchors.py")] + tags, os.path.join(args.logs, "anchors.log"), env)
    with open(os.path.join(args.logs, "pytorch_anchors.json")) as f:
        return {r["tag"]: r for r in json.load(f)}


def make_data(args, work, presets):
    """Model directories (random weights, the byte tokenizer) and token shards for them."""
    models = {}
    for preset in presets:
        d = os.path.join(work, preset)
        if not os.path.exists(os.path.join(d, "config.json")):
            log(f"model init {preset}")
            sh([args.ftune, "model", "init", "--model.preset", preset, "--model.tokenizer", "byte", "--out", d],
               os.path.join(args.logs, f"init-{preset}.log"))
        models[preset] = d
    shards = os.path.join(work, "shards")
    if not os.path.exists(os.path.join(shards, "index.json")):
        corpus = os.path.join(work, "corpus.jsonl")
        rng = random.Random(0)
        words = [''.join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                 for _ in range(5000)]
        with open(corpus, "w") as f:  # ~2.7 MB of text, as many byte tokens: 18 steps of 8 x 2048
            for _ in range(600):
                f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(700))}) + "\n")
        log("data tokenize")
        sh([args.ftune, "data", "tokenize", "--inputs", corpus, "--output", shards, "--tokenizer", models[presets[0]]],
           os.path.join(args.logs, "tokenize.log"))
    return models, shards


def train_args(args, model, shards, method, mb, out, steps):
    a = [args.ftune, "train", "--model", model, "--data", shards, "--method", method, "--out", out,
         "--steps", str(steps + 100), "--seq-len", str(args.seq), "--global-batch", str(mb), "--micro-batch", str(mb),
         "--model.device", args.device, "--precision.compute", "bfloat16", "--precision.reduce", "float32",
         "--train.activation_checkpointing", "off", "--data.packing", "concat", "--data.val_fraction", "0",
         "--eval.at_start=false", "--log.every", "1", "--train.force=true",  # measure even what the plan refuses
         "--log.tensorboard=false", "--resume", "none",
         "--lr", "1e-5" if method == "full" else "1e-4"]
    if method == "lora":
        a += ["--lora.r", "16", "--lora.alpha", "32", "--lora.target_modules", "all-linear"]
    return a


def run_ftune(args, name, model, shards, method, mb):
    """Runs ftune until WARM + steps steps are logged, then kills it: the final checkpoint and
    export (minutes of disk writes for a full fine-tune) are not what this measures."""
    out = os.path.join(args.work, f"run-{name}")
    subprocess.run(["rm", "-rf", out], check=True)
    logfile = os.path.join(args.logs, f"ftune-{name}.log")
    cmd = train_args(args, model, shards, method, mb, out, WARM + args.steps)
    metrics = os.path.join(out, "metrics.jsonl")
    with open(logfile, "w") as lf:
        lf.write(" ".join(cmd) + "\n")
        lf.flush()
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.time()
        steps = []
        while p.poll() is None and time.time() - t0 < args.run_timeout:
            time.sleep(1)
            if os.path.exists(metrics):
                steps = [json.loads(l) for l in open(metrics) if '"tokens_per_s"' in l]
                if len(steps) >= WARM + args.steps:
                    break
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)  # SIGTERM would make it checkpoint
            p.wait()
        elif p.returncode != 0:
            return {"error": f"exit {p.returncode}, see {logfile}: " + open(logfile).read()[-600:]}
    if os.path.exists(metrics):
        steps = [json.loads(l) for l in open(metrics) if '"tokens_per_s"' in l]
    measured = steps[WARM:WARM + args.steps]
    if not measured:
        return {"error": f"no measured steps after {args.run_timeout} s, see {logfile}"}
    mean = lambda k: sum(s.get(k, 0.0) for s in measured) / len(measured)
    r = {"tokens_per_s": mean("tokens_per_s"), "mfu": mean("mfu") if "mfu" in measured[0] else None,
         "peak_gib": max(s["peak_memory_gb"] for s in measured) * 1e9 / 2**30, "steps": len(measured),
         "loss": measured[-1]["loss"]}
    plan = subprocess.run([args.ftune, "plan", "--model", model, "--method", method, "--gpus", "1",
                           "--micro-batch", str(mb), "--seq-len", str(args.seq), "--activation-checkpointing", "off",
                           "--lora-targets", "all-linear", "--json"], capture_output=True, text=True)
    try:
        r["plan_gib"] = json.loads(plan.stdout)["allocated_bytes"] / 2**30
    except (ValueError, KeyError):
        r["plan_gib"] = None
    return r


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(rows):
    head = ("| run | impl | micro batch | tokens/s | MFU | peak GiB | ftune/anchor | plan GiB (err) |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for name, mb, anchor, ours in rows:
        a_tps = anchor.get("tokens_per_s") if anchor else None
        lines.append(f"| {name} | PyTorch ({anchor.get('tag', '?') if anchor else 'missing'}) | {mb} | "
                     f"{fmt(a_tps, ',.0f')} | {fmt(anchor.get('mfu_vs_989') if anchor else None, '.1%')} | "
                     f"{fmt(anchor.get('peak_mem_gib') if anchor else None, '.1f')} | | |")
        if "error" in ours:
            lines.append(f"| {name} | ftune | {mb} | error: {ours['error'][:120]} | | | | |")
            continue
        ratio = ours["tokens_per_s"] / a_tps if a_tps else None
        err = (ours["plan_gib"] - ours["peak_gib"]) / ours["peak_gib"] if ours.get("plan_gib") else None
        lines.append(f"| {name} | ftune | {mb} | {ours['tokens_per_s']:,.0f} | {fmt(ours['mfu'], '.1%')} | "
                     f"{ours['peak_gib']:.1f} | {fmt(ratio, '.2f') + ('x' if ratio else '')} | {fmt(ours.get('plan_gib'), '.1f')} "
                     f"({fmt(err, '+.0%')}) |")
    return head + "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ftune", required=True)
    p.add_argument("--logs", required=True)
    p.add_argument("--work", default="/tmp/ftune-gpu-bench", help="model directories, shards, run directories")
    p.add_argument("--only", choices=["1b", "3b"], help="one shape only")
    p.add_argument("--steps", type=int, default=6, help="measured steps per run (after 3 warm-up steps)")
    p.add_argument("--anchor-budget", type=int, default=150, help="[s] for all anchor runs")
    p.add_argument("--budget", type=int, default=460, help="[s] since --started after which no run starts")
    p.add_argument("--run-timeout", type=int, default=75, help="[s] per ftune run")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="check the script on a CPU machine: tiny shapes, no anchors, device cpu")
    p.add_argument("--started", type=float, default=time.time(), help="[s since epoch] the script's start")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.logs, exist_ok=True)
    runs = [r for r in RUNS if not args.only or r[1].endswith(args.only)]
    args.device, args.seq = "cuda", SEQ
    if args.cpu_dry_run:
        runs = [(n, "tiny-llama3", m, 2, t) for n, _, m, _, t in runs]
        args.device, args.seq = "cpu", 64
        anchors = {}
    else:
        anchors = run_anchors(args, [r[4] for r in runs])
    models, shards = make_data(args, args.work, sorted({r[1] for r in runs}))
    rows, results = [], {}
    for name, preset, method, mb, tag in runs:
        if time.time() - args.started > args.budget:
            log(f"budget of {args.budget} s spent: {name} not run")
            results[name] = {"ftune": {"error": "not run (budget)"}, "anchor": anchors.get(tag)}
            rows.append((name, mb, anchors.get(tag), results[name]["ftune"]))
            continue
        log(f"ftune {name}")
        ours = run_ftune(args, name, models[preset], shards, method, mb)
        results[name] = {"ftune": ours, "anchor": anchors.get(tag)}
        rows.append((name, mb, anchors.get(tag), ours))
    text = table(rows)
    with open(os.path.join(args.logs, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.logs, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text)
    log(f"all done in {time.time() - args.started:.0f} s; logs in {args.logs}")


if __name__ == "__main__":
    main()
