// `ftune model import FILE.gguf --out DIR`: a GGUF file (llama.cpp) to a Hugging Face model
// directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json), torch-free.
// `ftune model info FILE.gguf` describes the file through the same mapping.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "runtime/checkpoint/gguf.h"
#include "runtime/model/config.h"

namespace ftune::model {

struct ModelImportConfig {
  std::string out;
  std::string dtype = "float32";  // float32 | bfloat16
  int64_t max_shard_mb = 5000;    // [MB] per safetensors shard; also bounds the import's memory

  template <class F>
  void fields(F&& f) {
    f("out", out, "model directory to write (created if missing)");
    f("dtype", dtype, "stored dtype of the weights: float32 or bfloat16");
    f("max_shard_mb", max_shard_mb, "largest safetensors shard [MB]; tensors are dequantised one "
                                    "shard at a time, so this bounds the memory used");
  }
};

// Reads the file, dequantises every tensor, undoes llama.cpp's q/k row permutation, and writes
// the HF directory. Returns a one-line summary. Unsupported architectures, tensor types and
// tokenizer models throw ftune::Error naming the file and the key or tensor.
std::string import_gguf(const std::string& path, const ModelImportConfig& cfg);

// The HF config a GGUF's metadata describes (tie_word_embeddings when it has no output.weight).
ModelConfig gguf_model_config(const gguf::File& file);

// tokenizer.json and tokenizer_config.json rebuilt from tokenizer.ggml.* (gguf_tokenizer.cpp).
struct TokenizerFiles {
  nlohmann::json tokenizer;
  nlohmann::json tokenizer_config;
};
TokenizerFiles gguf_tokenizer_files(const gguf::File& file);

// The HF name of a llama.cpp tensor name ("blk.3.attn_q.weight" ->
// "model.layers.3.self_attn.q_proj.weight"); "" when ftune has no mapping for it.
std::string hf_tensor_name(const std::string& gguf_name);
// The inverse, for export; "" when the HF name has no llama.cpp counterpart.
std::string gguf_tensor_name(const std::string& hf_name);

// llama.cpp's converter interleaves the two rotary halves of each head's rows of q_proj and
// k_proj. rows_hf_from_gguf writes HF row order from GGUF row order (import); with
// to_gguf = true the opposite (export). `row_elems` values per row, `heads` heads.
void permute_qk_rows(const float* src, float* dst, int64_t rows, int64_t row_elems, int64_t heads,
                     bool to_gguf);

// `model info FILE.gguf`: the architecture, shapes and parameter counts as for a directory, plus
// the file's tensor types.
std::string describe_gguf(const std::string& path);
// A path `model info` treats as GGUF: a regular file whose first bytes are "GGUF", or any path
// ending in .gguf (so a broken one gets the GGUF reader's message).
bool is_gguf_path(const std::string& path);

}  // namespace ftune::model
