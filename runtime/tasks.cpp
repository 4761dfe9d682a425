#include "runtime/tasks.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/error.h"
#include "common/text.h"
#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/generate.h"

namespace ftune::model {
namespace fs = std::filesystem;

namespace {

ModelConfig init_config(const ModelInitConfig& c) {
  ModelConfig cfg = c.config.empty() ? preset(c.preset) : ModelConfig::from_file(c.config);
  if (!c.dtype.empty()) {
    dtype_bytes(c.dtype);  // validates the name
    cfg.dtype = c.dtype;
  }
  return cfg;
}

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(i, ",");
  return s;
}

bool has_weights(const std::string& dir) {
  return fs::exists(fs::path(dir) / "model.safetensors") ||
         fs::exists(fs::path(dir) / "model.safetensors.index.json");
}

const char* rope_name(RopeType t) {
  return t == RopeType::kLlama3 ? "llama3" : t == RopeType::kLinear ? "linear" : "default";
}

// "float32 1.2 MiB (123 tensors)" lines, from the safetensors headers (no tensor data read).
std::string checkpoint_bytes(const std::string& dir, int64_t expected_params) {
  st::Checkpoint ckpt = st::Checkpoint::open(dir);
  std::map<std::string, std::pair<uint64_t, int64_t>> by_dtype;  // bytes, tensors
  int64_t numel = 0;
  for (const auto& name : ckpt.names()) {
    const auto& info = ckpt.info(name);
    auto& row = by_dtype[st::dtype_name(info.dtype)];
    row.first += info.nbytes();
    row.second += 1;
    numel += info.numel();
  }
  std::ostringstream os;
  for (const auto& [dtype, row] : by_dtype)
    os << "  " << dtype << ": " << format_bytes(static_cast<double>(row.first)) << " in "
       << row.second << " tensors\n";
  if (numel != expected_params)
    os << "  note: the checkpoint holds " << with_commas(numel)
       << " elements, config.json implies " << with_commas(expected_params) << "\n";
  return os.str();
}

}  // namespace

std::string init_model_dir(const ModelInitConfig& c, const std::string& out_dir) {
  if (out_dir.empty()) throw Error("model init: --out DIR is required");
  ModelConfig cfg = init_config(c);
  fs::create_directories(out_dir);
  if (c.config_only) {
    std::ofstream(fs::path(out_dir) / "config.json") << cfg.to_json().dump(2) << "\n";
    return "wrote " + out_dir + "/config.json (" + cfg.architecture + ", " +
           with_commas(parameter_count(cfg)) + " parameters, no weights)";
  }
  // Allocated directly in the stored dtype: an 8B model in bf16 needs 16 GB, not 32.
  CausalLM model(cfg, torch::TensorOptions(parse_scalar_type(cfg.dtype)));
  model.init_weights(static_cast<uint64_t>(c.seed));
  SaveOptions save;
  save.max_shard_bytes = static_cast<uint64_t>(c.max_shard_mb) * 1000 * 1000;
  save_model(model, out_dir, save);
  return "wrote " + out_dir + " (" + cfg.architecture + ", " +
         with_commas(parameter_count(cfg)) + " parameters, " + cfg.dtype + ")";
}

std::string describe_model_dir(const std::string& dir) {
  ModelConfig cfg = load_model_dir_config(dir);
  const int64_t params = parameter_count(cfg);
  std::ostringstream os;
  os << "architecture:    " << cfg.architecture << " (" << cfg.model_type << ")\n"
     << "layers:          " << cfg.num_layers << "\n"
     << "hidden size:     " << cfg.hidden_size << " (MLP " << cfg.intermediate_size << ")\n"
     << "attention heads: " << cfg.num_heads << " query, " << cfg.num_kv_heads
     << " key/value, head_dim " << cfg.head_dim << "\n"
     << "vocabulary:      " << cfg.vocab_size << "\n"
     << "rope:            " << rope_name(cfg.rope.type) << ", theta " << cfg.rope.theta;
  if (cfg.rope.type != RopeType::kDefault) os << ", factor " << cfg.rope.factor;
  os << "\n"
     << "tied embeddings: " << (cfg.tie_word_embeddings ? "yes" : "no") << "\n";
  if (cfg.sliding_window) os << "sliding window:  " << *cfg.sliding_window << " tokens\n";
  os << "parameters:      " << with_commas(params) << "\n";
  if (has_weights(dir)) {
    os << "weights (from the safetensors headers):\n" << checkpoint_bytes(dir, params);
  } else {
    double bytes = static_cast<double>(params) * static_cast<double>(dtype_bytes(cfg.dtype));
    os << "weights:         none in " << dir << "; " << format_bytes(bytes) << " as " << cfg.dtype
       << " (config.json dtype)\n";
  }
  return os.str();
}

std::vector<int64_t> parse_token_ids(const std::string& text) {
  std::vector<int64_t> ids;
  for (const std::string& item : split(text, ',')) {
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || id < 0)
      throw Error("--prompt-ids: '" + item + "' is not a token id (expected e.g. 1,5,9)");
    ids.push_back(id);
  }
  return ids;
}

std::vector<int64_t> run_generate(const GenerateConfig& c) {
  if (c.model.empty()) throw Error("generate: --model DIR is required");
  if (c.prompt.empty() == c.prompt_ids.empty())
    throw Error("generate: give exactly one of --prompt TEXT or --prompt-ids 1,5,9");
  if (!c.prompt.empty())
    throw Error("generate: --prompt TEXT needs a tokenizer, and ftune has no tokenizer support "
                "yet; pass token ids with --prompt-ids");
  if (c.max_new_tokens < 0) throw Error("generate: --max-new-tokens must be >= 0");
  std::vector<int64_t> prompt = parse_token_ids(c.prompt_ids);
  c10::Device device(at::kCPU);
  try {
    device = c10::Device(c.device);
  } catch (const std::exception&) {
    throw Error("generate: --device '" + c.device + "' is not a device (cpu, cuda, cuda:1)");
  }
  if (device.is_cuda() && !at::hasCUDA())
    throw Error("generate: --device " + c.device + " asked for, but no CUDA device is available");
  auto model = load_model(c.model, torch::TensorOptions(parse_scalar_type(c.dtype)).device(device));
  model->eval();
  SamplingOptions s;
  s.greedy = c.greedy;
  s.temperature = c.temperature;
  s.top_p = c.top_p;
  s.top_k = c.top_k;
  s.seed = static_cast<uint64_t>(c.seed);
  return generate(*model, prompt, c.max_new_tokens, s, model->config().eos_token_ids);
}

}  // namespace ftune::model
