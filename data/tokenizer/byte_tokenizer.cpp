#include "data/tokenizer/byte_tokenizer.h"

#include <nlohmann/json.hpp>

namespace ftune::data {
namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else {  // the table stays below U+0144
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

nlohmann::ordered_json added_token(int id, const char* content) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false}, {"special", true}};
}

nlohmann::ordered_json byte_level(bool add_prefix_space) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true},
          {"use_regex", true}};
}

}  // namespace

std::string byte_tokenizer_json() {
  using json = nlohmann::ordered_json;
  // GPT-2's table: printable Latin-1 bytes stand for themselves, the rest map to U+0100 on.
  json vocab = json::object();
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    vocab[utf8(printable ? b : next++)] = b;
  }
  const char* bos = "<|begin_of_text|>";
  json bos_piece = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
  json post = {{"type", "TemplateProcessing"},
               {"single", json::array({bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
               {"pair", json::array({bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
               {"special_tokens", {{bos, {{"id", bos}, {"ids", {256}}, {"tokens", {bos}}}}}}};
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", json::array({added_token(256, bos), added_token(257, "<|end_of_text|>")})},
              {"normalizer", nullptr},
              {"pre_tokenizer", byte_level(false)},
              {"post_processor", post},
              {"decoder", byte_level(true)},
              {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                         {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                         {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                         {"vocab", vocab}, {"merges", json::array()}}}};
  return tok.dump(1) + "\n";
}

std::string byte_tokenizer_config_json() {
  nlohmann::ordered_json cfg = {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|end_of_text|>"}};
  return cfg.dump(1) + "\n";
}

}  // namespace ftune::data
