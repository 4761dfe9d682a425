// Torch-free entry points for the `ftune model ...` and `ftune generate` commands, so launcher
// code parses flags without compiling LibTorch headers. Each command's options are one config
// struct listing its fields once (see launcher/cli/config.h).
// describe_model_dir and parse_token_ids are torch-free (model_info.cpp, linked by the launcher);
// init_model_dir and run_generate need LibTorch (tasks.cpp), and the launcher reaches them only
// through libftune_torch.so (runtime/torch_api.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ftune::model {

// `ftune model init`: a randomly initialised HF model directory.
struct ModelInitConfig {
  std::string preset = "tiny-llama";
  std::string config;  // a config.json to use instead of the preset
  int64_t seed = 0;
  std::string dtype;   // float32 | bfloat16 | float16; "" = the preset's / config's
  bool config_only = false;
  int64_t max_shard_mb = 5000;  // [MB] per safetensors shard
  std::string tokenizer;        // "" = none copied

  template <class F>
  void fields(F&& f) {
    f("preset", preset, "named shape: tiny-llama, tiny-llama3, tiny-qwen2, tiny-mistral, "
                        "llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, llama-3.1-70b");
    f("config", config, "HF config.json to initialise instead of a preset");
    f("seed", seed, "random seed for the weights");
    f("dtype", dtype, "stored dtype: float32, bfloat16 or float16 (default: the preset's)");
    f("config_only", config_only, "write config.json only, no weights (for `model info`)");
    f("max_shard_mb", max_shard_mb, "largest safetensors shard [MB]");
    f("tokenizer", tokenizer, "tokenizer.json, or a directory holding it (and tokenizer_config.json, "
                              "special_tokens_map.json), to copy into the model directory; "
                              "`byte`: the built-in byte-level tokenizer (258 tokens)");
  }
};

// Writes the model into out_dir; returns a one-line summary.
std::string init_model_dir(const ModelInitConfig& cfg, const std::string& out_dir);

// `ftune model info`: architecture, shapes, parameter count and bytes by dtype, from
// config.json alone when the directory has no weights.
std::string describe_model_dir(const std::string& dir);
// The architecture lines of `model info` (shapes, heads, rope, parameter count) for any config.
struct ModelConfig;
std::string describe_config(const ModelConfig& cfg);
// `model info --quant nf4`: the base in NF4 as QLoRA holds it (every projection in 4 bits, block
// 64, double quantisation; embeddings, norms and head in the config's dtype).
std::string describe_nf4(const ModelConfig& cfg);

// `ftune generate`.
struct GenerateConfig {
  std::string model;       // HF model directory
  std::string prompt;      // text (needs a tokenizer)
  std::string prompt_ids;  // "1,5,9"
  std::string chat;        // a user message, sent through the model's chat template
  std::string system;      // with --chat: a system message before it
  std::string tokenizer;   // "" = the model directory's tokenizer.json, if it has one
  std::string adapter;     // a PEFT adapter directory (LoRA, DoRA, IA3) applied on top of the model
  int64_t max_new_tokens = 32;
  bool greedy = false;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  int64_t seed = 0;
  bool json = false;
  std::string device = "cpu";
  std::string dtype = "float32";

  template <class F>
  void fields(F&& f) {
    f("model", model, "HF model directory (config.json + safetensors)");
    f("prompt", prompt, "prompt text, encoded with the tokenizer (BOS added as it adds it)");
    f("prompt_ids", prompt_ids, "prompt as comma-separated token ids, e.g. 1,5,9");
    f("chat", chat, "a user message: rendered with the model's chat template (generation prompt "
                    "added); prints the reply, stopping at the end-of-turn token");
    f("system", system, "with --chat: a system message (default: the template's own, if any)");
    f("tokenizer", tokenizer, "tokenizer.json or a directory holding one "
                              "(default: the model directory's, when it has one)");
    f("adapter", adapter, "a PEFT adapter directory (LoRA, DoRA or IA3: adapter_config.json + "
                          "adapter_model.safetensors) to run on top of --model, unmerged");
    f("max_new_tokens", max_new_tokens, "most tokens to generate");
    f("greedy", greedy, "always take the most likely token (else sample)");
    f("temperature", temperature, "sampling temperature (> 0)");
    f("top_p", top_p, "nucleus sampling: smallest set with this probability mass (1 = off)");
    f("top_k", top_k, "sample among the k most likely tokens (0 = off)");
    f("seed", seed, "sampling seed");
    f("json", json, "print {\"ids\": [...], \"text\": ...} (text null without a tokenizer)");
    f("device", device, "cpu or cuda[:N]");
    f("dtype", dtype, "compute dtype: float32, bfloat16 or float16");
  }
};

// `ftune merge`: a PEFT adapter (LoRA, DoRA, IA3) folded into its base model, saved as a HF
// directory; methods that cannot merge are refused with the reason.
struct MergeConfig {
  std::string model;    // base HF model directory
  std::string adapter;  // PEFT adapter directory
  std::string out;
  std::string dtype;    // stored dtype; "" = the base's

  template <class F>
  void fields(F&& f) {
    f("model", model, "base HF model directory the adapter was trained on");
    f("adapter", adapter, "PEFT adapter directory: LoRA, DoRA or IA3 (adapter_config.json + "
                          "adapter_model.safetensors)");
    f("out", out, "directory for the merged model (safetensors, config.json, tokenizer files)");
    f("dtype", dtype, "stored dtype: float32, bfloat16 or float16 (default: the base's)");
  }
};

// Returns a one-line summary.
std::string merge_adapter(const MergeConfig& cfg);

// Parses "1,5,9"; throws ftune::Error naming the bad item.
std::vector<int64_t> parse_token_ids(const std::string& text);

struct GenerateResult {
  std::vector<int64_t> ids;         // the new tokens only (no prompt)
  std::optional<std::string> text;  // their decoding, special tokens skipped; none without a tokenizer
};

// Runs generation: encodes --prompt (or parses --prompt-ids), generates, and decodes the new
// tokens when a tokenizer is found.
GenerateResult run_generate(const GenerateConfig& cfg);

}  // namespace ftune::model
