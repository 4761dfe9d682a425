// A tiny hand-written tokenizer.json for tests that must not need Python.
#pragma once

#include <nlohmann/json.hpp>

namespace ftune::data {

inline // A GPT-2-style byte-level tokenizer over printable ASCII and "Ġ" (space), with three merges.
nlohmann::json tiny_byte_level(bool pair_merges) {
  using nlohmann::json;
  json vocab = json::object();
  for (char c = '!'; c <= '~'; ++c) vocab[std::string(1, c)] = c - '!';
  vocab["\xC4\xA0"] = 94;  // "Ġ"
  vocab["\xC4\xA0t"] = 95;
  vocab["he"] = 96;
  vocab["\xC4\xA0the"] = 97;
  json merges = pair_merges ? json::array({json::array({"\xC4\xA0", "t"}), json::array({"h", "e"}),
                                           json::array({"\xC4\xA0t", "he"})})
                            : json::array({"\xC4\xA0 t", "h e", "\xC4\xA0t he"});
  return {{"version", "1.0"},
          {"added_tokens", json::array({{{"id", 98}, {"content", "<|eot|>"}, {"single_word", false},
                                         {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                                         {"special", true}}})},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"dropout", nullptr}, {"unk_token", nullptr}}}};
}

}  // namespace ftune::data
