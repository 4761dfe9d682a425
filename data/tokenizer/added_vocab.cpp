#include "data/tokenizer/added_vocab.h"

#include <algorithm>

#include "data/tokenizer/regex.h"
#include "data/tokenizer/unicode.h"

namespace ftune::data::tok {

void TokenTrie::add(std::string_view s, int32_t value) {
  if (s.empty()) return;
  size_t node = 0;
  for (char ch : s) {
    auto b = static_cast<unsigned char>(ch);
    auto& kids = nodes_[node].kids;
    auto it = std::find_if(kids.begin(), kids.end(), [b](const auto& k) { return k.first == b; });
    if (it != kids.end()) {
      node = size_t(it->second);
    } else {
      kids.emplace_back(b, int32_t(nodes_.size()));
      node = nodes_.size();
      nodes_.emplace_back();
    }
  }
  nodes_[node].value = value;
  first_[static_cast<unsigned char>(s[0])] = true;
}

std::pair<int32_t, size_t> TokenTrie::longest_at(std::string_view text, size_t at) const {
  std::pair<int32_t, size_t> best{-1, 0};
  size_t node = 0;
  for (size_t i = at; i < text.size(); ++i) {
    auto b = static_cast<unsigned char>(text[i]);
    const auto& kids = nodes_[node].kids;
    auto it = std::find_if(kids.begin(), kids.end(), [b](const auto& k) { return k.first == b; });
    if (it == kids.end()) break;
    node = size_t(it->second);
    if (nodes_[node].value >= 0) best = {nodes_[node].value, i + 1 - at};
  }
  return best;
}

void AddedVocab::build(std::vector<AddedToken> tokens,
                       std::unordered_map<int32_t, std::string> normalized_form) {
  tokens_ = std::move(tokens);
  normalized_form_ = std::move(normalized_form);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[t.id] = i;
    by_content_[t.content] = i;
    max_id_ = std::max(max_id_, t.id);
    if (t.special) special_.insert(t.content);
    if (t.normalized) {
      auto it = normalized_form_.find(t.id);
      normalized_.add(it != normalized_form_.end() ? it->second : t.content, int32_t(i));
    } else {
      raw_.add(t.content, int32_t(i));
    }
  }
}

namespace {

// `\w` of Rust's regex crate, which tokenizers' single_word check uses: Alphabetic, marks,
// decimal digits, connector punctuation and the joiners (Alphabetic approximated by L + Nl).
bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  static const Regex word(R"([\p{L}\p{Nl}\p{Nd}\p{M}\p{Pc}\x{200C}\x{200D}])");
  std::string s;
  utf8_append(s, cp);
  size_t b = 0, e = 0;
  return word.find(s, 0, b, e);
}

size_t leading_space(std::string_view s) {  // ^\s* length
  size_t i = 0;
  while (i < s.size()) {
    size_t next = i;
    if (!is_white_space(utf8_next(s, next))) break;
    i = next;
  }
  return i;
}

size_t trailing_space_start(std::string_view s) {  // start of \s*$
  size_t end = s.size();
  while (end > 0) {
    size_t begin = end - 1;
    while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
    size_t probe = begin;
    if (!is_white_space(utf8_next(s, probe))) break;
    end = begin;
  }
  return end;
}

}  // namespace

void AddedVocab::split(std::string_view text, bool normalized, std::vector<Piece>& out) const {
  const TokenTrie& trie = normalized ? normalized_ : raw_;
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.may_start(static_cast<unsigned char>(text[pos]))) {
      ++pos;
      continue;
    }
    auto [index, len] = trie.longest_at(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[size_t(index)];
    size_t start = pos, stop = pos + len;
    pos = stop;  // the search goes on after the match (not after rstrip), as aho-corasick's does
    if (tok.single_word) {
      bool start_ok = start == 0 || !is_word_char(utf8_prev(text, start));
      size_t after = stop;
      bool stop_ok = stop == text.size() || !is_word_char(utf8_next(text, after));
      if (!start_ok || !stop_ok) continue;
    }
    if (tok.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (tok.rstrip) stop += leading_space(text.substr(stop));
    if (start_offset < start) out.push_back(Piece{start_offset, start, -1});
    out.push_back(Piece{start, stop, tok.id});
    start_offset = stop;
  }
  if (start_offset != text.size() || text.empty()) out.push_back(Piece{start_offset, text.size(), -1});
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocab::by_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

const std::string* AddedVocab::decode_form(int32_t id) const {
  auto n = normalized_form_.find(id);
  if (n != normalized_form_.end()) return &n->second;
  const AddedToken* t = by_id(id);
  return t ? &t->content : nullptr;
}

}  // namespace ftune::data::tok
