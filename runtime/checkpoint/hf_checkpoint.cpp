#include "runtime/checkpoint/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "common/error.h"
#include "data/tokenizer/tokenizer.h"

namespace ftune::model {
namespace fs = std::filesystem;

namespace {
struct DTypeRow {
  st::DType st;
  at::ScalarType torch;
};
// The single st::DType <-> LibTorch table; config.json names live in model/config.cpp.
constexpr DTypeRow kDTypes[] = {
    {st::DType::F32, at::kFloat}, {st::DType::BF16, at::kBFloat16}, {st::DType::F16, at::kHalf},
    {st::DType::F64, at::kDouble}, {st::DType::I64, at::kLong},     {st::DType::I32, at::kInt},
    {st::DType::I16, at::kShort},  {st::DType::I8, at::kChar},      {st::DType::U8, at::kByte},
    {st::DType::BOOL, at::kBool},
};
}  // namespace

at::ScalarType to_scalar_type(st::DType dtype) {
  for (const auto& row : kDTypes)
    if (row.st == dtype) return row.torch;
  throw Error(std::string("unsupported safetensors dtype ") + st::dtype_name(dtype));
}

st::DType to_st_dtype(at::ScalarType dtype) {
  for (const auto& row : kDTypes)
    if (row.torch == dtype) return row.st;
  throw Error(std::string("no safetensors dtype for ") + c10::toString(dtype));
}

at::ScalarType parse_scalar_type(const std::string& hf_name) {
  return to_scalar_type(parse_hf_dtype(hf_name));
}

std::string hf_dtype_name(at::ScalarType dtype) { return model::hf_dtype_name(to_st_dtype(dtype)); }

const std::vector<std::string>& tokenizer_files() {
  static const std::vector<std::string> files = [] {
    std::vector<std::string> f = data::tokenizer_file_names();
    f.push_back("generation_config.json");
    return f;
  }();
  return files;
}

namespace {

void check_shapes(const st::Checkpoint& ckpt,
                  const std::vector<std::pair<std::string, at::Tensor>>& params,
                  const std::string& dir) {
  std::string mismatches;
  for (const auto& [name, p] : params) {
    const auto& shape = ckpt.info(name).shape;
    if (std::vector<int64_t>(p.sizes().begin(), p.sizes().end()) != shape) {
      mismatches += "\n  " + name + ": checkpoint " + c10::str(at::IntArrayRef(shape)) +
                    ", config.json implies " + c10::str(p.sizes());
    }
  }
  if (!mismatches.empty())
    throw Error(dir + ": tensor shapes do not match config.json:" + mismatches);
}

void report_unexpected(const st::Checkpoint& ckpt,
                       const std::vector<std::pair<std::string, at::Tensor>>& params,
                       bool tied, const std::string& dir) {
  std::set<std::string> wanted;
  for (const auto& [name, p] : params) wanted.insert(name);
  std::vector<std::string> extra;
  for (const auto& name : ckpt.names()) {
    // Old checkpoints store the (recomputed) RoPE table; tied heads may be stored too.
    if (wanted.count(name) || name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    if (tied && name == "lm_head.weight") continue;
    extra.push_back(name);
  }
  if (extra.empty()) return;
  std::cerr << "[model] warning: " << dir << ": ignoring " << extra.size()
            << " tensor(s) the model does not use, e.g. " << extra.front() << "\n";
}

}  // namespace

void load_weights(CausalLM& model, const std::string& dir) {
  st::Checkpoint ckpt = st::Checkpoint::open(dir);
  auto params = model.base_parameters();
  std::vector<std::string> names;
  for (const auto& [name, p] : params) names.push_back(name);
  ckpt.require(names);  // one error naming every missing tensor
  check_shapes(ckpt, params, dir);
  report_unexpected(ckpt, params, model.config().tie_word_embeddings, dir);
  at::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    const st::TensorInfo& info = ckpt.info(name);
    p.copy_(view_tensor(ckpt.file_of(name), info));  // converts dtype, moves to p's device
  }
}

at::Tensor view_tensor(const st::SafetensorsFile& file, const st::TensorInfo& info) {
  return at::from_blob(const_cast<uint8_t*>(file.data(info)), info.shape,
                       at::TensorOptions(to_scalar_type(info.dtype)));
}

std::shared_ptr<CausalLM> load_model(const std::string& dir, const torch::TensorOptions& options) {
  ModelConfig cfg = load_model_dir_config(dir);
  auto model = std::make_shared<CausalLM>(cfg, options);
  load_weights(*model, dir);
  return model;
}

namespace {

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw Error("cannot write " + path);
}

// Copies the tokenizer files found in `from`; writes a generation_config.json from the model
// config when none was copied, so generate() finds its EOS ids as transformers does.
void write_side_files(const ModelConfig& cfg, const std::string& from, const std::string& dir) {
  bool have_generation_config = false;
  if (!from.empty() && fs::absolute(from) != fs::absolute(dir)) {
    for (const auto& name : tokenizer_files()) {
      fs::path src = fs::path(from) / name;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, fs::path(dir) / name, fs::copy_options::overwrite_existing);
      have_generation_config |= name == "generation_config.json";
    }
  }
  if (have_generation_config || fs::exists(fs::path(dir) / "generation_config.json")) return;
  nlohmann::json g = {{"_from_model_config", true}};
  if (cfg.bos_token_id) g["bos_token_id"] = *cfg.bos_token_id;
  if (cfg.eos_token_ids.size() == 1) g["eos_token_id"] = cfg.eos_token_ids[0];
  else if (!cfg.eos_token_ids.empty()) g["eos_token_id"] = cfg.eos_token_ids;
  write_json((fs::path(dir) / "generation_config.json").string(), g);
}

}  // namespace

void save_model(CausalLM& model, const std::string& dir, const SaveOptions& options) {
  auto params = model.base_parameters();
  FTUNE_CHECK(!params.empty(), "model has no parameters");
  at::ScalarType dtype = options.dtype.empty() ? params.front().second.scalar_type()
                                               : parse_scalar_type(options.dtype);
  // CPU copies in the stored dtype stay alive until the write returns (views borrow them).
  std::vector<at::Tensor> keep;
  std::vector<st::TensorView> views;
  keep.reserve(params.size());
  for (const auto& [name, p] : params) {
    keep.push_back(p.detach().to(at::kCPU, dtype).contiguous());
    const at::Tensor& t = keep.back();
    views.push_back({name, to_st_dtype(dtype), std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                     t.data_ptr()});
  }
  fs::create_directories(dir);
  st::write_checkpoint(dir, views, options.max_shard_bytes);
  ModelConfig cfg = model.config();
  cfg.dtype = hf_dtype_name(dtype);
  write_json((fs::path(dir) / "config.json").string(), cfg.to_json());
  write_side_files(cfg, options.tokenizer_dir, dir);
}

void write_model_files(const ModelConfig& model_cfg, at::ScalarType dtype,
                       const std::string& tokenizer_dir, const std::string& dir) {
  ModelConfig cfg = model_cfg;
  cfg.dtype = hf_dtype_name(dtype);
  write_json((fs::path(dir) / "config.json").string(), cfg.to_json());
  write_side_files(cfg, tokenizer_dir, dir);
}

}  // namespace ftune::model
