// The stages of a `tokenizers` pipeline that ftune supports, as plain values built by the
// tokenizer.json loader: normalizer, pre-tokenizer, decoder and post-processor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/regex.h"

namespace ftune::data::tok {

// A Split/Replace pattern: {"String": ...} matches literally, {"Regex": ...} through PCRE2.
struct Pattern {
  std::string literal;
  std::shared_ptr<const Regex> regex;  // null for a literal pattern

  // f(start, end) for each non-overlapping match, left to right.
  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    if (regex) {
      regex->for_each_match(text, f);
      return;
    }
    if (literal.empty()) return;
    for (size_t at = text.find(literal); at != std::string_view::npos;
         at = text.find(literal, at + literal.size())) {
      f(at, at + literal.size());
    }
  }
};

struct NormalizerStep {
  enum class Kind { prepend, replace, nfc, nfd, nfkc, nfkd } kind;
  std::string content;  // prepended text or replacement
  Pattern pattern;      // replace only
};

class Normalizer {
 public:
  std::vector<NormalizerStep> steps;  // empty: no normalizer
  bool empty() const { return steps.empty(); }
  // Writes the normalized form of `in` to out.
  void apply(std::string_view in, std::string& out) const;
};

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
enum class PrependScheme { always, first, never };

struct PreTokenizerStep {
  enum class Kind { split, byte_level, metaspace } kind;
  // split
  Pattern pattern;
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
  // byte_level
  bool add_prefix_space = false;
  bool use_regex = true;
  // metaspace
  std::string replacement = "\xE2\x96\x81";  // "▁"
  PrependScheme prepend_scheme = PrependScheme::always;
  bool split = true;
};

// Receives each final pre-token ("word") for the model.
class WordSink {
 public:
  virtual void word(std::string_view w) = 0;

 protected:
  ~WordSink() = default;
};

class PreTokenizer {
 public:
  std::vector<PreTokenizerStep> steps;  // empty: the whole piece is one word
  // `at_text_start`: the piece begins at offset 0 of the original text (Metaspace "first").
  void run(std::string_view piece, bool at_text_start, WordSink& sink) const;

 private:
  void run_step(size_t step, std::string_view piece, bool at_start, WordSink& sink) const;
};

struct DecoderStep {
  enum class Kind { byte_level, replace, byte_fallback, fuse, strip, metaspace } kind;
  Pattern pattern;      // replace
  std::string content;  // replace: replacement; strip: the character stripped
  size_t start = 0, stop = 0;                 // strip: [characters]
  std::string replacement = "\xE2\x96\x81";   // metaspace
  PrependScheme prepend_scheme = PrependScheme::always;
};

class Decoder {
 public:
  bool present = false;  // no decoder: tokens are joined with " "
  std::vector<DecoderStep> steps;
  std::string decode(std::vector<std::string> tokens) const;
};

// Ids a post-processor puts around a single sequence when add_special_tokens is set.
struct PostProcessor {
  bool present = false;  // tokenizer.json has a (non-null) post_processor
  std::vector<int32_t> prefix;
  std::vector<int32_t> suffix;
};

// Splits `text` into pieces as NormalizedString::split does, appending (start, end) ranges.
// Empty pieces are not emitted.
void split_pieces(std::string_view text, const Pattern& pattern, bool invert,
                  SplitBehavior behavior, std::vector<std::pair<size_t, size_t>>& out);

}  // namespace ftune::data::tok
