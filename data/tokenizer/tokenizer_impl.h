// Internal: the state behind data::Tokenizer, filled by the tokenizer.json loader.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "data/tokenizer/added_vocab.h"
#include "data/tokenizer/bpe.h"
#include "data/tokenizer/pipeline.h"
#include "data/tokenizer/tokenizer.h"

namespace ftune::data {

struct Tokenizer::Impl {
  std::string path;  // the tokenizer.json
  std::string hash;  // SHA-256 hex of its bytes
  tok::Normalizer normalizer;
  tok::PreTokenizer pre_tokenizer;
  std::unique_ptr<tok::BpeModel> model;  // never null once loaded
  tok::AddedVocab added;
  tok::Decoder decoder;
  tok::PostProcessor post;
  int32_t vocab_size = 0;

  // tokenizer_config.json (or the post-processor when the config has no such entry)
  std::string bos_token, eos_token, pad_token, chat_template;
  std::optional<int32_t> bos_id, eos_id, pad_id;

  std::optional<int32_t> token_to_id(std::string_view token) const;
};

// Reads `path` (a tokenizer.json or a directory with one) and the config beside it.
std::unique_ptr<Tokenizer::Impl> load_tokenizer_impl(const std::string& path);
// The same from bytes; `config_json` null: no tokenizer_config.json. `name` stands for the
// file in messages and path().
std::unique_ptr<Tokenizer::Impl> tokenizer_impl_from_json(const std::string& tokenizer_json,
                                                          const std::string* config_json, const std::string& name);

}  // namespace ftune::data
