#include "data/tokenizer/unicode.h"

#include <algorithm>

namespace ftune::data::tok {

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    size_t len = utf8_len(b);
    if (len == 1 || b == 0xC0 || b == 0xC1 || b > 0xF4 || i + len > n) return i;
    uint32_t cp = len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < len; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (c & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

bool is_white_space(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

namespace {
ByteLevelMap build_byte_level_map() {
  ByteLevelMap m{};
  std::fill(std::begin(m.byte_of), std::end(m.byte_of), int16_t(-1));
  // Printable Latin-1 bytes map to themselves; the rest to 256, 257, ... in byte order.
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    uint32_t cp = printable(b) ? uint32_t(b) : uint32_t(next++);
    std::string s;
    utf8_append(s, cp);
    m.utf8_len[b] = uint8_t(s.size());
    for (size_t k = 0; k < s.size(); ++k) m.utf8[b][k] = s[k];
    m.byte_of[cp] = int16_t(b);
  }
  return m;
}
}  // namespace

const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap map = build_byte_level_map();
  return map;
}

void byte_level_encode(std::string_view raw, std::string& out) {
  const ByteLevelMap& m = byte_level_map();
  for (char c : raw) {
    auto b = static_cast<unsigned char>(c);
    out.append(m.utf8[b], m.utf8_len[b]);
  }
}

}  // namespace ftune::data::tok
