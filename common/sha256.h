// SHA-256 (FIPS 180-4), small and dependency-free: identifies tokenizer files and shards.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ftune {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> finish();  // the object must not be updated afterwards

 private:
  void compress(const uint8_t* block);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_;
  size_t buffered_ = 0;   // [bytes] in buffer_
  uint64_t total_ = 0;    // [bytes] hashed so far
};

// Lower-case hex digest of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace ftune
