// GGUF -> Hugging Face directory. The tokenizer half is in gguf_tokenizer.cpp.
#include "runtime/gguf_import.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "common/error.h"
#include "common/text.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/gguf_rope.h"
#include "runtime/memory_estimate.h"
#include "runtime/tasks.h"

namespace ftune::model {
namespace fs = std::filesystem;

namespace {

// llama.cpp's per-layer tensor names and their HF counterparts (transformers'
// DENSE_DECODER_RENAMINGS plus the llama norms).
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"attn_q", "self_attn.q_proj"},       {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},       {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},        {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},        {"attn_norm", "input_layernorm"},
    {"ffn_norm", "post_attention_layernorm"},
};
constexpr std::pair<const char*, const char*> kTopNames[] = {
    {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"}};

// The architectures whose tensors and metadata ftune maps (llama.cpp writes Mistral as llama).
constexpr const char* kArchitectures[] = {"llama"};

std::string arch_list() {
  std::string s;
  for (const char* a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a);
  return s;
}

// Splits "blk.12.attn_q.weight" into (layer 12, "attn_q", "weight"); false for other forms.
bool split_layer_name(const std::string& name, std::string& layer, std::string& base, std::string& suffix) {
  static const std::regex re(R"(^(?:blk|model\.layers)\.(\d+)\.([A-Za-z_.]+)\.(weight|bias)$)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return false;
  layer = m[1];
  base = m[2];
  suffix = m[3];
  return true;
}

}  // namespace

std::string hf_tensor_name(const std::string& g) {
  std::string layer, base, suffix;
  if (g.rfind("blk.", 0) == 0 && split_layer_name(g, layer, base, suffix)) {
    for (const auto& [from, to] : kLayerNames)
      if (base == from) return "model.layers." + layer + "." + to + "." + suffix;
    return "";
  }
  for (const auto& [from, to] : kTopNames) {
    if (g == std::string(from) + ".weight") return std::string(to) + ".weight";
  }
  return "";
}

std::string gguf_tensor_name(const std::string& h) {
  std::string layer, base, suffix;
  if (h.rfind("model.layers.", 0) == 0 && split_layer_name(h, layer, base, suffix)) {
    for (const auto& [to, from] : kLayerNames)
      if (base == from) return "blk." + layer + "." + to + "." + suffix;
    return "";
  }
  for (const auto& [to, from] : kTopNames) {
    if (h == std::string(from) + ".weight") return std::string(to) + ".weight";
  }
  return "";
}

void permute_qk_rows(const float* src, float* dst, int64_t rows, int64_t row_elems, int64_t heads,
                     bool to_gguf) {
  FTUNE_CHECK(heads > 0 && rows % (2 * heads) == 0, "q/k rows must split into heads of even size");
  const int64_t head_dim = rows / heads, half = head_dim / 2;
  // HF row h*head_dim + i*half + j sits at GGUF row h*head_dim + 2*j + i (i: which rotary half).
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j) {
        const int64_t hf = h * head_dim + i * half + j, gg = h * head_dim + 2 * j + i;
        const int64_t from = to_gguf ? hf : gg, to = to_gguf ? gg : hf;
        std::copy(src + from * row_elems, src + (from + 1) * row_elems, dst + to * row_elems);
      }
}

ModelConfig gguf_model_config(const gguf::File& f) {
  const std::string arch = f.get_string("general.architecture");
  bool known = false;
  for (const char* a : kArchitectures) known = known || arch == a;
  if (!known)
    throw Error(f.path() + ": general.architecture '" + arch + "' is not supported (ftune imports: " +
                arch_list() + "); convert the original model's HF directory instead");
  const std::string p = arch + ".";
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.num_layers = f.get_int(p + "block_count");
  c.hidden_size = f.get_int(p + "embedding_length");
  c.intermediate_size = f.get_int(p + "feed_forward_length");
  c.num_heads = f.get_int(p + "attention.head_count");
  c.num_kv_heads = f.find_key(p + "attention.head_count_kv") ? f.get_int(p + "attention.head_count_kv") : c.num_heads;
  c.head_dim = f.find_key(p + "attention.key_length") ? f.get_int(p + "attention.key_length")
               : f.find_key(p + "rope.dimension_count") ? f.get_int(p + "rope.dimension_count")
               : c.hidden_size / std::max<int64_t>(c.num_heads, 1);
  c.rms_norm_eps = f.get_float(p + "attention.layer_norm_rms_epsilon");
  c.max_position_embeddings = f.get_int(p + "context_length");
  c.rope.theta = f.find_key(p + "rope.freq_base") ? f.get_float(p + "rope.freq_base") : 10000.0;
  if (f.find_key(p + "vocab_size")) c.vocab_size = f.get_int(p + "vocab_size");
  else if (const gguf::Value* t = f.find_key("tokenizer.ggml.tokens")) c.vocab_size = static_cast<int64_t>(t->count);
  else if (const gguf::TensorInfo* e = f.find("token_embd.weight")) c.vocab_size = static_cast<int64_t>(e->dims.back());
  c.raw = nlohmann::json{{"rope_theta", c.rope.theta}};
  const std::string scaling = f.find_key(p + "rope.scaling.type") ? f.get_string(p + "rope.scaling.type") : "none";
  if (scaling == "linear") {
    c.rope.type = RopeType::kLinear;
    c.rope.factor = f.get_float(p + "rope.scaling.factor");
    c.raw["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope.factor}};
  } else if (scaling != "none") {
    throw Error(f.path() + ": metadata key '" + p + "rope.scaling.type' is '" + scaling +
                "'; ftune imports only none and linear RoPE scaling");
  }
  if (const gguf::TensorInfo* rf = f.find("rope_freqs.weight")) {
    // llama3 scaling lives in this tensor only; find the parameters that reproduce it.
    if (rf->type != gguf::GgmlType::kF32 || rf->dims.size() != 1)
      throw Error(f.path() + ": tensor 'rope_freqs.weight' must be a 1-D F32 tensor");
    std::vector<float> factors(rf->numel());
    gguf::dequantize(rf->type, f.data(*rf), rf->numel(), factors.data());
    const std::optional<RopeConfig> r = infer_llama3_rope(factors, c.rope.theta, c.head_dim);
    if (!r)
      throw Error(f.path() + ": tensor 'rope_freqs.weight' holds RoPE frequency factors that no llama3 "
                  "rope_scaling ftune knows reproduces; import the model's HF directory instead");
    c.rope = *r;
    c.raw["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", r->factor}, {"low_freq_factor", r->low_freq_factor},
                             {"high_freq_factor", r->high_freq_factor},
                             {"original_max_position_embeddings", r->original_max_position_embeddings}};
  }
  c.tie_word_embeddings = f.find("output.weight") == nullptr;
  if (const gguf::Value* v = f.find_key("tokenizer.ggml.bos_token_id")) c.bos_token_id = v->i;
  if (const gguf::Value* v = f.find_key("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {v->i};
  c.validate(f.path());
  return c;
}

namespace {

// One GGUF tensor on its way to the HF directory, checked before any is dequantised.
struct PlannedTensor {
  const gguf::TensorInfo* info;
  std::string name;            // HF name
  std::vector<int64_t> shape;  // HF (row-major) shape
  int64_t qk_heads = 0;        // > 0: q/k rows to un-permute, in this many heads
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Maps and checks every tensor (name, shape against the metadata's config, dequantisable type,
// none missing), so a bad file fails before minutes of work.
std::vector<PlannedTensor> plan_tensors(const gguf::File& f, const ModelConfig& cfg) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (const auto& p : parameter_shapes(cfg)) expected[p.name] = p.shape;
  std::vector<PlannedTensor> out;
  for (const gguf::TensorInfo& t : f.tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // read into the config's rope_scaling
    const std::string name = hf_tensor_name(t.name);
    auto it = expected.find(name);
    if (name.empty() || it == expected.end())
      throw Error(f.path() + ": tensor '" + t.name + "' has no place in a " + cfg.architecture +
                  " with this config (" + std::to_string(cfg.num_layers) + " layers" +
                  (cfg.tie_word_embeddings ? ", tied embeddings" : "") + "); ftune cannot import it");
    if (t.torch_shape() != it->second)
      throw Error(f.path() + ": tensor '" + t.name + "' (" + name + ") has shape " + shape_str(t.torch_shape()) +
                  " but the metadata's config implies " + shape_str(it->second) +
                  "; the file's metadata and tensors disagree");
    const gguf::TypeTraits& tr = gguf::type_traits(t.type);
    if (!tr.dequantizable)
      throw Error(f.path() + ": tensor '" + t.name + "' has type " + tr.name +
                  ", which ftune does not dequantise (supported: " + gguf::dequantizable_type_names() +
                  "); re-quantise the model to one of those with llama.cpp's llama-quantize");
    const bool q = t.name.find(".attn_q.") != std::string::npos;
    const bool k = t.name.find(".attn_k.") != std::string::npos;
    out.push_back({&t, name, it->second, q ? cfg.num_heads : k ? cfg.num_kv_heads : 0});
    expected.erase(it);
  }
  if (!expected.empty()) {
    std::string missing;
    for (const auto& [name, shape] : expected) missing += (missing.empty() ? "" : ", ") + gguf_tensor_name(name);
    throw Error(f.path() + ": missing tensors for the config its metadata describes: " + missing);
  }
  return out;
}

// Dequantises one shard's tensors into HF layout and the stored dtype; the buffers live until
// the next shard.
class ShardBuilder {
 public:
  ShardBuilder(const gguf::File& f, const std::vector<PlannedTensor>& plan, bool bf16) : f_(f), bf16_(bf16) {
    for (const auto& p : plan) by_name_[p.name] = &p;
  }
  std::vector<st::TensorView> operator()(const std::vector<st::TensorView>& specs) {
    f32_.clear();
    bf16_store_.clear();
    std::vector<st::TensorView> views;
    for (const st::TensorView& spec : specs) {
      const PlannedTensor& p = *by_name_.at(spec.name);
      std::vector<float> x(p.info->numel());
      gguf::dequantize(p.info->type, f_.data(*p.info), p.info->numel(), x.data());
      if (p.qk_heads > 0) {
        std::vector<float> hf(x.size());
        permute_qk_rows(x.data(), hf.data(), p.shape[0], p.shape[1], p.qk_heads, /*to_gguf=*/false);
        x.swap(hf);
      }
      st::TensorView v = spec;
      if (bf16_) {
        std::vector<uint16_t> b(x.size());
        for (size_t i = 0; i < x.size(); ++i) b[i] = gguf::float_to_bf16(x[i]);
        bf16_store_.push_back(std::move(b));
        v.data = bf16_store_.back().data();
      } else {
        f32_.push_back(std::move(x));
        v.data = f32_.back().data();
      }
      views.push_back(v);
    }
    return views;
  }

 private:
  const gguf::File& f_;
  bool bf16_;
  std::map<std::string, const PlannedTensor*> by_name_;
  std::vector<std::vector<float>> f32_;  // moved-in buffers keep their data pointers
  std::vector<std::vector<uint16_t>> bf16_store_;
};

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!(out << text) || !out.flush()) throw Error("model import: cannot write " + path.string());
}

}  // namespace

std::string import_gguf(const std::string& path, const ModelImportConfig& ic) {
  if (ic.out.empty()) throw Error("model import: --out DIR is required");
  if (ic.dtype != "float32" && ic.dtype != "bfloat16")
    throw Error("model import: --dtype '" + ic.dtype + "' is not float32 or bfloat16");
  auto f = gguf::File::open(path);
  ModelConfig cfg = gguf_model_config(*f);
  cfg.dtype = ic.dtype;
  // The tokenizer and the tensor plan first: a bad file fails before minutes of dequantising.
  TokenizerFiles tok = gguf_tokenizer_files(*f);
  const std::vector<PlannedTensor> plan = plan_tensors(*f, cfg);
  const bool bf16 = ic.dtype == "bfloat16";
  std::vector<st::TensorView> specs;
  for (const auto& p : plan) specs.push_back({p.name, bf16 ? st::DType::BF16 : st::DType::F32, p.shape, nullptr});
  fs::create_directories(ic.out);
  if (ic.max_shard_mb <= 0) throw Error("model import: --max-shard-mb must be > 0");
  st::write_checkpoint_by_shard(ic.out, specs, ShardBuilder(*f, plan, bf16),
                                static_cast<uint64_t>(ic.max_shard_mb) * 1000 * 1000);
  write_text(fs::path(ic.out) / "tokenizer.json", tok.tokenizer.dump(2) + "\n");
  write_text(fs::path(ic.out) / "tokenizer_config.json", tok.tokenizer_config.dump(2) + "\n");
  // config.json last: a directory with one is taken as complete.
  write_text(fs::path(ic.out) / "config.json", cfg.to_json().dump(2) + "\n");
  return "imported " + path + " -> " + ic.out + " (" + cfg.architecture + ", " +
         with_commas(parameter_count(cfg)) + " parameters, " + ic.dtype + ", " +
         std::to_string(plan.size()) + " tensors, vocabulary " +
         std::to_string(tok.tokenizer["model"]["vocab"].size()) + ")";
}

bool is_gguf_path(const std::string& path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) return true;
  if (!fs::is_regular_file(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

std::string describe_gguf(const std::string& path) {
  auto f = gguf::File::open(path);
  ModelConfig cfg = gguf_model_config(*f);
  std::ostringstream os;
  os << "file:            " << path << " (GGUF v" << f->version() << ", " << f->tensors().size()
     << " tensors, " << f->metadata().size() << " metadata keys)\n";
  if (const gguf::Value* n = f->find_key("general.name"); n && n->type == gguf::ValueType::kString)
    os << "name:            " << n->s << "\n";
  os << describe_config(cfg);
  if (f->find_key("tokenizer.ggml.model"))
    os << "tokenizer:       " << f->get_string("tokenizer.ggml.model")
       << (f->find_key("tokenizer.ggml.pre") ? " (pre " + f->get_string("tokenizer.ggml.pre") + ")" : "")
       << (f->find_key("tokenizer.chat_template") ? ", chat template" : "") << "\n";
  std::map<std::string, std::pair<uint64_t, int64_t>> by_type;  // bytes, tensors
  uint64_t numel = 0;
  for (const auto& t : f->tensors()) {
    auto& row = by_type[gguf::type_traits(t.type).name];
    row.first += t.nbytes;
    row.second += 1;
    if (t.name != "rope_freqs.weight") numel += t.numel();  // config, not a parameter
  }
  os << "weights (from the GGUF header):\n";
  for (const auto& [type, row] : by_type)
    os << "  " << type << ": " << format_bytes(static_cast<double>(row.first)) << " in " << row.second
       << " tensors\n";
  if (static_cast<int64_t>(numel) != parameter_count(cfg))
    os << "  note: the file holds " << with_commas(static_cast<int64_t>(numel))
       << " elements, its metadata implies " << with_commas(parameter_count(cfg)) << "\n";
  os << memory_summary(cfg);
  return os.str();
}

}  // namespace ftune::model
