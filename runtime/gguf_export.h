// `ftune model export --model DIR --format gguf --dtype f32|f16|bf16|q8_0 --out FILE`: a Hugging
// Face llama directory to a GGUF file llama.cpp loads (llama.* and tokenizer.ggml.* metadata,
// q/k rows in llama.cpp's rotary layout), written atomically. Torch-free.
#pragma once

#include <string>

#include "runtime/checkpoint/gguf.h"
#include "runtime/model/config.h"

namespace ftune::model {

struct ModelExportConfig {
  std::string model;
  std::string format = "gguf";
  std::string dtype = "f16";  // f32 | f16 | bf16 | q8_0
  std::string out;

  template <class F>
  void fields(F&& f) {
    f("model", model, "HF model directory to export");
    f("format", format, "output format: gguf");
    f("dtype", dtype, "tensor type of the matrices: f32, f16, bf16 or q8_0 (norms stay f32)");
    f("out", out, "file to write (atomically: a temporary beside it, then rename)");
  }
};

// Returns a one-line summary; throws ftune::Error for what GGUF or ftune cannot carry (other
// architectures, biases, tokenizers that are not BPE). llama3 RoPE scaling becomes llama.cpp's
// rope_freqs.weight tensor.
std::string export_gguf(const ModelExportConfig& cfg);

// tokenizer.ggml.* and tokenizer.chat_template from DIR's tokenizer.json and
// tokenizer_config.json (gguf_export_tokenizer.cpp): the inverse of gguf_tokenizer_files.
void add_tokenizer_metadata(gguf::MetadataOut& md, const std::string& dir, const ModelConfig& cfg);

}  // namespace ftune::model
