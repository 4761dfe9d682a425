// `ftune model export --format gguf`: a Hugging Face llama directory to a GGUF file llama.cpp
// loads, torch-free. The inverse of gguf_import.cpp: HF names to llama.cpp names, q/k rows
// permuted back to llama.cpp's rotary layout, metadata under llama.* and tokenizer.ggml.*.
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/gguf_export.h"
#include "runtime/gguf_import.h"
#include "runtime/gguf_rope.h"

namespace ftune::model {
namespace fs = std::filesystem;

namespace {

struct ExportType {
  const char* name;
  gguf::GgmlType type;
  uint32_t file_type;  // llama.cpp's LLAMA_FTYPE_*
};
constexpr ExportType kExportTypes[] = {{"f32", gguf::GgmlType::kF32, 0},
                                       {"f16", gguf::GgmlType::kF16, 1},
                                       {"bf16", gguf::GgmlType::kBF16, 32},
                                       {"q8_0", gguf::GgmlType::kQ8_0, 7}};

const ExportType& export_type(const std::string& name) {
  for (const auto& t : kExportTypes)
    if (name == t.name) return t;
  throw Error("model export: --dtype '" + name + "' is not one of f32, f16, bf16, q8_0");
}

// A tensor of the checkpoint as float32 values, whatever its stored dtype.
std::vector<float> to_float(const st::SafetensorsFile& f, const st::TensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  const uint8_t* p = f.data(t);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t h;
    switch (t.dtype) {
      case st::DType::F32: std::memcpy(&out[i], p + 4 * i, 4); break;
      case st::DType::BF16: std::memcpy(&h, p + 2 * i, 2); out[i] = gguf::bf16_to_float(h); break;
      case st::DType::F16: std::memcpy(&h, p + 2 * i, 2); out[i] = gguf::half_to_float(h); break;
      default:
        throw Error(f.path() + ": tensor '" + t.name + "' is " + st::dtype_name(t.dtype) +
                    "; ftune exports F32, BF16 and F16 weights");
    }
  }
  return out;
}

// The stored bytes of values in `type` (norms and other 1-D tensors stay F32, as llama.cpp's
// converter keeps them; so does any row whose length is not a whole number of Q8_0 blocks).
std::vector<uint8_t> encode(const std::vector<float>& x, gguf::GgmlType type) {
  std::vector<uint8_t> out;
  if (type == gguf::GgmlType::kQ8_0) {
    out.resize(x.size() / 32 * 34);
    gguf::quantize_q8_0(x.data(), x.size(), out.data());
  } else if (type == gguf::GgmlType::kF16 || type == gguf::GgmlType::kBF16) {
    out.resize(x.size() * 2);
    for (size_t i = 0; i < x.size(); ++i) {
      const uint16_t h = type == gguf::GgmlType::kF16 ? gguf::float_to_half(x[i]) : gguf::float_to_bf16(x[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  } else {
    out.resize(x.size() * 4);
    std::memcpy(out.data(), x.data(), out.size());
  }
  return out;
}

void add_model_metadata(gguf::MetadataOut& md, const ModelConfig& c, const std::string& name, uint32_t file_type) {
  md.add_string("general.architecture", "llama");
  md.add_string("general.name", name);
  md.add_u32("general.file_type", file_type);
  if (file_type == 7) md.add_u32("general.quantization_version", 2);
  md.add_u32("llama.block_count", static_cast<uint32_t>(c.num_layers));
  md.add_u32("llama.context_length", static_cast<uint32_t>(c.max_position_embeddings));
  md.add_u32("llama.embedding_length", static_cast<uint32_t>(c.hidden_size));
  md.add_u32("llama.feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  md.add_u32("llama.attention.head_count", static_cast<uint32_t>(c.num_heads));
  md.add_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads));
  md.add_f32("llama.rope.freq_base", static_cast<float>(c.rope.theta));
  md.add_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  md.add_u32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  if (c.head_dim * c.num_heads != c.hidden_size) {
    md.add_u32("llama.attention.key_length", static_cast<uint32_t>(c.head_dim));
    md.add_u32("llama.attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  md.add_u32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (c.rope.type == RopeType::kLinear) {
    md.add_string("llama.rope.scaling.type", "linear");
    md.add_f32("llama.rope.scaling.factor", static_cast<float>(c.rope.factor));
  }
}

void check_exportable(const ModelConfig& c, const std::string& dir) {
  if (c.model_type != "llama")
    throw Error("model export: " + dir + "/config.json has model_type '" + c.model_type +
                "'; ftune exports llama models to GGUF");
  if (c.qkv_bias || c.o_bias || c.mlp_bias)
    throw Error("model export: " + dir + "/config.json has attention or MLP biases, which llama.cpp's "
                "llama architecture does not load");
}

}  // namespace

std::string export_gguf(const ModelExportConfig& ec) {
  if (ec.model.empty()) throw Error("model export: --model DIR is required");
  if (ec.out.empty()) throw Error("model export: --out FILE is required");
  if (ec.format != "gguf") throw Error("model export: --format '" + ec.format + "' is not supported (gguf)");
  const ExportType& et = export_type(ec.dtype);
  const ModelConfig cfg = load_model_dir_config(ec.model);
  check_exportable(cfg, ec.model);
  gguf::MetadataOut md;
  add_model_metadata(md, cfg, fs::path(ec.model).filename().string(), et.file_type);
  add_tokenizer_metadata(md, ec.model, cfg);
  const st::Checkpoint ckpt = st::Checkpoint::open(ec.model);
  // Shapes and types first (the header needs every size), then one tensor converted at a time.
  const std::vector<ParameterShape> params = parameter_shapes(cfg);
  std::vector<gguf::TensorOut> tensors;
  for (const ParameterShape& p : params) {
    if (!ckpt.contains(p.name)) throw Error("model export: " + ec.model + " has no tensor '" + p.name + "'");
    const st::TensorInfo& t = ckpt.info(p.name);
    if (t.shape != p.shape)
      throw Error("model export: tensor '" + p.name + "' does not have the shape config.json implies");
    gguf::GgmlType type = t.shape.size() == 1 ? gguf::GgmlType::kF32 : et.type;
    if (type == gguf::GgmlType::kQ8_0 && t.shape.back() % 32 != 0) type = gguf::GgmlType::kF16;
    const gguf::TypeTraits& tr = gguf::type_traits(type);
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) / tr.block_elems * tr.block_bytes;
    tensors.push_back({gguf_tensor_name(p.name), std::vector<uint64_t>(t.shape.rbegin(), t.shape.rend()), type,
                       nullptr, nbytes});
  }
  // llama3 RoPE scaling travels as llama.cpp's rope_freqs tensor, written last.
  std::vector<float> rope_factors;
  if (cfg.rope.type == RopeType::kLlama3) {
    rope_factors = llama3_rope_factors(cfg.rope, cfg.head_dim);
    tensors.push_back({"rope_freqs.weight", {rope_factors.size()}, gguf::GgmlType::kF32, nullptr,
                       rope_factors.size() * 4});
  }
  std::vector<uint8_t> current;
  gguf::write_file_streamed(ec.out, md, tensors, [&](size_t k) -> const void* {
    if (k == params.size()) return rope_factors.data();
    const std::string& name = params[k].name;
    const st::TensorInfo& t = ckpt.info(name);
    std::vector<float> x = to_float(ckpt.file_of(name), t);
    const bool q = name.find(".q_proj.") != std::string::npos;
    if (q || name.find(".k_proj.") != std::string::npos) {
      std::vector<float> g(x.size());
      permute_qk_rows(x.data(), g.data(), t.shape[0], t.shape[1], q ? cfg.num_heads : cfg.num_kv_heads,
                      /*to_gguf=*/true);
      x.swap(g);
    }
    current = encode(x, tensors[k].type);
    return current.data();
  });
  uint64_t bytes = 0;
  for (const auto& t : tensors) bytes += t.nbytes;
  return "exported " + ec.model + " -> " + ec.out + " (GGUF v3, " + std::to_string(tensors.size()) +
         " tensors, " + ec.dtype + ", " + std::to_string(bytes / 1000000) + " MB of tensor data)";
}

}  // namespace ftune::model
