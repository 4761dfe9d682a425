#include "runtime/peft/prefix.h"

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"

namespace ftune::peft {

void attach_prefix(model::CausalLM& model, const PrefixOptions& o, uint64_t seed) {
  if (o.num_virtual_tokens < 1)
    throw Error("prefix.num_virtual_tokens must be at least 1 (got " + std::to_string(o.num_virtual_tokens) + ")");
  for (auto& p : model.parameters()) p.requires_grad_(false);
  const auto& cfg = model.config();
  const int64_t kv_dim = cfg.num_kv_heads * cfg.head_dim;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor all = at::empty({o.num_virtual_tokens, int64_t(model.num_layers()) * 2 * kv_dim}, at::kFloat)
                       .normal_(0.0, 1.0, gen);
  const at::Device device = model.backbone()->embed_tokens->weight.is_meta()
                                ? at::Device(at::kCPU)
                                : model.backbone()->embed_tokens->weight.device();
  for (size_t i = 0; i < model.num_layers(); ++i) {
    auto prefix = std::make_shared<model::AttentionPrefix>();
    prefix->key = prefix->register_parameter("key", at::empty({cfg.num_kv_heads, o.num_virtual_tokens, cfg.head_dim},
                                                              at::TensorOptions(at::kFloat).device(device)));
    prefix->value = prefix->register_parameter("value", at::empty_like(prefix->key));
    model.layer(i)->self_attn->set_prefix(prefix);
  }
  load_prompt_embeddings(model, all, "the initialisation");
  for (size_t i = 0; i < model.num_layers(); ++i)
    for (auto& p : model.layer(i)->self_attn->prefix()->parameters()) p.requires_grad_(true);
}

at::Tensor prompt_embeddings(model::CausalLM& model) {
  std::vector<at::Tensor> blocks;
  for (size_t i = 0; i < model.num_layers(); ++i) {
    const auto& p = model.layer(i)->self_attn->prefix();
    FTUNE_CHECK(p != nullptr, "layer " + std::to_string(i) + " has no prefix");
    // [kv_heads, tokens, head_dim] -> [tokens, kv_heads * head_dim]
    for (const at::Tensor& t : {p->key, p->value})
      blocks.push_back(t.detach().to(at::kCPU, at::kFloat).permute({1, 0, 2}).reshape({t.size(1), -1}));
  }
  return at::cat(blocks, 1).contiguous();
}

void load_prompt_embeddings(model::CausalLM& model, const at::Tensor& e, const std::string& origin) {
  const auto& cfg = model.config();
  const int64_t kv_dim = cfg.num_kv_heads * cfg.head_dim, layers = int64_t(model.num_layers());
  const int64_t tokens = model.prefix_tokens();
  if (e.dim() != 2 || e.size(0) != tokens || e.size(1) != layers * 2 * kv_dim)
    throw Error(origin + ": prompt_embeddings has shape " + c10::str(e.sizes()) + " but this model with " +
                std::to_string(tokens) + " virtual tokens needs [" + std::to_string(tokens) + ", " +
                std::to_string(layers * 2 * kv_dim) + "] (" + std::to_string(layers) + " layers x 2 x " +
                std::to_string(cfg.num_kv_heads) + " kv heads x " + std::to_string(cfg.head_dim) + ")");
  at::NoGradGuard no_grad;
  for (int64_t i = 0; i < layers; ++i) {
    const auto& p = model.layer(size_t(i))->self_attn->prefix();
    for (int64_t j = 0; j < 2; ++j) {
      at::Tensor block = e.narrow(1, (2 * i + j) * kv_dim, kv_dim).reshape({tokens, cfg.num_kv_heads, cfg.head_dim});
      (j == 0 ? p->key : p->value).copy_(block.permute({1, 0, 2}));
    }
  }
}

nlohmann::ordered_json prefix_config(model::CausalLM& model, const PrefixOptions& o) {
  const auto& cfg = model.config();
  return {{"peft_type", "PREFIX_TUNING"}, {"num_virtual_tokens", o.num_virtual_tokens},
          {"num_layers", model.num_layers()}, {"token_dim", cfg.num_kv_heads * cfg.head_dim},
          {"num_attention_heads", cfg.num_kv_heads}, {"num_transformer_submodules", 1},
          {"encoder_hidden_size", cfg.hidden_size}, {"prefix_projection", false}};
}

}  // namespace ftune::peft
