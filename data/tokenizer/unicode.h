// UTF-8 and byte-level helpers shared by the tokenizer stages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ftune::data::tok {

// Length of the UTF-8 sequence that starts with byte `b` (1 for continuation bytes, so that
// a scan always advances).
inline size_t utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b >> 5) == 0x6) return 2;
  if ((b >> 4) == 0xE) return 3;
  if ((b >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[i] (valid UTF-8 assumed) and advances i past it.
inline uint32_t utf8_next(std::string_view s, size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  size_t n = utf8_len(b);
  if (i + n > s.size()) n = 1;
  uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// The code point that ends just before byte `end`.
inline uint32_t utf8_prev(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return utf8_next(s, i);
}

void utf8_append(std::string& out, uint32_t cp);

// Offset of the first invalid UTF-8 byte, or npos when `s` is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);

// Unicode White_Space (what Rust's `char::is_whitespace` and regex `\s` use).
bool is_white_space(uint32_t cp);

// GPT-2's reversible byte <-> printable character mapping used by ByteLevel.
struct ByteLevelMap {
  char utf8[256][3];      // UTF-8 of the character for each byte, NUL-padded
  uint8_t utf8_len[256];  // 1 or 2 bytes
  int16_t byte_of[324];   // code point -> byte, -1 when the code point is not in the map
};
const ByteLevelMap& byte_level_map();

// Appends the byte-level characters of `raw` to out.
void byte_level_encode(std::string_view raw, std::string& out);

// 64-bit hash for short strings (vocabulary keys, cache keys).
inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  __builtin_memcpy(&v, p, n);
  h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  return h;
}
inline uint64_t hash_bytes(std::string_view s) { return hash_bytes(s.data(), s.size()); }

}  // namespace ftune::data::tok
