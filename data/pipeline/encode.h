// Tokenizes a rendered document and builds its loss mask. The whole text is encoded at once
// (so ids equal the reference tokenizer's for the rendered text), then tokens are aligned back
// to byte offsets to mark those overlapping a trained span. BOS/EOS follow the tokenizer's
// post-processor without doubling what the text (e.g. a chat template's BOS) already has.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/pipeline/render.h"
#include "data/pipeline/tokenize_config.h"

namespace ftune::data {

class Tokenizer;

struct EncodedDocument {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;  // one 0/1 per id; empty when every token is trained
  bool truncated = false;
  bool segment_fallback = false;  // tokens could not be aligned: segments encoded one by one
};

// The bytes of every token id, for aligning tokens to the text they came from.
class TokenBytes {
 public:
  // Reads the model type (byte-level or SentencePiece-style) from the tokenizer.json.
  explicit TokenBytes(const Tokenizer& tok);
  bool usable() const { return !bytes_.empty(); }  // false for model types it does not know
  const std::string& operator[](int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  size_t size() const { return bytes_.size(); }

 private:
  std::vector<std::string> bytes_;
};

// [byte offsets into text] where each token starts and ends; false when the tokens' bytes do
// not spell the text (other than spaces the normalizer inserted).
bool align_tokens(const TokenBytes& bytes, const std::string& text, const std::vector<int32_t>& ids,
                  std::vector<std::pair<size_t, size_t>>& spans);

class DocumentEncoder {
 public:
  DocumentEncoder(std::shared_ptr<const Tokenizer> tok, const TokenizeConfig& cfg);
  ~DocumentEncoder();
  // false with `bad` (too_long) when the document is over max_tokens and too_long=reject.
  bool encode(const RenderedDocument& doc, EncodedDocument& out, BadRecord& bad) const;

 private:
  void encode_segments(const RenderedDocument& doc, EncodedDocument& out) const;

  std::shared_ptr<const Tokenizer> tok_;
  TokenizeConfig cfg_;
  std::unique_ptr<TokenBytes> bytes_;
  std::vector<int32_t> prefix_, suffix_;  // what encode(add_special_tokens=true) adds around text
  int32_t eos_ = -1;
};

}  // namespace ftune::data
