// `ftune model info` and the prompt-id parser: the task code that needs no LibTorch, so that the
// launcher runs it without loading libftune_torch.so (see runtime/torch_api.h).
#include <filesystem>
#include <map>
#include <sstream>

#include "common/error.h"
#include "common/text.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/model/config.h"
#include "runtime/memory_estimate.h"
#include "runtime/peft/nf4_size.h"
#include "runtime/tasks.h"

namespace ftune::model {
namespace fs = std::filesystem;

namespace {

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

std::string describe_config(const ModelConfig& cfg) {
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
  os << "parameters:      " << with_commas(parameter_count(cfg)) << "\n";
  return os.str();
}

std::string describe_nf4(const ModelConfig& cfg) {
  const int64_t block = 64;
  int64_t projected = 0, rest = 0;
  double nf4 = 0;  // each projection is quantised on its own: its last (nested) block is its own
  for (const auto& s : parameter_shapes(cfg)) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    if (s.name.find("_proj.weight") == std::string::npos) {
      rest += n;
      continue;
    }
    projected += n;
    nf4 += peft::nf4_bytes(n, block, /*double_quant=*/true);
  }
  const double other = double(rest) * double(dtype_bytes(cfg.dtype));
  char line[256];
  std::ostringstream os;
  os << "nf4 (qlora: block " << block << ", double quantisation; the rest in " << cfg.dtype << "):\n";
  std::snprintf(line, sizeof line, "  projections:     %s weights -> %s: %.5f bytes/weight (0.5 + absmax %.5f)\n",
                with_commas(projected).c_str(), format_bytes(nf4).c_str(), nf4 / double(projected),
                nf4 / double(projected) - 0.5);
  os << line;
  os << "  rest:            " << with_commas(rest) << " parameters -> " << format_bytes(other) << "\n";
  std::snprintf(line, sizeof line, "  total:           %s (%.0f bytes, %.4f bytes/parameter)\n",
                format_bytes(nf4 + other).c_str(), nf4 + other, (nf4 + other) / double(projected + rest));
  os << line;
  return os.str();
}

std::string describe_model_dir(const std::string& dir) {
  ModelConfig cfg = load_model_dir_config(dir);
  const int64_t params = parameter_count(cfg);
  std::ostringstream os;
  os << describe_config(cfg);
  if (has_weights(dir)) {
    os << "weights (from the safetensors headers):\n" << checkpoint_bytes(dir, params);
  } else {
    double bytes = static_cast<double>(params) * static_cast<double>(dtype_bytes(cfg.dtype));
    os << "weights:         none in " << dir << "; " << format_bytes(bytes) << " as " << cfg.dtype
       << " (config.json dtype)\n";
  }
  os << memory_summary(cfg);
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

}  // namespace ftune::model
