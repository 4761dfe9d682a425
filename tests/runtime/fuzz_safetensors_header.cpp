// libFuzzer target for the safetensors length prefix and header parser (scripts/fuzz-safetensors.sh
// builds it with clang, ASan and UBSan). Arbitrary bytes must either be refused with an
// ftune::Error or yield tensors that really tile the data section; anything else aborts.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/checkpoint/safetensors.h"

namespace {

// What the reader promises its callers when it accepts a file; checked with abort() so that a
// release build of the target still reports violations.
void check_accepted(const std::vector<ftune::st::TensorInfo>& tensors, uint64_t data_start, size_t size) {
  if (data_start < 8 || data_start > size) std::abort();
  uint64_t cursor = 0;
  for (const auto& t : tensors) {
    if (t.begin != cursor || t.end < t.begin) std::abort();
    uint64_t n = ftune::st::dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) std::abort();
      n *= static_cast<uint64_t>(d);
    }
    if (n != t.nbytes()) std::abort();
    cursor = t.end;
  }
  if (cursor != size - data_start) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<ftune::st::TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  try {
    const uint64_t data_start = ftune::st::parse_file_bytes(data, size, "fuzz-input", tensors, metadata);
    check_accepted(tensors, data_start, size);
  } catch (const ftune::Error& e) {
    // Refusals must say where they come from.
    if (std::string(e.what()).rfind("fuzz-input: ", 0) != 0) std::abort();
  }
  return 0;
}
