// Hugging Face-compatible tokenizers, no LibTorch: loads `tokenizer.json` (and
// `tokenizer_config.json` beside it for special tokens and the chat template) and encodes and
// decodes exactly as the `tokenizers` library does, for byte-level BPE (Llama 3, Qwen2, GPT-2)
// and SentencePiece-style BPE with byte fallback (Llama 2, Mistral).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ftune::data {

// The files that make up a tokenizer beside tokenizer.json, in the order they are copied:
// tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja and
// chat_template.json (transformers >= 4.50 keeps the chat template in those two). Every place
// that copies a tokenizer (model init, save_model, exports) copies all that exist.
const std::vector<std::string>& tokenizer_file_names();

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding one. Throws ftune::Error naming the
  // file and the unsupported or malformed part (e.g. a WordPiece or Unigram model).
  static std::shared_ptr<const Tokenizer> load(const std::string& path);
  // The same from the files' bytes (tests and the fuzzer): `config_json` null means no
  // tokenizer_config.json; `name` stands for the file in messages and is what path() returns.
  static std::shared_ptr<const Tokenizer> from_json(const std::string& tokenizer_json, const std::string* config_json,
                                                    const std::string& name);
  ~Tokenizer();

  // As `tokenizers`' encode(text, add_special_tokens=...): added/special tokens in the text are
  // matched as whole tokens where the reference matches them. Thread-safe (const). `text` must
  // be valid UTF-8 (ftune::Error otherwise, as Python strings always are).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // Appends to `out` (no per-call allocation once `out` has capacity).
  void encode_into(std::string_view text, bool add_special_tokens, std::vector<int32_t>& out) const;
  // As `tokenizers`' decode(ids, skip_special_tokens=...). Ids out of range throw ftune::Error.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  int32_t vocab_size() const;  // including added tokens: max id + 1
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;

  // From tokenizer_config.json (falling back to the post-processor's template).
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;
  const std::string& bos_token() const;  // "" when none
  const std::string& eos_token() const;
  const std::string& chat_template() const;  // "" when the config has none

  // SHA-256 (hex) of the tokenizer.json bytes: written into every token shard and compared
  // when a run reads shards, so shards from another tokenizer are refused.
  const std::string& hash() const;
  const std::string& path() const;  // the tokenizer.json that was loaded

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ftune::data
