// libFuzzer target for the GGUF reader (scripts/fuzz.sh gguf): arbitrary bytes are parsed as a
// GGUF file (header, metadata key/values, tensor infos, alignment and offsets), then a bounded
// number of elements of every tensor ftune can dequantise is turned into float32. The bytes
// are parsed from an exact-size heap copy rather than a mapping, so that AddressSanitizer sees
// any read past the end. Refusals must be ftune::Errors naming the file; accepted files must
// keep the reader's promises (checked with abort()); anything else aborts.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/checkpoint/gguf.h"

namespace {

using namespace ftune::gguf;

constexpr uint64_t kMaxElems = 4096;  // [elements] dequantised per tensor

// File's constructor is private and parse() needs one: open an empty, valid GGUF (no keys, no
// tensors) once per input and parse the fuzzer's bytes with it.
const std::string& empty_gguf() {
  static const std::string path = [] {
    const char* t = std::getenv("TMPDIR");
    std::string p = std::string(t && *t ? t : "/tmp") + "/ftune-fuzz-gguf-XXXXXX";
    int fd = mkstemp(p.data());
    if (fd < 0) std::abort();
    const uint8_t header[24] = {'G', 'G', 'U', 'F', 3};  // version 3, 0 tensors, 0 keys
    if (write(fd, header, sizeof header) != static_cast<ssize_t>(sizeof header)) std::abort();
    close(fd);
    return p;
  }();
  return path;
}

void check_accepted(const File& f, const uint8_t* buf, size_t size) {
  for (const TensorInfo& t : f.tensors()) {
    const TypeTraits& tr = type_traits(t.type);
    const uint64_t n = t.numel();
    if (n % tr.block_elems != 0 || t.nbytes != n / tr.block_elems * tr.block_bytes) std::abort();
    if (t.offset % f.alignment() != 0) std::abort();
    const uint8_t* p = f.data(t);
    if (p < buf || p > buf + size || t.nbytes > static_cast<uint64_t>(buf + size - p)) std::abort();
    if (f.find(t.name) != &t) std::abort();
    if (!tr.dequantizable) continue;
    const uint64_t m = std::min<uint64_t>(n, kMaxElems) / tr.block_elems * tr.block_elems;
    std::vector<float> out(m);
    dequantize(t.type, p, m, out.data());
  }
  for (const auto& [key, v] : f.metadata()) {
    try {  // typed reads of every key: a wrong type is an ftune::Error, never a crash
      if (v.type == ValueType::kString) (void)f.get_string(key);
      if (v.is_integer()) (void)f.get_int(key);
      if (v.is_float() || v.is_integer()) (void)f.get_float(key);
      (void)f.get_bool(key, false);
    } catch (const ftune::Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> copy(data, data + size);  // exact size: reads past it are ASan reports
  const uint8_t* buf = copy.empty() ? nullptr : copy.data();
  std::unique_ptr<File> f = File::open(empty_gguf());
  try {
    f->parse(buf, size);
  } catch (const ftune::Error& e) {
    if (std::string(e.what()).rfind(empty_gguf() + ": ", 0) != 0) std::abort();  // names the file
    return 0;
  }
  check_accepted(*f, buf, size);
  return 0;
}
