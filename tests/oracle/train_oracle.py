"""Reference logits for ftune train's exports, from transformers and PEFT (float32, CPU).

  full MODEL_DIR IDS OUT        logits of the exported Hugging Face model
  lora BASE_DIR ADAPTER IDS OUT logits of the base with the PEFT adapter loaded by PEFT
  tb DIR                        the scalars TensorBoard reads from the event files in DIR,
                                as JSON {tag: [[step, value], ...]}
IDS is a safetensors file with "ids" [B, T]; OUT gets "logits" and "greedy": 16 new tokens
greedily generated after the first 5 ids of row 0 (fewer when EOS comes first).
"""
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

transformers.logging.set_verbosity_error()


def tensorboard_scalars(path):
    import json
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(path, size_guidance={"scalars": 0})
    acc.Reload()
    print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)]
                      for tag in acc.Tags()["scalars"]}))


def main():
    torch.set_num_threads(1)
    cmd = sys.argv[1]
    if cmd == "tb":
        return tensorboard_scalars(sys.argv[2])
    if cmd == "full":
        model_dir, ids_path, out = sys.argv[2:5]
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    elif cmd == "lora":
        from peft import PeftModel
        base, adapter, ids_path, out = sys.argv[2:6]
        model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, adapter)
    else:
        raise SystemExit(f"unknown command {cmd}")
    model.eval()
    ids = load_file(ids_path)["ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits.contiguous()
        prompt = ids[:1, :5]
        seq = model.generate(input_ids=prompt, do_sample=False, max_new_tokens=16,
                             pad_token_id=0)
    save_file({"logits": logits, "greedy": seq[0, 5:].contiguous()}, out)


if __name__ == "__main__":
    main()
