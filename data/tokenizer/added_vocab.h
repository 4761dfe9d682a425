// Added and special tokens (`added_tokens` in tokenizer.json), matched in the text as
// `tokenizers`' AddedVocabulary does: leftmost-longest, honouring single_word, lstrip, rstrip,
// and matching `normalized` tokens against the normalized text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ftune::data::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// A byte trie over token strings with leftmost-longest search.
class TokenTrie {
 public:
  void add(std::string_view s, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  // Longest token starting at `at`: its value and length, or value -1.
  std::pair<int32_t, size_t> longest_at(std::string_view text, size_t at) const;
  bool may_start(unsigned char b) const { return first_[b]; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> kids;  // byte -> node index
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_[256] = {};
};

// One piece of a split text: an added token (id >= 0) or text to process further.
struct Piece {
  size_t start, end;  // [bytes] into the split text
  int32_t id;         // -1 for plain text
};

class AddedVocab {
 public:
  // `normalized_form` holds each normalized token's content after the normalizer (the
  // tokenizers `normalized_cache`), used both for matching and for decoding.
  void build(std::vector<AddedToken> tokens, std::unordered_map<int32_t, std::string> normalized_form);

  // Splits `text` on the tokens of one class (normalized or not), appending to out.
  void split(std::string_view text, bool normalized, std::vector<Piece>& out) const;
  bool has(bool normalized) const { return !(normalized ? normalized_ : raw_).empty(); }

  const AddedToken* by_id(int32_t id) const;
  const AddedToken* by_content(std::string_view content) const;
  // The string a decoder sees for an added token id (normalized form when there is one).
  const std::string* decode_form(int32_t id) const;
  bool is_special_content(const std::string& s) const { return special_.count(s) != 0; }
  int32_t max_id() const { return max_id_; }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  std::unordered_map<int32_t, std::string> normalized_form_;
  std::unordered_set<std::string> special_;
  TokenTrie raw_, normalized_;  // values index tokens_
  int32_t max_id_ = -1;
};

}  // namespace ftune::data::tok
