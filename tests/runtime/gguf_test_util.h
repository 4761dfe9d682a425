// A tiny llama GGUF written with ftune's own writer, for import, export and error tests.
#pragma once

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/checkpoint/gguf.h"

namespace ftune::test {

struct TinyGguf {
  int64_t layers = 2, hidden = 64, mlp = 96, heads = 4, kv_heads = 2;
  bool tied = true;
  bool with_tokenizer = true;
  std::string architecture = "llama";
  std::string tokenizer_model = "gpt2";
  std::string pre = "smollm";
  gguf::GgmlType matrix_type = gguf::GgmlType::kF32;

  std::vector<std::string> tokens() const {
    std::vector<std::string> t = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    // GPT-2's byte alphabet: printable bytes are themselves, the rest 256 + n.
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const uint32_t cp = printable ? b : next++;
      std::string s;
      if (cp < 0x80) s += static_cast<char>(cp);
      else { s += static_cast<char>(0xC0 | (cp >> 6)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
      t.push_back(s);
    }
    t.push_back("\xC4\xA0t");  // "Ġt"
    t.push_back("he");
    return t;
  }
  int64_t vocab() const { return static_cast<int64_t>(tokens().size()); }

  // Writes the file; `edit` may change metadata or tensors before writing.
  template <class Edit>
  void write(const std::string& path, Edit edit) const {
    gguf::MetadataOut md;
    md.add_string("general.architecture", architecture);
    md.add_string("general.name", "tiny");
    const std::string a = architecture + ".";
    md.add_u32(a + "block_count", static_cast<uint32_t>(layers));
    md.add_u32(a + "context_length", 256);
    md.add_u32(a + "embedding_length", static_cast<uint32_t>(hidden));
    md.add_u32(a + "feed_forward_length", static_cast<uint32_t>(mlp));
    md.add_u32(a + "attention.head_count", static_cast<uint32_t>(heads));
    md.add_u32(a + "attention.head_count_kv", static_cast<uint32_t>(kv_heads));
    md.add_f32(a + "rope.freq_base", 100000.0f);
    md.add_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    md.add_u32(a + "rope.dimension_count", static_cast<uint32_t>(hidden / heads));
    if (with_tokenizer) {
      md.add_string("tokenizer.ggml.model", tokenizer_model);
      md.add_string("tokenizer.ggml.pre", pre);
      auto toks = tokens();
      std::vector<int64_t> types(toks.size(), 1);
      types[0] = types[1] = types[2] = 3;
      md.add_strings("tokenizer.ggml.tokens", toks);
      md.add_i32s("tokenizer.ggml.token_type", types);
      md.add_strings("tokenizer.ggml.merges", {"\xC4\xA0 t", "h e"});
      md.add_u32("tokenizer.ggml.bos_token_id", 1);
      md.add_u32("tokenizer.ggml.eos_token_id", 2);
      md.add_bool("tokenizer.ggml.add_bos_token", false);
      md.add_string("tokenizer.chat_template",
                    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
    }
    std::vector<gguf::TensorOut> ts;
    store_.clear();
    store_.reserve(64);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    auto add = [&](const std::string& name, std::vector<uint64_t> dims, gguf::GgmlType type) {
      uint64_t n = 1;
      for (auto d : dims) n *= d;
      std::vector<float> x(n);
      for (auto& v : x) v = nd(rng);
      store_.emplace_back();
      if (type == gguf::GgmlType::kQ8_0) {
        store_.back().resize(n / 32 * 34);
        gguf::quantize_q8_0(x.data(), n, store_.back().data());
      } else {
        store_.back().resize(n * 4);
        std::memcpy(store_.back().data(), x.data(), n * 4);
        type = gguf::GgmlType::kF32;
      }
      ts.push_back({name, dims, type, store_.back().data(), store_.back().size()});
    };
    const auto h = static_cast<uint64_t>(hidden), f = static_cast<uint64_t>(mlp);
    const auto hd = static_cast<uint64_t>(hidden / heads), v = static_cast<uint64_t>(vocab());
    add("token_embd.weight", {h, v}, gguf::GgmlType::kQ8_0);
    for (int64_t l = 0; l < layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      add(p + "attn_norm.weight", {h}, gguf::GgmlType::kF32);
      add(p + "attn_q.weight", {h, hd * heads}, matrix_type);
      add(p + "attn_k.weight", {h, hd * kv_heads}, matrix_type);
      add(p + "attn_v.weight", {h, hd * kv_heads}, matrix_type);
      add(p + "attn_output.weight", {hd * heads, h}, matrix_type);
      add(p + "ffn_norm.weight", {h}, gguf::GgmlType::kF32);
      add(p + "ffn_gate.weight", {h, f}, matrix_type);
      add(p + "ffn_up.weight", {h, f}, matrix_type);
      add(p + "ffn_down.weight", {f, h}, matrix_type);
    }
    add("output_norm.weight", {h}, gguf::GgmlType::kF32);
    if (!tied) add("output.weight", {h, v}, matrix_type);
    edit(md, ts);
    gguf::write_file(path, md, ts);
  }
  void write(const std::string& path) const {
    write(path, [](gguf::MetadataOut&, std::vector<gguf::TensorOut>&) {});
  }

 private:
  mutable std::vector<std::vector<uint8_t>> store_;
};

}  // namespace ftune::test
