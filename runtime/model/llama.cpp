#include "runtime/model/llama.h"

#include <cmath>
#include <map>

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"
#include "common/text.h"
#include "runtime/model/loss.h"

namespace ftune::model {

// ---- building blocks --------------------------------------------------------------------------

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias, const torch::TensorOptions& o)
    : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}, o));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, o));
}

Tensor LinearImpl::forward(const Tensor& x) {
  if (adapter_ && adapter_->replaces_base()) return adapter_->forward(x, Tensor(), *this);
  // A bias that trains beside an adapter is float32 while the frozen weight may be bf16.
  std::optional<Tensor> b;
  if (bias.defined()) b = bias.scalar_type() == x.scalar_type() ? bias : bias.to(x.scalar_type());
  Tensor y = at::linear(x, weight, b);
  return adapter_ ? adapter_->forward(x, y, *this) : y;
}

void LinearImpl::set_adapter(std::shared_ptr<LinearAdapter> adapter, const std::string& name) {
  if (named_children().contains(name)) {
    replace_module(name, adapter);
  } else {
    register_module(name, adapter);
  }
  adapter_ = std::move(adapter);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const torch::TensorOptions& o) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, o));
}

Tensor RMSNormImpl::forward(const Tensor& x) {
  // Reduced-precision inputs are normalised in float32 (HF's LlamaRMSNorm does the same),
  // so bf16 runs match the reference.
  Tensor xf = x.to(at::kFloat);
  Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * at::rsqrt(var + eps);
  return weight * xf.to(x.scalar_type());
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& o) {
  weight = register_parameter("weight", torch::empty({vocab, dim}, o));
}

RotaryEmbedding::RotaryEmbedding(const ModelConfig& cfg) {
  const int64_t dim = cfg.head_dim;
  const RopeConfig& r = cfg.rope;
  // Same float32 arithmetic as HF's _compute_default_rope_parameters.
  Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  Tensor inv_freq = 1.0 / at::pow(r.theta, exponents);
  if (r.type == RopeType::kLinear) inv_freq = inv_freq / r.factor;
  if (r.type == RopeType::kLlama3) {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band in
    // between interpolated smoothly.
    const double old_ctx = static_cast<double>(r.original_max_position_embeddings);
    const double low_wavelen = old_ctx / r.low_freq_factor;
    const double high_wavelen = old_ctx / r.high_freq_factor;
    Tensor wavelen = 2 * M_PI / inv_freq;
    Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / r.factor, inv_freq);
    Tensor smooth = (old_ctx / wavelen - r.low_freq_factor) /
                    (r.high_freq_factor - r.low_freq_factor);
    Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
    Tensor medium = at::logical_not(wavelen < high_wavelen).logical_and(
        at::logical_not(wavelen > low_wavelen));
    inv_freq = at::where(medium, smoothed, scaled);
  }
  inv_freq_ = inv_freq.contiguous();
}

std::pair<Tensor, Tensor> RotaryEmbedding::cos_sin(const Tensor& positions,
                                                   at::ScalarType dtype) const {
  Tensor inv = inv_freq_.to(positions.device());
  Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv;  // [.., T, D/2]
  Tensor emb = at::cat({freqs, freqs}, -1);                      // [.., T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

KVCache::KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity,
                 const torch::TensorOptions& o)
    : capacity_(capacity) {
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    k_.push_back(torch::empty({batch, cfg.num_kv_heads, capacity, cfg.head_dim}, o));
    v_.push_back(torch::empty({batch, cfg.num_kv_heads, capacity, cfg.head_dim}, o));
  }
}

std::pair<Tensor, Tensor> KVCache::append(size_t layer, const Tensor& k, const Tensor& v) {
  const int64_t t = k.size(2);
  if (length_ + t > capacity_)
    throw Error("KV cache full: " + std::to_string(length_) + " + " + std::to_string(t) +
                " tokens exceed its capacity of " + std::to_string(capacity_));
  k_.at(layer).narrow(2, length_, t).copy_(k);
  v_.at(layer).narrow(2, length_, t).copy_(v);
  return {k_[layer].narrow(2, 0, length_ + t), v_[layer].narrow(2, 0, length_ + t)};
}

void KVCache::advance(int64_t tokens) { length_ += tokens; }

namespace {
Tensor rotate_half(const Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  // x [B, heads, T, D]; cos/sin [T, D] or [B, T, D] -> broadcast over heads.
  Tensor c = cos.dim() == 3 ? cos.unsqueeze(1) : cos;
  Tensor s = sin.dim() == 3 ? sin.unsqueeze(1) : sin;
  return x * c + rotate_half(x) * s;
}
}  // namespace

AttentionImpl::AttentionImpl(const ModelConfig& c, const torch::TensorOptions& o)
    : num_heads_(c.num_heads), num_kv_heads_(c.num_kv_heads), head_dim_(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, c.q_dim(), c.qkv_bias, o));
  k_proj = register_module("k_proj", Linear(c.hidden_size, c.kv_dim(), c.qkv_bias, o));
  v_proj = register_module("v_proj", Linear(c.hidden_size, c.kv_dim(), c.qkv_bias, o));
  o_proj = register_module("o_proj", Linear(c.q_dim(), c.hidden_size, c.o_bias, o));
}

namespace {
// Packed documents on CUDA in half precision: the varlen flash kernel attends within each
// document without a mask, shares kv heads across query groups natively and keeps O(T) memory.
Tensor varlen_flash_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                              const LayerContext& ctx) {
  // [B, H, T, D] -> [B * T, H, D]
  auto flat = [](const Tensor& x) {
    return x.transpose(1, 2).reshape({-1, x.size(1), x.size(3)});
  };
  auto out = at::_flash_attention_forward(flat(q), flat(k), flat(v), ctx.cu_seqlens,
                                          ctx.cu_seqlens, ctx.max_seqlen, ctx.max_seqlen, 0.0,
                                          /*is_causal=*/true, /*return_debug_mask=*/false);
  const int64_t b = q.size(0), t = q.size(2);
  return std::get<0>(out).view({b, t, q.size(1), q.size(3)}).transpose(1, 2);
}

bool use_varlen_flash(const Tensor& q, const LayerContext& ctx) {
  return ctx.cu_seqlens.defined() && q.is_cuda() && !ctx.attn_mask.defined() &&
         (q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf);
}
}  // namespace

void AttentionImpl::set_prefix(std::shared_ptr<AttentionPrefix> prefix) {
  if (named_children().contains("prefix")) replace_module("prefix", prefix);
  else register_module("prefix", prefix);
  prefix_ = std::move(prefix);
}

Tensor AttentionImpl::forward(const Tensor& x, const LayerContext& ctx, size_t layer_index) {
  const int64_t b = x.size(0), t = x.size(1);
  Tensor q = q_proj(x).view({b, t, num_heads_, head_dim_}).transpose(1, 2);
  Tensor k = k_proj(x).view({b, t, num_kv_heads_, head_dim_}).transpose(1, 2);
  Tensor v = v_proj(x).view({b, t, num_kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, ctx.cos, ctx.sin);
  k = apply_rope(k, ctx.cos, ctx.sin);
  if (ctx.cache != nullptr) {
    std::tie(k, v) = ctx.cache->append(layer_index, k, v);  // a prefix is already in the cache
  } else if (prefix_) {
    k = at::cat({prefix_->key.to(k.scalar_type()).unsqueeze(0).expand({b, -1, -1, -1}), k}, 2);
    v = at::cat({prefix_->value.to(v.scalar_type()).unsqueeze(0).expand({b, -1, -1, -1}), v}, 2);
  }
  Tensor out;
  if (use_varlen_flash(q, ctx)) {
    out = varlen_flash_attention(q, k, v, ctx);
  } else {
    std::optional<Tensor> mask;
    if (ctx.attn_mask.defined()) mask = ctx.attn_mask;
    bool gqa = num_heads_ != num_kv_heads_;
    if (mask && gqa && q.is_cuda()) {
      // A mask with grouped-query attention leaves only cuDNN (NaN gradients reported, see
      // shared/notes) or the O(T^2)-per-head math kernel; expanding the kv heads lets the
      // memory-efficient kernel take the mask instead.
      k = k.repeat_interleave(num_heads_ / num_kv_heads_, 1);
      v = v.repeat_interleave(num_heads_ / num_kv_heads_, 1);
      gqa = false;
    }
    // enable_gqa lets the kernel share each kv head across its query group without copying.
    out = at::scaled_dot_product_attention(q, k, v, mask, 0.0, !mask && ctx.is_causal,
                                           std::nullopt, gqa);
  }
  return o_proj(out.transpose(1, 2).reshape({b, t, num_heads_ * head_dim_}));
}

MLPImpl::MLPImpl(const ModelConfig& c, const torch::TensorOptions& o) {
  gate_proj = register_module("gate_proj",
                              Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, o));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, o));
  down_proj = register_module("down_proj",
                              Linear(c.intermediate_size, c.hidden_size, c.mlp_bias, o));
}

Tensor MLPImpl::forward(const Tensor& x) { return down_proj(at::silu(gate_proj(x)) * up_proj(x)); }

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, size_t index,
                                   const torch::TensorOptions& o)
    : index_(index) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
  self_attn = register_module("self_attn", Attention(c, o));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
  mlp = register_module("mlp", MLP(c, o));
}

Tensor DecoderLayerImpl::forward(const Tensor& hidden, const LayerContext& ctx) {
  Tensor h = hidden + self_attn->forward(input_layernorm(hidden), ctx, index_);
  return h + mlp(post_attention_layernorm(h));
}

BackboneImpl::BackboneImpl(const ModelConfig& c, const torch::TensorOptions& o) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, o));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(DecoderLayer(c, i, o));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
}

// ---- the whole model --------------------------------------------------------------------------

CausalLM::CausalLM(ModelConfig cfg, const torch::TensorOptions& options)
    : cfg_(std::move(cfg)), rope_(cfg_) {
  backbone_ = register_module("model", Backbone(cfg_, options));
  for (size_t i = 0; i < backbone_->layers->size(); ++i)
    layers_.emplace_back(backbone_->layers->ptr<DecoderLayerImpl>(i));
  if (!cfg_.tie_word_embeddings)
    lm_head_ = register_module("lm_head", Linear(cfg_.hidden_size, cfg_.vocab_size, false, options));
  set_unit_runner(nullptr);
}

void CausalLM::set_unit_runner(UnitRunner runner) {
  if (!runner) runner = [](const UnitCall& call, const Tensor& input) { return call.run(input); };
  runner_ = std::move(runner);
}

namespace {
// Document index of every token [B, T] from bounds over the flattened tokens.
Tensor document_ids(const Tensor& cu_seqlens, int64_t b, int64_t t, const Tensor& like) {
  Tensor bounds = cu_seqlens.to(like.device(), at::kLong).narrow(0, 1, cu_seqlens.size(0) - 1);
  Tensor token = at::arange(b * t, like.options().dtype(at::kLong));
  return at::searchsorted(bounds, token, /*out_int32=*/false, /*right=*/true).view({b, t});
}
}  // namespace

std::shared_ptr<const LayerContext> CausalLM::make_context(const ForwardInputs& in,
                                                           at::ScalarType dtype) const {
  auto ctx = std::make_shared<LayerContext>();
  ctx->cache = in.cache;
  const int64_t b = in.ids.size(0), t = in.ids.size(1);
  // Prefix tokens come first: in the cache when there is one (run_body filled it), else
  // prepended by every attention; either way the sequence's positions start after them.
  const int64_t prefix = in.cache ? 0 : prefix_tokens();
  const int64_t past = (in.cache ? in.cache->length() : 0) + prefix;
  const bool packed = in.cu_seqlens.defined();
  if (packed && in.cache) throw Error("packed documents (cu_seqlens) cannot use a KV cache");
  Tensor pos = in.positions.defined()
                   ? in.positions.to(in.ids.device(), at::kLong) + prefix
                   : at::arange(past, past + t, in.ids.options().dtype(at::kLong));
  if (in.positions.defined() && in.positions.sizes() != in.ids.sizes())
    throw Error("positions must have the shape of ids [batch, tokens]");
  std::tie(ctx->cos, ctx->sin) = rope_.cos_sin(pos, dtype);
  const bool windowed = cfg_.sliding_window && past + t > *cfg_.sliding_window;
  if (packed) {
    ctx->cu_seqlens = in.cu_seqlens.to(in.ids.device(), at::kInt).contiguous();
    ctx->max_seqlen = in.max_seqlen > 0 ? in.max_seqlen : t;
    if (in.ids.is_cuda() && !windowed && dtype != at::kFloat && prefix == 0) return ctx;  // varlen flash
  } else if (past == 0 && !windowed) {
    return ctx;  // plain causal: the fast kernels apply
  } else if (t == 1 && !windowed) {
    ctx->is_causal = false;  // one new token sees every cached one
    return ctx;
  }
  // Query i sits at position past + i and sees keys j <= past + i (and, with a sliding window
  // w, j > past + i - w, as in HF's Mistral mask); packed, only keys of its own document.
  Tensor q_idx = at::arange(past, past + t, pos.options()).unsqueeze(1);
  Tensor k_idx = at::arange(0, past + t, pos.options()).unsqueeze(0);
  Tensor mask = k_idx <= q_idx;  // [T, past + T]
  if (cfg_.sliding_window) mask = mask.logical_and(k_idx > q_idx - *cfg_.sliding_window);
  if (packed) {
    Tensor doc = document_ids(in.cu_seqlens, b, t, in.ids);  // [B, T]
    Tensor same = doc.unsqueeze(2) == doc.unsqueeze(1);       // [B, T, T]
    if (prefix > 0) same = at::cat({at::ones({b, t, prefix}, same.options()), same}, 2);  // every document sees it
    mask = mask.unsqueeze(0).logical_and(same).unsqueeze(1);
  }
  ctx->attn_mask = mask;
  return ctx;
}

Tensor CausalLM::run_body(const ForwardInputs& in) {
  if (!in.ids.defined() || in.ids.dim() != 2) throw Error("token ids must be [batch, tokens]");
  const at::ScalarType dtype = backbone_->embed_tokens->weight.scalar_type();
  if (in.cache && in.cache->length() == 0 && prefix_tokens() > 0) {
    // Generation starts with the prefix in the cache, as PEFT hands it to HF as past_key_values.
    const int64_t b = in.ids.size(0);
    for (auto& layer : layers_) {
      const auto& p = layer->self_attn->prefix();
      in.cache->append(layer->index(), p->key.to(dtype).unsqueeze(0).expand({b, -1, -1, -1}),
                       p->value.to(dtype).unsqueeze(0).expand({b, -1, -1, -1}));
    }
    in.cache->advance(prefix_tokens());
  }
  std::shared_ptr<const LayerContext> ctx = make_context(in, dtype);
  auto embed = backbone_->embed_tokens;
  UnitCall call{UnitKind::embeddings, 0, {0}, [embed](const Tensor& ids) mutable { return embed(ids); }};
  Tensor h = runner_(call, in.ids);
  for (auto& layer : layers_) {
    const size_t unit = layer->index() + 1;
    call = {UnitKind::layer, unit, {unit},
            [layer, ctx](const Tensor& x) mutable { return layer->forward(x, *ctx); }};
    h = runner_(call, h);
  }
  if (in.cache) in.cache->advance(in.ids.size(1));
  return h;
}

const Tensor& CausalLM::head_weight() {
  return cfg_.tie_word_embeddings ? backbone_->embed_tokens->weight : lm_head_->weight;
}

Tensor CausalLM::run_head(const Tensor& hidden, std::function<Tensor(const Tensor&)> head) {
  std::vector<size_t> uses{head_unit()};
  if (cfg_.tie_word_embeddings) uses.push_back(0);
  auto norm = backbone_->norm;
  UnitCall call{UnitKind::head, head_unit(), uses,
                [norm, head = std::move(head)](const Tensor& h) mutable { return head(norm(h)); }};
  return runner_(call, hidden);
}

Tensor CausalLM::forward(const ForwardInputs& in) {
  return run_head(run_body(in), [this](const Tensor& normed) {
    return cfg_.tie_word_embeddings ? at::linear(normed, backbone_->embed_tokens->weight)
                                    : lm_head_(normed);
  });
}

Tensor CausalLM::forward(const Tensor& ids, KVCache* cache) {
  ForwardInputs in;
  in.ids = ids;
  in.cache = cache;
  return forward(in);
}

Tensor CausalLM::loss(const ForwardInputs& in, const Tensor& labels, int64_t chunk_tokens) {
  if (labels.sizes() != in.ids.sizes()) throw Error("labels must have the shape of ids");
  if (!cfg_.tie_word_embeddings && lm_head_->adapter())
    throw Error("an adapter on lm_head is not supported by the fused loss");
  Tensor flat_labels = labels.reshape({-1}).to(at::kLong);
  return run_head(run_body(in), [this, flat_labels, chunk_tokens](const Tensor& normed) {
    return linear_cross_entropy_sum(normed.reshape({-1, normed.size(-1)}), head_weight(),
                                    flat_labels, kIgnoreLabel, chunk_tokens);
  });
}

Tensor CausalLM::eval_stats(const ForwardInputs& in, const Tensor& labels, int64_t chunk_tokens) {
  at::NoGradGuard no_grad;
  Tensor flat_labels = labels.reshape({-1}).to(at::kLong);
  return run_head(run_body(in), [this, flat_labels, chunk_tokens](const Tensor& normed) {
    return cross_entropy_stats(normed.reshape({-1, normed.size(-1)}), head_weight(), flat_labels,
                               kIgnoreLabel, chunk_tokens);
  });
}

int64_t CausalLM::prefix_tokens() const {
  if (layers_.empty() || !layers_.front()->self_attn->prefix()) return 0;
  return layers_.front()->self_attn->prefix()->tokens();
}

std::vector<std::pair<std::string, Linear>> CausalLM::named_linears() {
  std::vector<std::pair<std::string, Linear>> out;
  for (auto& layer : layers_) {
    std::string p = "model.layers." + std::to_string(layer->index()) + ".";
    auto& a = layer->self_attn;
    auto& m = layer->mlp;
    out.insert(out.end(), {{p + "self_attn.q_proj", a->q_proj},
                           {p + "self_attn.k_proj", a->k_proj},
                           {p + "self_attn.v_proj", a->v_proj},
                           {p + "self_attn.o_proj", a->o_proj},
                           {p + "mlp.gate_proj", m->gate_proj},
                           {p + "mlp.up_proj", m->up_proj},
                           {p + "mlp.down_proj", m->down_proj}});
  }
  return out;
}

Linear CausalLM::find_linear(const std::string& name) {
  std::vector<std::string> names;
  for (auto& [n, linear] : named_linears()) {
    if (n == name) return linear;
    names.push_back(n);
  }
  std::string hint = closest_match(name, names);
  throw Error("no linear module named '" + name + "'" +
              (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
}

std::vector<std::pair<std::string, Tensor>> CausalLM::base_parameters() {
  // parameter_shapes() is the one list of HF tensor names; adapters never appear in it.
  auto all = named_parameters(/*recurse=*/true);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& s : parameter_shapes(cfg_)) {
    const Tensor* t = all.find(s.name);
    FTUNE_CHECK(t != nullptr, "model lacks parameter " + s.name);
    out.emplace_back(s.name, *t);
  }
  return out;
}

bool ParameterUnit::trainable() const {
  for (const auto& p : params)
    if (p.second.requires_grad()) return true;
  return false;
}

std::vector<ParameterUnit> CausalLM::parameter_units() {
  std::vector<ParameterUnit> units;
  std::map<std::string, size_t> index;
  auto unit = [&](const std::string& name) -> ParameterUnit& {
    auto [it, added] = index.emplace(name, units.size());
    if (added) units.push_back({name, {}});
    return units[it->second];
  };
  unit("model.embed_tokens");
  for (auto& layer : layers_) unit("model.layers." + std::to_string(layer->index()));
  unit("head");
  for (const auto& item : named_parameters(/*recurse=*/true)) {
    const std::string u = unit_of(item.key());
    FTUNE_CHECK(index.count(u) == 1, "parameter " + item.key() + " maps to no unit");
    unit(u).params.emplace_back(item.key(), item.value());
  }
  return units;
}

void CausalLM::init_weights(uint64_t seed) {
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& [name, p] : base_parameters()) {
    const bool is_norm = name.find("norm.weight") != std::string::npos;
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    Tensor v;
    if (is_norm) {
      v = at::ones(p.sizes(), at::kFloat);
    } else if (is_bias) {
      v = at::zeros(p.sizes(), at::kFloat);
    } else {
      v = at::empty(p.sizes(), at::kFloat).normal_(0.0, cfg_.initializer_range, gen);
    }
    p.copy_(v);
  }
}

}  // namespace ftune::model
