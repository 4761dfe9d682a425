#include "data/tokenizer/pipeline.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <stdexcept>

#include <utf8proc.h>

#include "data/tokenizer/unicode.h"

namespace ftune::data::tok {
namespace {

// GPT-2's pre-tokenization pattern, used by ByteLevel(use_regex=true).
const Regex& gpt2_regex() {
  static const Regex re(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  return re;
}

void replace_all(std::string_view in, const Pattern& pattern, const std::string& content,
                 std::string& out) {
  out.clear();
  size_t prev = 0;
  pattern.for_each_match(in, [&](size_t start, size_t end) {
    out.append(in.substr(prev, start - prev));
    out += content;
    prev = end;
  });
  out.append(in.substr(prev));
}

// Appends Rust's String::from_utf8_lossy(bytes): each maximal invalid subpart becomes U+FFFD.
void append_utf8_lossy(std::string_view bytes, std::string& out) {
  size_t i = 0;
  while (i < bytes.size()) {
    auto b = static_cast<unsigned char>(bytes[i]);
    size_t need = b < 0x80 ? 1 : (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3
                 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
    size_t got = need ? 1 : 0;
    while (got < need && i + got < bytes.size()) {
      auto c = static_cast<unsigned char>(bytes[i + got]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (got == 1) {  // the second byte's range depends on the lead (no overlongs/surrogates)
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
      }
      if (c < lo || c > hi) break;
      ++got;
    }
    if (need != 0 && got == need) {
      out.append(bytes.substr(i, need));
      i += need;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<size_t>(got, 1);
    }
  }
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int hex_value(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

// The byte of a "<0xNN>" token as ByteFallback reads it (u8::from_str_radix, which also
// takes a leading '+'); -1 for any other token.
int byte_fallback_value(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  if (t[3] == '+') return is_hex(t[4]) ? hex_value(t[4]) : -1;
  return is_hex(t[3]) && is_hex(t[4]) ? hex_value(t[3]) * 16 + hex_value(t[4]) : -1;
}

void flush_bytes(std::string& bytes, std::vector<std::string>& out) {
  if (bytes.empty()) return;
  if (find_invalid_utf8(bytes) == std::string::npos) {
    out.push_back(bytes);
  } else {
    for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
  }
  bytes.clear();
}

// ByteLevel: map each token's characters back to bytes (tokens outside the byte alphabet,
// such as added tokens, pass through as UTF-8), then one lossy UTF-8 string.
std::vector<std::string> decode_byte_level(const std::vector<std::string>& tokens) {
  const ByteLevelMap& m = byte_level_map();
  std::string bytes, mapped;
  for (const std::string& t : tokens) {
    mapped.clear();
    bool ok = true;
    for (size_t i = 0; i < t.size() && ok;) {
      uint32_t cp = utf8_next(t, i);
      ok = cp < 324 && m.byte_of[cp] >= 0;
      if (ok) mapped += char(m.byte_of[cp]);
    }
    bytes += ok ? mapped : t;
  }
  std::string text;
  append_utf8_lossy(bytes, text);
  return {std::move(text)};
}

// ByteFallback: runs of <0xNN> tokens become their UTF-8 text, or one U+FFFD per byte when
// the run is not valid UTF-8.
std::vector<std::string> decode_byte_fallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string bytes;
  for (std::string& t : tokens) {
    int v = byte_fallback_value(t);
    if (v >= 0) {
      bytes += char(v);
      continue;
    }
    flush_bytes(bytes, out);
    out.push_back(std::move(t));
  }
  flush_bytes(bytes, out);
  return out;
}

// Strip: up to `start` leading and `stop` trailing `content` characters of one token.
std::string strip_token(const DecoderStep& step, const std::string& t) {
  std::vector<std::pair<size_t, size_t>> chars;  // byte ranges of the characters
  for (size_t i = 0; i < t.size();) {
    size_t b = i;
    utf8_next(t, i);
    chars.emplace_back(b, i);
  }
  auto is_content = [&](size_t k) {
    return std::string_view(t.data() + chars[k].first, chars[k].second - chars[k].first) == step.content;
  };
  size_t start_cut = 0, stop_cut = chars.size();
  for (size_t k = 0; k < std::min(step.start, chars.size()) && is_content(k); ++k) start_cut = k + 1;
  for (size_t k = 0; k < std::min(step.stop, chars.size()) && is_content(chars.size() - 1 - k); ++k) {
    stop_cut = chars.size() - 1 - k;
  }
  if (start_cut >= stop_cut) return "";
  return t.substr(chars[start_cut].first, chars[stop_cut - 1].second - chars[start_cut].first);
}

// Metaspace decoder: the replacement becomes a space, except in the first token, where every
// replacement is dropped unless the prepend scheme is never (as tokenizers does).
std::string metaspace_token(const DecoderStep& step, const std::string& t, bool first) {
  const bool drop = first && step.prepend_scheme != PrependScheme::never;
  std::string r;
  for (size_t i = 0; i < t.size();) {
    size_t b = i;
    utf8_next(t, i);
    std::string_view c(t.data() + b, i - b);
    if (c != step.replacement) {
      r.append(c);
    } else if (!drop) {
      r += ' ';
    }
  }
  return r;
}

std::vector<std::string> decode_step(const DecoderStep& step, std::vector<std::string> tokens) {
  using Kind = DecoderStep::Kind;
  switch (step.kind) {
    case Kind::byte_level:
      return decode_byte_level(tokens);
    case Kind::byte_fallback:
      return decode_byte_fallback(std::move(tokens));
    case Kind::fuse: {
      std::string all;
      for (const std::string& t : tokens) all += t;
      return {std::move(all)};
    }
    case Kind::replace:
    case Kind::strip:
    case Kind::metaspace:
      break;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string r;
    if (step.kind == Kind::replace) {
      replace_all(tokens[i], step.pattern, step.content, r);
    } else if (step.kind == Kind::strip) {
      r = strip_token(step, tokens[i]);
    } else {
      r = metaspace_token(step, tokens[i], i == 0);
    }
    out.push_back(std::move(r));
  }
  return out;
}

// Per-thread buffers for each pre-tokenizer step, so that nested steps do not allocate.
constexpr size_t kMaxSteps = 8;
struct StepScratch {
  std::string prefixed, mapped;
  std::vector<std::pair<size_t, size_t>> ranges;
};
std::array<StepScratch, kMaxSteps>& step_scratch() {
  thread_local std::array<StepScratch, kMaxSteps> scratch;
  return scratch;
}

}  // namespace

namespace {
// Unicode normalization through utf8proc; ASCII text is already in every normal form.
void unicode_normalize(NormalizerStep::Kind kind, std::string& text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) return;
  using Kind = NormalizerStep::Kind;
  int options = UTF8PROC_STABLE;
  options |= (kind == Kind::nfc || kind == Kind::nfkc) ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
  if (kind == Kind::nfkc || kind == Kind::nfkd) options |= UTF8PROC_COMPAT;
  utf8proc_uint8_t* mapped = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    utf8proc_ssize_t(text.size()), &mapped, utf8proc_option_t(options));
  if (n < 0) throw std::runtime_error(std::string("unicode normalization failed: ") + utf8proc_errmsg(n));
  text.assign(reinterpret_cast<const char*>(mapped), size_t(n));
  std::free(mapped);
}
}  // namespace

void Normalizer::apply(std::string_view in, std::string& out) const {
  std::string tmp;
  out.assign(in);
  for (const NormalizerStep& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::prepend:
        if (!out.empty()) out.insert(0, step.content);  // Prepend leaves empty text alone
        break;
      case NormalizerStep::Kind::replace:
        replace_all(out, step.pattern, step.content, tmp);
        out.swap(tmp);
        break;
      default:
        unicode_normalize(step.kind, out);
    }
  }
}

void split_pieces(std::string_view text, const Pattern& pattern, bool invert,
                  SplitBehavior behavior, std::vector<std::pair<size_t, size_t>>& out) {
  struct Event {
    size_t start, end;
    bool is_match;
  };
  // Per-thread buffers: this runs once per piece in the hot loop and returns before recursing.
  thread_local std::vector<Event> events;
  thread_local std::vector<std::pair<size_t, size_t>> pieces;
  events.clear();
  pieces.clear();
  size_t prev = 0;
  pattern.for_each_match(text, [&](size_t start, size_t end) {
    if (prev != start) events.push_back({prev, start, invert});
    events.push_back({start, end, !invert});
    prev = end;
  });
  if (prev != text.size()) events.push_back({prev, text.size(), invert});

  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::isolated:
      for (const Event& e : events) pieces.emplace_back(e.start, e.end);
      break;
    case SplitBehavior::removed:
      for (const Event& e : events) {
        if (!e.is_match) pieces.emplace_back(e.start, e.end);
      }
      break;
    case SplitBehavior::contiguous:
      for (const Event& e : events) {
        if (e.is_match == previous_match && !pieces.empty()) {
          pieces.back().second = e.end;
        } else {
          pieces.emplace_back(e.start, e.end);
        }
        previous_match = e.is_match;
      }
      break;
    case SplitBehavior::merged_with_previous:
      for (const Event& e : events) {
        if (e.is_match && !previous_match && !pieces.empty()) {
          pieces.back().second = e.end;
        } else {
          pieces.emplace_back(e.start, e.end);
        }
        previous_match = e.is_match;
      }
      break;
    case SplitBehavior::merged_with_next:
      for (size_t k = events.size(); k-- > 0;) {
        const Event& e = events[k];
        if (e.is_match && !previous_match && !pieces.empty()) {
          pieces.back().first = e.start;
        } else {
          pieces.emplace_back(e.start, e.end);
        }
        previous_match = e.is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  for (auto p : pieces) {
    if (p.second > p.first) out.push_back(p);
  }
}

void PreTokenizer::run(std::string_view piece, bool at_text_start, WordSink& sink) const {
  if (steps.size() > kMaxSteps) throw std::logic_error("too many pre-tokenizer steps");
  run_step(0, piece, at_text_start, sink);
}

void PreTokenizer::run_step(size_t step, std::string_view piece, bool at_start, WordSink& sink) const {
  if (piece.empty()) return;  // tokenizers drops empty splits after every step
  if (step == steps.size()) {
    sink.word(piece);
    return;
  }
  const PreTokenizerStep& s = steps[step];
  StepScratch& sc = step_scratch()[step];
  using Kind = PreTokenizerStep::Kind;
  if (s.kind == Kind::split) {
    sc.ranges.clear();
    split_pieces(piece, s.pattern, s.invert, s.behavior, sc.ranges);
    for (size_t k = 0; k < sc.ranges.size(); ++k) {
      auto [b, e] = sc.ranges[k];
      run_step(step + 1, piece.substr(b, e - b), at_start && b == 0, sink);
    }
    return;
  }
  if (s.kind == Kind::byte_level) {
    if (s.add_prefix_space && piece[0] != ' ') {
      sc.prefixed.assign(" ");
      sc.prefixed.append(piece);
      piece = sc.prefixed;
    }
    auto emit = [&](std::string_view sub, bool sub_at_start) {
      sc.mapped.clear();
      byte_level_encode(sub, sc.mapped);
      run_step(step + 1, sc.mapped, sub_at_start, sink);
    };
    if (!s.use_regex) {
      emit(piece, at_start);
      return;
    }
    // Stream the matches (Isolated: matches and the gaps between them are all pieces).
    size_t prev = 0;
    gpt2_regex().for_each_match(piece, [&](size_t b, size_t e) {
      if (prev < b) emit(piece.substr(prev, b - prev), at_start && prev == 0);
      if (e > b) emit(piece.substr(b, e - b), at_start && b == 0);
      prev = e;
    });
    if (prev < piece.size()) emit(piece.substr(prev), at_start && prev == 0);
    return;
  }
  // Metaspace: spaces become the replacement, which is prepended per the scheme.
  sc.mapped.clear();
  const bool starts = piece.substr(0, s.replacement.size()) == s.replacement ||
                      (!piece.empty() && piece[0] == ' ');
  if (!starts && (s.prepend_scheme == PrependScheme::always ||
                  (s.prepend_scheme == PrependScheme::first && at_start))) {
    sc.mapped += s.replacement;
  }
  for (char c : piece) {
    if (c == ' ') {
      sc.mapped += s.replacement;
    } else {
      sc.mapped += c;
    }
  }
  if (!s.split) {
    run_step(step + 1, sc.mapped, at_start, sink);
    return;
  }
  sc.ranges.clear();
  Pattern rep{s.replacement, nullptr};
  split_pieces(sc.mapped, rep, false, SplitBehavior::merged_with_next, sc.ranges);
  const std::string_view mapped = sc.mapped;
  for (size_t k = 0; k < sc.ranges.size(); ++k) {
    auto [b, e] = sc.ranges[k];
    run_step(step + 1, mapped.substr(b, e - b), at_start && b == 0, sink);
  }
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  std::string out;
  if (!present) {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  for (const DecoderStep& step : steps) tokens = decode_step(step, std::move(tokens));
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace ftune::data::tok
