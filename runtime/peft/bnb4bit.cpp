#include "runtime/peft/bnb4bit.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/peft/qlora.h"

namespace ftune::peft {
namespace {

at::Tensor read(const st::Checkpoint& ckpt, const std::string& name) {
  const st::TensorInfo& info = ckpt.info(name);  // throws naming the tensor
  return model::view_tensor(ckpt.file_of(name), info).clone();
}

// Gives a meta parameter real (uninitialised) memory of `sizes` without changing its identity.
void materialise(at::Tensor& p, at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  p.unsafeGetTensorImpl()->shallow_copy_from(t.getIntrusivePtr());
}

Nf4Tensor read_nf4(const st::Checkpoint& ckpt, const std::string& name, const std::string& dir,
                   const at::Device& device) {
  const std::string state_key = name + ".quant_state.bitsandbytes__nf4";
  if (!ckpt.contains(state_key)) {
    if (ckpt.contains(name + ".quant_state.bitsandbytes__fp4"))
      throw Error(dir + ": " + name + " is FP4; ftune reads NF4 4-bit checkpoints only");
    throw Error(dir + ": " + name + " has no " + state_key + " (not a bitsandbytes NF4 tensor)");
  }
  const at::Tensor bytes = read(ckpt, state_key);
  const std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), size_t(bytes.numel()));
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(dir + ": " + state_key + " is not JSON: " + e.what());
  }
  Nf4Tensor q;
  q.shape = state.at("shape").get<std::vector<int64_t>>();
  q.block = state.value("blocksize", int64_t(64));
  q.dtype = model::parse_scalar_type(state.value("dtype", "bfloat16"));
  q.packed = read(ckpt, name).reshape({-1}).to(device);
  q.code = read(ckpt, name + ".quant_map").to(device);
  q.absmax = read(ckpt, name + ".absmax").to(device);
  if (state.contains("nested_blocksize")) {
    q.nested_block = state["nested_blocksize"].get<int64_t>();
    q.offset = state.value("nested_offset", 0.0f);
    q.nested_absmax = read(ckpt, name + ".nested_absmax").to(device);
    q.nested_code = read(ckpt, name + ".nested_quant_map").to(device);
  }
  if (q.packed.numel() * 2 != q.numel() || q.absmax.numel() * q.block != q.numel())
    throw Error(dir + ": " + name + " holds " + std::to_string(q.packed.numel()) + " bytes and " +
                std::to_string(q.absmax.numel()) + " absmax values, which do not fit its shape " +
                c10::str(at::IntArrayRef(q.shape)) + " in blocks of " + std::to_string(q.block));
  return q;
}

}  // namespace

bool is_bnb_4bit(const std::string& dir) {
  std::ifstream in(dir + "/config.json");
  if (!in) return false;
  const auto c = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!c.is_object() || !c.contains("quantization_config")) return false;
  const auto& q = c["quantization_config"];
  return q.value("quant_method", "") == "bitsandbytes" && q.value("load_in_4bit", false);
}

std::shared_ptr<model::CausalLM> load_bnb_4bit(const std::string& dir, const at::TensorOptions& options) {
  auto model = std::make_shared<model::CausalLM>(model::load_model_dir_config(dir),
                                                 at::TensorOptions(options.dtype()).device(at::kMeta));
  st::Checkpoint ckpt = st::Checkpoint::open(dir);
  at::NoGradGuard no_grad;
  for (auto& [name, linear] : model->named_linears()) {
    Nf4Tensor q = read_nf4(ckpt, name + ".weight", dir, options.device());
    if (q.shape != std::vector<int64_t>{linear->out_features, linear->in_features})
      throw Error(dir + ": " + name + ".weight has shape " + c10::str(at::IntArrayRef(q.shape)) +
                  " but config.json implies [" + std::to_string(linear->out_features) + ", " +
                  std::to_string(linear->in_features) + "]");
    materialise(linear->weight, {0}, options);  // the NF4 form is the only copy
    linear->set_adapter(std::make_shared<Nf4Base>(std::move(q)), "nf4");
  }
  for (auto& [name, p] : model->base_parameters()) {
    if (!p.is_meta()) continue;  // a projection, done above
    at::Tensor src = read(ckpt, name);
    if (src.sizes() != p.sizes())
      throw Error(dir + ": " + name + " has shape " + c10::str(src.sizes()) + " but config.json implies " +
                  c10::str(p.sizes()));
    materialise(p, p.sizes(), options);
    p.copy_(src);
  }
  return model;
}

std::shared_ptr<model::CausalLM> load_base(const std::string& dir, const at::TensorOptions& options) {
  return is_bnb_4bit(dir) ? load_bnb_4bit(dir, options) : model::load_model(dir, options);
}

}  // namespace ftune::peft
