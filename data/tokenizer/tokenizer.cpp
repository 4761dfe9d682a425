// Encode and decode: the AddedVocabulary split, normalizer, pre-tokenizer and BPE model in the
// order `tokenizers`' encode runs them; decode through the configured decoder.
#include "data/tokenizer/tokenizer.h"

#include <stdexcept>

#include "common/error.h"
#include "data/tokenizer/tokenizer_impl.h"
#include "data/tokenizer/unicode.h"

namespace ftune::data {
namespace {

// Feeds each pre-token to the BPE model.
class ModelSink final : public tok::WordSink {
 public:
  ModelSink(const tok::BpeModel& model, std::vector<int32_t>& out) : model_(model), out_(out) {}
  void word(std::string_view w) override { model_.tokenize(w, out_); }

 private:
  const tok::BpeModel& model_;
  std::vector<int32_t>& out_;
};

// Normalizes one text piece that holds no raw-matched added token, splits it on the
// normalized added tokens and pre-tokenizes and encodes the rest.
void encode_piece(const Tokenizer::Impl& impl, std::string_view piece, bool at_text_start,
                  std::vector<int32_t>& out) {
  thread_local std::string normalized;
  thread_local std::vector<tok::Piece> pieces;
  std::string_view text = piece;
  if (!impl.normalizer.empty()) {
    impl.normalizer.apply(piece, normalized);
    text = normalized;
  }
  ModelSink sink(*impl.model, out);
  if (!impl.added.has(true)) {
    impl.pre_tokenizer.run(text, at_text_start, sink);
    return;
  }
  // `pieces` is shared with nothing below this point (the pre-tokenizer has its own buffers).
  const size_t first = pieces.size();
  impl.added.split(text, true, pieces);
  for (size_t k = first; k < pieces.size(); ++k) {
    const tok::Piece p = pieces[k];
    if (p.id >= 0) {
      out.push_back(p.id);
    } else {
      impl.pre_tokenizer.run(text.substr(p.start, p.end - p.start), at_text_start && p.start == 0, sink);
    }
  }
  pieces.resize(first);
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& path) {
  return std::shared_ptr<const Tokenizer>(new Tokenizer(load_tokenizer_impl(path)));
}

std::shared_ptr<const Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json, const std::string* config_json,
                                                      const std::string& name) {
  return std::shared_ptr<const Tokenizer>(new Tokenizer(tokenizer_impl_from_json(tokenizer_json, config_json, name)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  encode_into(text, add_special_tokens, ids);
  return ids;
}

void Tokenizer::encode_into(std::string_view text, bool add_special_tokens,
                            std::vector<int32_t>& out) const {
  const Impl& impl = *impl_;
  size_t bad = tok::find_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    throw Error("tokenizer input is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
  }
  if (add_special_tokens) out.insert(out.end(), impl.post.prefix.begin(), impl.post.prefix.end());
  // The model and the pipeline report what the file got wrong only once a text needs it (an
  // unk_token missing from the vocabulary, a regex over PCRE2's match limit); name the file.
  try {
    if (!impl.added.has(false)) {
      encode_piece(impl, text, true, out);
    } else {
      thread_local std::vector<tok::Piece> pieces;
      pieces.clear();
      impl.added.split(text, false, pieces);
      for (const tok::Piece& p : pieces) {
        if (p.id >= 0) {
          out.push_back(p.id);
        } else if (p.end > p.start) {
          encode_piece(impl, text.substr(p.start, p.end - p.start), p.start == 0, out);
        }
      }
    }
  } catch (const Error&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw Error(impl.path + ": " + e.what());
  } catch (const std::runtime_error& e) {
    throw Error(impl.path + ": " + e.what());
  }
  if (add_special_tokens) out.insert(out.end(), impl.post.suffix.begin(), impl.post.suffix.end());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    const std::string* token = impl.added.decode_form(id);
    if (token == nullptr && id >= 0 && id <= impl.model->max_id() && !impl.model->id_to_token(id).empty()) {
      token = &impl.model->id_to_token(id);
    }
    // tokenizers skips unknown ids silently; ftune refuses them, since they mean the ids
    // came from another tokenizer.
    if (token == nullptr) {
      throw Error("token id " + std::to_string(id) + " at position " + std::to_string(i) +
                  " is out of range for tokenizer " + impl.path + " (vocabulary size " +
                  std::to_string(impl.vocab_size) + ")");
    }
    if (skip_special_tokens && impl.added.is_special_content(*token)) continue;
    tokens.push_back(*token);
  }
  return impl.decoder.decode(std::move(tokens));
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  return impl_->token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const tok::AddedToken* a = impl_->added.by_id(id)) return a->content;
  return impl_->model->id_to_token(id);
}

bool Tokenizer::is_special(int32_t id) const {
  const tok::AddedToken* a = impl_->added.by_id(id);
  return a != nullptr && a->special;
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
std::optional<int32_t> Tokenizer::pad_id() const { return impl_->pad_id; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::hash() const { return impl_->hash; }
const std::string& Tokenizer::path() const { return impl_->path; }

}  // namespace ftune::data
