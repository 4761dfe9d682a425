// PCRE2 (UTF + UCP, JIT) for the Oniguruma patterns in tokenizer.json files.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace ftune::data::tok {

class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message and offset for a bad pattern.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The next match at or after `from` in `text` (valid UTF-8, not re-checked); false when none.
  // Thread-safe: match data and JIT stacks are per thread.
  bool find(std::string_view text, size_t from, size_t& start, size_t& end) const;

  // Calls f(start, end) for every match, advancing past empty matches by one character as
  // Oniguruma's find_iter does.
  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    size_t pos = 0, start = 0, end = 0;
    while (pos <= text.size() && find(text, pos, start, end)) {
      f(start, end);
      if (end > start) {
        pos = end;
      } else {
        if (end >= text.size()) break;
        pos = end + next_char_len(text, end);
      }
    }
  }

  const std::string& pattern() const { return pattern_; }

 private:
  static size_t next_char_len(std::string_view text, size_t at);
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, never null after construction
  bool jit_ = false;
};

}  // namespace ftune::data::tok
