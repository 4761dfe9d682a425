// `ftune train`: one config struct per component, composed into TrainConfig. Torch-free, so the
// launcher registers flags and TOML keys without LibTorch; the loop lives in trainer.cpp,
// behind the dlopen boundary (runtime/torch_api.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/reader/reader_config.h"
#include "runtime/comm/comm_config.h"

namespace ftune::train {

struct ModelSection {
  std::string path;  // HF model directory
  std::string device = "cpu";

  template <class F>
  void fields(F&& f) {
    f("path", path, "Hugging Face model directory to fine-tune (config.json + safetensors)");
    f("device", device, "cpu or cuda (one GPU per rank, by local rank)");
  }
};

struct PrecisionSection {
  std::string compute = "float32";  // float32 | bfloat16
  std::string reduce = "float32";   // float32 | bfloat16
  template <class F>
  void fields(F&& f) {
    f("compute", compute, "dtype of gathered weights and activations: float32 or bfloat16 "
                          "(master weights and optimizer state stay float32)");
    f("reduce", reduce, "dtype gradients are reduced in: float32, or bfloat16 (half the bytes)");
  }
};

struct MethodSection {
  std::string name = "full";   // full | lora | dora | qlora | ia3 | prefix
  std::string shard = "auto";  // auto | sharded | replicated (the frozen base, LoRA)
  std::string adapter;         // a PEFT adapter directory to continue training
  template <class F>
  void fields(F&& f) {
    f("adapter", adapter, "start from this PEFT adapter directory (continue training): its rank, "
                          "alpha, patterns and target modules replace the [lora] / [ia3] ones");
    f("name", name, "full (all weights, sharded FSDP-style), lora, dora (LoRA with a learned "
                    "magnitude), qlora (LoRA on a 4-bit NF4 base), ia3 (learned rescaling vectors) or "
                    "prefix (trained virtual keys and values in every layer)");
    f("shard", shard, "lora's frozen base: replicated on every rank, sharded, or auto (replicated)");
  }
};

struct LoraSection {
  int64_t r = 16;
  double alpha = 32;
  double dropout = 0.0;
  bool use_rslora = false;
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  std::string bias = "none";  // none | all | lora_only
  std::vector<std::string> rank_pattern;   // "down_proj=4", "layers.0.self_attn.q_proj=8"
  std::vector<std::string> alpha_pattern;  // "q_proj=16"
  template <class F>
  void fields(F&& f) {
    f("r", r, "LoRA rank");
    f("alpha", alpha, "LoRA alpha; the update is scaled by alpha / r (rsLoRA: alpha / sqrt(r))");
    f("dropout", dropout, "dropout on the adapter's input during training");
    f("use_rslora", use_rslora, "scale by alpha / sqrt(r) (rank-stabilised LoRA)");
    f("target_modules", target_modules, "projections that get adapters (q_proj ... down_proj, or all-linear)");
    f("bias", bias, "biases that train beside the adapters: none, all, or lora_only (those of "
                    "the adapted projections); as PEFT's bias option");
    f("rank_pattern", rank_pattern, "per-module ranks, NAME=R: NAME is a module name or its end "
                                    "(down_proj, layers.0.self_attn.q_proj); the first match wins");
    f("alpha_pattern", alpha_pattern, "per-module alphas, NAME=ALPHA, matched as lora.rank_pattern");
  }
};

struct Ia3Section {
  std::vector<std::string> target_modules = {"k_proj", "v_proj", "down_proj"};
  std::vector<std::string> feedforward_modules = {"down_proj"};
  template <class F>
  void fields(F&& f) {
    f("target_modules", target_modules, "projections that get IA3 vectors (PEFT's Llama default: "
                                        "k_proj v_proj down_proj)");
    f("feedforward_modules", feedforward_modules, "targets whose input (not output) is rescaled");
  }
};

struct PrefixSection {
  int64_t num_virtual_tokens = 20;
  template <class F>
  void fields(F&& f) {
    f("num_virtual_tokens", num_virtual_tokens, "virtual tokens whose keys and values every layer "
                                                "attends to before the sequence");
  }
};

struct QloraSection {
  int64_t block = 64;         // [weights] per absmax
  bool double_quant = true;   // absmax values quantised to 8 bits in blocks of 256
  template <class F>
  void fields(F&& f) {
    f("block", block, "NF4 block size: weights per absmax (bitsandbytes: 64)");
    f("double_quant", double_quant, "quantise the absmax values to 8 bits (blocks of 256), as "
                                    "bitsandbytes' bnb_4bit_use_double_quant");
  }
};

struct LoopSection {
  std::string out = "runs/train";
  int64_t steps = 100;
  int64_t epochs = 0;       // > 0: the step count is epochs x steps per epoch
  int64_t micro_batch = 0;  // [sequences per rank per forward]; 0 = the rank's whole share
  int64_t seed = 0;
  std::string activation_checkpointing = "on";  // on | off | every_k
  int64_t activation_checkpointing_k = 2;
  double grad_clip = 1.0;
  int64_t max_skipped_steps = 10;
  int64_t loss_chunk = 1024;  // [tokens] per logits chunk: 1024 x 128k vocab = 512 MB fp32
  int64_t stop_after = 0;     // [steps] in this job (then checkpoint and exit); 0 = no limit
  bool force = false;         // start even when the memory plan says the run cannot fit
  template <class F>
  void fields(F&& f) {
    f("out", out, "run directory: config.toml, metrics.jsonl, tb/, checkpoints/, final/ (the export)");
    f("steps", steps, "optimizer steps (ignored when train.epochs > 0)");
    f("epochs", epochs, "passes over the training split; > 0 sets the step count from the data");
    f("micro_batch", micro_batch, "sequences per rank per forward pass (gradient accumulation "
                                  "over the rank's share of the global batch); 0 = all at once");
    f("seed", seed, "seed of adapter initialisation and dropout");
    f("activation_checkpointing", activation_checkpointing,
      "on: recompute every layer in backward; every_k: every k-th layer "
      "(train.activation_checkpointing_k); off: keep all activations");
    f("activation_checkpointing_k", activation_checkpointing_k,
      "with activation_checkpointing = every_k: recompute layers 0, k, 2k, ...");
    f("grad_clip", grad_clip, "clip the global gradient norm to this (0 = off)");
    f("max_skipped_steps", max_skipped_steps, "stop after this many steps with a non-finite loss or gradient");
    f("loss_chunk", loss_chunk, "tokens per chunk of logits in the loss");
    f("stop_after", stop_after, "stop after this many steps in this job, with a checkpoint "
                                "(for time-limited allocations); 0: run to the end");
    f("force", force, "on CUDA: start even when the memory plan (ftune plan) says the run does not "
                      "fit the GPU");
  }
};

struct OptimSection {
  std::string name = "adamw";  // adamw | sgd
  double lr = 2e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0, momentum = 0.9;
  bool offload = false;  // full fine-tuning: AdamW's state in host memory, the update on the CPU
  template <class F>
  void fields(F&& f) {
    f("name", name, "adamw or sgd");
    f("lr", lr, "peak learning rate");
    f("beta1", beta1, "AdamW beta1");
    f("beta2", beta2, "AdamW beta2");
    f("eps", eps, "AdamW epsilon");
    f("weight_decay", weight_decay, "decoupled weight decay (not on norms, biases, embeddings)");
    f("momentum", momentum, "SGD momentum");
    f("offload", offload, "full fine-tuning with adamw: the moments and a master copy in (pinned) host "
                          "memory, the update on the CPU; the GPU keeps its fp32 slice and gradient slice");
  }
};

struct ScheduleSection {
  std::string decay = "cosine";  // cosine | linear | constant
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  double min_lr_ratio = 0.0;
  template <class F>
  void fields(F&& f) {
    f("decay", decay, "after warm-up: cosine, linear or constant");
    f("warmup_steps", warmup_steps, "linear warm-up from 0 over this many steps");
    f("warmup_ratio", warmup_ratio, "warm-up over this fraction of all steps (instead of warmup_steps)");
    f("min_lr_ratio", min_lr_ratio, "the decay ends at lr * min_lr_ratio");
  }
};

struct EvalSection {
  int64_t every = 0;  // [steps]; 0 = only at the start and the end
  bool at_start = true;
  std::string metric = "val_loss";  // val_loss | val_ppl | val_acc
  int64_t patience = 0;             // [evaluations]; 0 = no early stopping
  double min_delta = 0.0;
  std::string export_ = "last";  // last | best
  template <class F>
  void fields(F&& f) {
    f("every", every, "validation (loss, perplexity, accuracy over the whole held-out split) "
                      "every N steps; 0: only at the start and the end");
    f("at_start", at_start, "also evaluate before the first step (the baseline)");
    f("metric", metric, "what early stopping and the best checkpoint follow: val_loss, val_ppl "
                        "(lower is better) or val_acc (higher is better)");
    f("patience", patience, "stop after this many evaluations without improvement (0: never)");
    f("min_delta", min_delta, "an improvement smaller than this does not count");
    f("export", export_, "what final/ holds: the last step, or the best evaluation's checkpoint");
  }
};

struct CheckpointSection {
  int64_t every = 0;  // [steps]; 0 = only at the end
  int64_t keep = 2;
  std::string resume = "auto";  // auto | none | a checkpoint directory
  template <class F>
  void fields(F&& f) {
    f("every", every, "write a checkpoint every N steps (0: only at the end)");
    f("keep", keep, "complete checkpoints kept; older ones are removed (the best one is kept too)");
    f("resume", resume, "auto (the latest complete checkpoint in train.out, if any), none, or a "
                        "checkpoint directory; any number of ranks can resume any checkpoint");
  }
};

struct LogSection {
  int64_t every = 1;        // [steps]
  int64_t time_every = 10;  // [steps]
  bool tensorboard = true;
  double peak_tflops = 0;
  template <class F>
  void fields(F&& f) {
    f("every", every, "progress line and metrics every N steps");
    f("time_every", time_every, "the per-rank split of step time (compute, communication, data "
                                "wait) every N steps (0: never)");
    f("tensorboard", tensorboard, "also write TensorBoard event files to OUT/tb/");
    f("peak_tflops", peak_tflops, "one device's peak FLOP/s in TFLOP/s, for MFU; 0: known GPUs' "
                                  "bf16 peak by name (H100, H200, A100, ...), none on the CPU");
  }
};

struct TrainConfig {
  ModelSection model;
  PrecisionSection precision;
  MethodSection method;
  LoraSection lora;
  Ia3Section ia3;
  QloraSection qlora;
  PrefixSection prefix;
  data::ReaderConfig data;
  LoopSection train;
  OptimSection optim;
  ScheduleSection schedule;
  EvalSection eval;
  CheckpointSection checkpoint;
  LogSection log;
  comm::CommConfig comm;  // backend and the timeouts after which a hung rank ends the job
  std::string resolved_toml;  // the whole config as run (written to OUT/config.toml); not a key
};

// "NAME=VALUE" items of lora.rank_pattern / lora.alpha_pattern, in order; throws ftune::Error
// naming `key` when an item has no '=' or a value that is not a positive number.
std::vector<std::pair<std::string, double>> parse_pattern(const std::vector<std::string>& items,
                                                          const std::string& key);

// Whether the method trains LoRA adapters (lora, dora, qlora): the [lora] section applies.
bool uses_lora(const std::string& method);

// The learning rate of step `step` (0-based) out of `steps`.
double learning_rate(const OptimSection& optim, const ScheduleSection& schedule, int64_t step,
                     int64_t steps);
// Warm-up steps: schedule.warmup_steps, or warmup_ratio of `steps`.
int64_t warmup_steps(const ScheduleSection& schedule, int64_t steps);

// Whether evaluation metric `value` improves on `best` by more than min_delta (any value
// improves on none).
bool improves(const EvalSection& eval, double value, std::optional<double> best);

// Rules within and across sections that need no files (choices, positive sizes, batch
// divisibility by world_size); throws ftune::Error naming the key and what to change.
void validate(const TrainConfig& cfg, int world_size);

}  // namespace ftune::train
