// Helpers shared by the safetensors tests: hand-made files and error capture.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>

#include "common/error.h"
#include "tests/support/test_support.h"

namespace ftune::st::testing {

// The 8-byte little-endian header length prefix.
inline std::string le64(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file assembled by hand, so that tests can build every kind of broken file.
inline void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  ftune::test::write_file(path, le64(header.size()) + header + data);
}

// The ftune::Error message `fn` throws, or a test failure when it throws nothing.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ftune::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an ftune::Error";
  return "";
}

}  // namespace ftune::st::testing
