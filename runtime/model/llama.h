// Decoder-only Llama-family model (Llama 2/3.x, Mistral, Qwen2) in LibTorch.
//
// Parameter names match Hugging Face (`model.layers.0.self_attn.q_proj.weight`). The model
// knows layers, not ranks; three seams let later work wrap it without editing it:
//  - sharding: `parameter_units()` groups every parameter into units (embeddings, each decoder
//    layer, head), and every unit runs through a `UnitRunner` the caller may replace (gather
//    before forward, activation checkpointing); the default just runs it;
//  - adapters: every projection is a `model::Linear` found by its HF name (`find_linear`) and
//    `Linear::set_adapter` adds LoRA/DoRA/IA3 on top of the base output, or replaces it (an
//    NF4 base); `Attention::set_prefix` gives a layer virtual keys and values (prefix tuning);
//  - packed documents: `ForwardInputs` carries the reader's positions and document bounds.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include "runtime/model/config.h"

namespace ftune::model {

using torch::Tensor;

class LinearImpl;

// Something added to a projection's output (LoRA, DoRA, IA3), or a replacement of its base
// matmul (a 4-bit base dequantised on the fly). Sees the input, the frozen base output (undefined
// when replaces_base()) and the base module (DoRA needs its weight); returns the new output.
class LinearAdapter : public torch::nn::Module {
 public:
  virtual Tensor forward(const Tensor& x, const Tensor& base_out, const LinearImpl& base) = 0;
  // True: the base matmul is not computed; forward() gets an undefined base_out.
  virtual bool replaces_base() const { return false; }
};

// y = x W^T + b, with an optional adapter. Our own module (not torch::nn::Linear) so that the
// adapter slot is part of every projection and the bias is truly absent when HF has none.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias,
             const torch::TensorOptions& options);
  Tensor forward(const Tensor& x);
  // Registers the adapter as a submodule under `name` (so its parameters are named
  // `<linear>.<name>.*`); replaces an earlier one of the same name.
  void set_adapter(std::shared_ptr<LinearAdapter> adapter, const std::string& name = "adapter");
  const std::shared_ptr<LinearAdapter>& adapter() const { return adapter_; }

  Tensor weight;  // [out, in]
  Tensor bias;    // [out]; undefined when the checkpoint has none
  int64_t in_features, out_features;

 private:
  std::shared_ptr<LinearAdapter> adapter_;
};
TORCH_MODULE(Linear);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  Tensor forward(const Tensor& x);  // normalises in float32, as HF does, then casts back
  Tensor weight;  // [dim]
  double eps;
};
TORCH_MODULE(RMSNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& options);
  Tensor forward(const Tensor& ids) { return at::embedding(weight, ids); }
  Tensor weight;  // [vocab, dim]
};
TORCH_MODULE(Embedding);

// RoPE frequencies for one config (default, linear or llama3 scaling), kept in float32.
class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const ModelConfig& cfg);
  // cos and sin for positions [T] or [B, T] (int64): [.., T, head_dim] in `dtype` on
  // positions' device.
  std::pair<Tensor, Tensor> cos_sin(const Tensor& positions, at::ScalarType dtype) const;
  const Tensor& inv_freq() const { return inv_freq_; }  // [head_dim / 2], float32, CPU

 private:
  Tensor inv_freq_;
};

// Keys and values of earlier tokens, one pair per layer, preallocated to `capacity` tokens.
class KVCache {
 public:
  KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity,
          const torch::TensorOptions& options);
  int64_t length() const { return length_; }      // [tokens] already stored
  int64_t capacity() const { return capacity_; }  // [tokens]
  // Stores k, v [B, Hkv, T, D] at [length, length + T) of layer i and returns that layer's
  // keys and values [B, Hkv, length + T, D]. `advance(T)` commits after all layers ran.
  std::pair<Tensor, Tensor> append(size_t layer, const Tensor& k, const Tensor& v);
  void advance(int64_t tokens);

 private:
  std::vector<Tensor> k_, v_;  // per layer [B, Hkv, capacity, D]
  int64_t length_ = 0;
  int64_t capacity_ = 0;
};

// What one forward pass takes.
struct ForwardInputs {
  Tensor ids;         // [B, T] int64
  Tensor positions;   // [B, T] int64 RoPE positions; undefined = past + 0 .. T-1 in every row
  // Packed documents: int32 [S + 1] bounds of the documents over the flattened B * T tokens
  // (the reader's cu_seqlens); a token attends only within its document. Undefined = each row
  // is one causal sequence.
  Tensor cu_seqlens;
  int64_t max_seqlen = 0;    // [tokens] longest document, for the varlen kernel
  KVCache* cache = nullptr;  // generation only
};

// What every layer of one forward pass shares; built once per pass and held by shared_ptr, so
// a unit recomputed in backward sees exactly what its forward saw.
struct LayerContext {
  Tensor cos, sin;            // [.., T, head_dim] in the compute dtype
  Tensor attn_mask;           // bool, broadcastable to [B, 1, T, past + T], true = attend;
                              // undefined = plain causal (or varlen below)
  bool is_causal = true;      // used when attn_mask is undefined
  Tensor cu_seqlens;          // int32 [S + 1] on the device: varlen flash attention (CUDA)
  int64_t max_seqlen = 0;     // [tokens]
  KVCache* cache = nullptr;   // null in training
};

// Virtual keys and values that every query of a layer attends to before the sequence (prefix
// tuning): stored as a KV cache stores them (keys not rotated again), as if `tokens()` tokens
// came first, so the sequence's positions start after them.
class AttentionPrefix : public torch::nn::Module {
 public:
  Tensor key, value;  // [kv_heads, tokens, head_dim], float32 (cast to the compute dtype)
  int64_t tokens() const { return key.size(1); }
};

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& cfg, const torch::TensorOptions& options);
  Tensor forward(const Tensor& x, const LayerContext& ctx, size_t layer_index);
  // Registered as submodule "prefix" (parameters `self_attn.prefix.*`, in the layer's unit).
  void set_prefix(std::shared_ptr<AttentionPrefix> prefix);
  const std::shared_ptr<AttentionPrefix>& prefix() const { return prefix_; }
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t num_heads_, num_kv_heads_, head_dim_;
  std::shared_ptr<AttentionPrefix> prefix_;
};
TORCH_MODULE(Attention);

class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(const ModelConfig& cfg, const torch::TensorOptions& options);
  Tensor forward(const Tensor& x);  // down(silu(gate(x)) * up(x))
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& cfg, size_t index, const torch::TensorOptions& options);
  Tensor forward(const Tensor& hidden, const LayerContext& ctx);
  size_t index() const { return index_; }
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MLP mlp{nullptr};

 private:
  size_t index_;
};
TORCH_MODULE(DecoderLayer);

// `model.*` in HF naming: embeddings, decoder layers, final norm.
class BackboneImpl : public torch::nn::Module {
 public:
  BackboneImpl(const ModelConfig& cfg, const torch::TensorOptions& options);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Backbone);

// The parameters of one sharding unit: the embeddings, a decoder layer, or the head.
struct ParameterUnit {
  std::string name;  // "model.embed_tokens", "model.layers.3", "head"
  // Full HF names (adapter parameters under their linear's name), in module order. Frozen ones
  // have requires_grad false.
  std::vector<std::pair<std::string, Tensor>> params;
  bool trainable() const;  // any parameter requires grad
};

enum class UnitKind { embeddings, layer, head };

// One unit's step of a forward pass, as a UnitRunner sees it. `run` maps the unit's input
// (ids for the embeddings, hidden states otherwise) to its output reading the parameters as they
// are when it runs, so a runner may gather them first and call `run` again in backward.
struct UnitCall {
  UnitKind kind = UnitKind::layer;
  size_t unit = 0;           // index into parameter_units()
  std::vector<size_t> uses;  // units whose parameters `run` reads (a tied head: head + embeddings)
  std::function<Tensor(const Tensor& input)> run;
};

class CausalLM : public torch::nn::Module {
 public:
  // Runs one unit (embeddings, a decoder layer, the head) on its input. Replace it to wrap
  // units (sharded gather, activation checkpointing); it must return what `call.run(input)`
  // returns.
  using UnitRunner = std::function<Tensor(const UnitCall& call, const Tensor& input)>;

  // Parameters are allocated with `options` (dtype, device; kMeta for no memory) and left
  // uninitialised: call init_weights() or load a checkpoint.
  CausalLM(ModelConfig cfg, const torch::TensorOptions& options = {});

  // logits [B, T, vocab]. With a cache, the ids continue what the cache holds and the cache
  // advances by T.
  Tensor forward(const ForwardInputs& in);
  Tensor forward(const Tensor& ids, KVCache* cache = nullptr);
  // Summed next-token cross-entropy [float32 scalar] of the tokens whose label is not
  // kIgnoreLabel; labels [B, T] int64 are already shifted (the reader's). The head computes
  // logits `chunk_tokens` at a time, so [B * T, vocab] never exists at once.
  Tensor loss(const ForwardInputs& in, const Tensor& labels, int64_t chunk_tokens = 4096);
  static constexpr int64_t kIgnoreLabel = -100;
  // Evaluation: float32 [2] = {summed cross-entropy, correctly predicted tokens}, no gradients.
  Tensor eval_stats(const ForwardInputs& in, const Tensor& labels, int64_t chunk_tokens = 4096);

  void set_unit_runner(UnitRunner runner);  // null restores the plain one
  const ModelConfig& config() const { return cfg_; }
  const RotaryEmbedding& rope() const { return rope_; }

  size_t num_layers() const { return layers_.size(); }
  // Virtual tokens of the attention prefixes (prefix tuning); 0 without.
  int64_t prefix_tokens() const;
  DecoderLayer& layer(size_t i) { return layers_.at(i); }
  Backbone& backbone() { return backbone_; }
  Linear& lm_head() { return lm_head_; }  // empty holder when embeddings are tied

  // The seven projections of every layer, by HF module name ("model.layers.0.mlp.up_proj").
  std::vector<std::pair<std::string, Linear>> named_linears();
  Linear find_linear(const std::string& name);  // throws ftune::Error naming close matches

  // The HF checkpoint tensors in HF order (no adapter parameters); the tied head is absent.
  std::vector<std::pair<std::string, Tensor>> base_parameters();
  // Units for sharding, grouped by unit_of(): "model.embed_tokens", "model.layers.<i>" each,
  // and "head" (model.norm, plus lm_head when untied; a tied head lives in the embedding unit).
  // Every parameter of the model (adapters too) is in exactly one unit.
  std::vector<ParameterUnit> parameter_units();
  size_t head_unit() const { return layers_.size() + 1; }  // index of "head" in parameter_units()

  // HF's initialisation: normal(0, initializer_range) for matrices, ones for norms, zero
  // biases; deterministic for a seed (drawn on the CPU in float32, then copied).
  void init_weights(uint64_t seed);

 private:
  std::shared_ptr<const LayerContext> make_context(const ForwardInputs& in,
                                                   at::ScalarType dtype) const;
  // Embeddings and every layer through the runner; returns the last layer's output [B, T, H].
  Tensor run_body(const ForwardInputs& in);
  // The head unit (final norm, then `head`) through the runner.
  Tensor run_head(const Tensor& hidden, std::function<Tensor(const Tensor& normed)> head);
  const Tensor& head_weight();  // lm_head's, or the tied embeddings'

  ModelConfig cfg_;
  RotaryEmbedding rope_;
  Backbone backbone_{nullptr};
  Linear lm_head_{nullptr};
  std::vector<DecoderLayer> layers_;
  UnitRunner runner_;
};

}  // namespace ftune::model
