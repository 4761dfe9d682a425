#include "data/pipeline/encode.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/tokenizer/tokenizer.h"

namespace ftune::data {
namespace {

// GPT-2's byte-level alphabet: byte b is written as one printable code point; this inverts it.
std::map<uint32_t, unsigned char> byte_level_decoder() {
  std::map<uint32_t, unsigned char> inv;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    inv[printable ? static_cast<uint32_t>(b) : next++] = static_cast<unsigned char>(b);
  }
  return inv;
}

// UTF-8 code points of s; false when it is not valid UTF-8.
bool code_points(const std::string& s, std::vector<uint32_t>& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : (c & (0x7F >> len));
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return true;
}

bool mentions(const nlohmann::json& j, const std::string& type) {
  if (j.is_object()) {
    if (j.value("type", "") == type) return true;
    for (const auto& v : j) if (mentions(v, type)) return true;
  } else if (j.is_array()) {
    for (const auto& v : j) if (mentions(v, type)) return true;
  }
  return false;
}

bool starts_with(const std::vector<int32_t>& ids, const std::vector<int32_t>& prefix) {
  return ids.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), ids.begin());
}
bool ends_with(const std::vector<int32_t>& ids, const std::vector<int32_t>& suffix) {
  return ids.size() >= suffix.size() && std::equal(suffix.rbegin(), suffix.rend(), ids.rbegin());
}

}  // namespace

TokenBytes::TokenBytes(const Tokenizer& tok) {
  std::ifstream in(tok.path(), std::ios::binary);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return;
  const bool byte_level = mentions(j["decoder"], "ByteLevel");
  const bool sentencepiece = !byte_level && (mentions(j["decoder"], "ByteFallback") || mentions(j["decoder"], "Metaspace"));
  if (!byte_level && !sentencepiece) return;  // unknown: the caller encodes segment by segment
  std::map<int32_t, std::string> added;  // added tokens are matched literally, not byte-mapped
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) added[a.value("id", -1)] = a.value("content", "");
  const auto inv = byte_level_decoder();
  bytes_.resize(static_cast<size_t>(tok.vocab_size()));
  std::vector<uint32_t> cps;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    std::string& out = bytes_[static_cast<size_t>(id)];
    auto a = added.find(id);
    std::string piece;
    if (a != added.end()) {
      out = a->second;
      continue;
    }
    try {
      piece = tok.id_to_token(id);
    } catch (const Error&) {
      continue;  // a hole in the vocabulary
    }
    if (byte_level) {
      bool ok = code_points(piece, cps);
      for (uint32_t cp : cps) {
        auto it = inv.find(cp);
        if (it == inv.end()) ok = false;
        else out += static_cast<char>(it->second);
      }
      if (!ok) out = piece;
    } else if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>' &&
               std::isxdigit(static_cast<unsigned char>(piece[3])) && std::isxdigit(static_cast<unsigned char>(piece[4]))) {
      // A byte-fallback piece. std::stoi threw std::invalid_argument past the pipeline for a
      // vocabulary token such as "<0xZZ>", which is plain text (the branch below).
      out = static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16));
    } else {
      for (size_t p = 0; p < piece.size();) {  // U+2581 "▁" stands for a space
        if (piece.compare(p, 3, "\xE2\x96\x81") == 0) out += ' ', p += 3;
        else out += piece[p++];
      }
    }
  }
}

bool align_tokens(const TokenBytes& bytes, const std::string& text, const std::vector<int32_t>& ids,
                  std::vector<std::pair<size_t, size_t>>& spans) {
  spans.clear();
  size_t p = 0;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= bytes.size()) return false;
    size_t start = p;
    for (char b : bytes[id]) {
      if (p < text.size() && text[p] == b) ++p;
      else if (b != ' ') return false;  // only a space may be the normalizer's (prepended "▁")
    }
    spans.emplace_back(start, p);
  }
  return p == text.size();
}

DocumentEncoder::DocumentEncoder(std::shared_ptr<const Tokenizer> tok, const TokenizeConfig& cfg)
    : tok_(std::move(tok)), cfg_(cfg) {
  // What the post-processor adds: compare a probe encoded with and without special tokens.
  std::vector<int32_t> with = tok_->encode("a", true), without = tok_->encode("a", false);
  auto at = std::search(with.begin(), with.end(), without.begin(), without.end());
  if (!without.empty() && at != with.end()) {
    prefix_.assign(with.begin(), at);
    suffix_.assign(at + static_cast<std::ptrdiff_t>(without.size()), with.end());
  }
  if (tok_->eos_id()) eos_ = *tok_->eos_id();
  if (cfg_.format != "text" && cfg_.mask_prompt) bytes_ = std::make_unique<TokenBytes>(*tok_);
}

DocumentEncoder::~DocumentEncoder() = default;

void DocumentEncoder::encode_segments(const RenderedDocument& doc, EncodedDocument& out) const {
  out.ids.clear();
  out.mask.clear();
  size_t pos = 0;
  auto piece = [&](size_t a, size_t b, uint8_t trained) {
    if (a >= b) return;
    tok_->encode_into(std::string_view(doc.text).substr(a, b - a), false, out.ids);
    out.mask.resize(out.ids.size(), trained);
  };
  for (auto [a, b] : doc.trained) {
    piece(pos, a, 0);
    piece(a, b, 1);
    pos = b;
  }
  piece(pos, doc.text.size(), 0);
  out.segment_fallback = true;
}

bool DocumentEncoder::encode(const RenderedDocument& doc, EncodedDocument& out, BadRecord& bad) const {
  out.ids.clear();
  out.mask.clear();
  out.truncated = out.segment_fallback = false;
  tok_->encode_into(doc.text, false, out.ids);
  if (!doc.all_trained) {
    std::vector<std::pair<size_t, size_t>> spans;
    if (bytes_ && bytes_->usable() && align_tokens(*bytes_, doc.text, out.ids, spans)) {
      out.mask.assign(out.ids.size(), 0);
      // A token is trained when it overlaps a trained span (" Paris" after "ASSISTANT:" starts
      // in the prompt's space). Spans and tokens both ascend, so one merge pass does it.
      const auto& tr = doc.trained;
      size_t s = 0;
      for (size_t k = 0; k < spans.size(); ++k) {
        auto [a, b] = spans[k];
        while (s < tr.size() && (tr[s].second <= a || tr[s].first == tr[s].second)) ++s;
        if (s < tr.size()) out.mask[k] = (a == b) ? tr[s].first <= a : tr[s].first < b;
      }
    } else {
      encode_segments(doc, out);
    }
  }
  const bool masked = !out.mask.empty();
  if (!prefix_.empty() && !starts_with(out.ids, prefix_)) {
    out.ids.insert(out.ids.begin(), prefix_.begin(), prefix_.end());
    if (masked) out.mask.insert(out.mask.begin(), prefix_.size(), 0);
  }
  if (!suffix_.empty() && !ends_with(out.ids, suffix_)) {
    out.ids.insert(out.ids.end(), suffix_.begin(), suffix_.end());
    if (masked) out.mask.insert(out.mask.end(), suffix_.size(), 1);
  }
  if (cfg_.append_eos && cfg_.format != "chat" && eos_ >= 0 && (out.ids.empty() || out.ids.back() != eos_)) {
    out.ids.push_back(eos_);
    if (masked) out.mask.push_back(1);  // the model learns to stop after a response
  }
  if (cfg_.max_tokens > 0 && static_cast<int64_t>(out.ids.size()) > cfg_.max_tokens) {
    if (cfg_.too_long == "reject") {
      bad = {SkipReason::kTooLong, std::to_string(out.ids.size()) + " tokens, over max_tokens = " +
                                       std::to_string(cfg_.max_tokens)};
      return false;
    }
    out.ids.resize(static_cast<size_t>(cfg_.max_tokens));
    if (masked) out.mask.resize(out.ids.size());
    out.truncated = true;
  }
  return true;
}

}  // namespace ftune::data
