// Writing GGUF v3 files (layout in gguf.h).
#include <algorithm>
#include <cstring>
#include <functional>

#include "common/error.h"
#include "runtime/checkpoint/gguf.h"

namespace ftune::gguf {
namespace {

// The header is built in memory (a few MB for a 128k vocabulary), then the tensor data streams.
class Bytes {
 public:
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    buf_.insert(buf_.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    buf_.insert(buf_.end(), s.begin(), s.end());
  }
  void pad_to(uint64_t alignment) {
    while (buf_.size() % alignment) buf_.push_back(0);
  }
  const std::vector<uint8_t>& bytes() const { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

void put_scalar(Bytes& b, ValueType t, const Value& v) {
  switch (t) {
    case ValueType::kU8: b.put<uint8_t>(static_cast<uint8_t>(v.u)); break;
    case ValueType::kI8: b.put<int8_t>(static_cast<int8_t>(v.i)); break;
    case ValueType::kU16: b.put<uint16_t>(static_cast<uint16_t>(v.u)); break;
    case ValueType::kI16: b.put<int16_t>(static_cast<int16_t>(v.i)); break;
    case ValueType::kU32: b.put<uint32_t>(static_cast<uint32_t>(v.u)); break;
    case ValueType::kI32: b.put<int32_t>(static_cast<int32_t>(v.i)); break;
    case ValueType::kU64: b.put<uint64_t>(v.u); break;
    case ValueType::kI64: b.put<int64_t>(v.i); break;
    case ValueType::kF32: b.put<float>(static_cast<float>(v.f)); break;
    case ValueType::kF64: b.put<double>(v.f); break;
    case ValueType::kBool: b.put<uint8_t>(v.b ? 1 : 0); break;
    case ValueType::kString: b.put_string(v.s); break;
    case ValueType::kArray: FTUNE_CHECK(false, "nested arrays are not written");
  }
}

void put_value(Bytes& b, const Value& v) {
  b.put<uint32_t>(static_cast<uint32_t>(v.type));
  if (v.type != ValueType::kArray) return put_scalar(b, v.type, v);
  b.put<uint32_t>(static_cast<uint32_t>(v.elem));
  Value e;
  if (v.elem == ValueType::kString) {
    b.put<uint64_t>(v.strings.size());
    for (const auto& s : v.strings) b.put_string(s);
  } else if (v.elem == ValueType::kF32 || v.elem == ValueType::kF64) {
    b.put<uint64_t>(v.floats.size());
    for (double f : v.floats) { e.f = f; put_scalar(b, v.elem, e); }
  } else {
    b.put<uint64_t>(v.ints.size());
    for (int64_t i : v.ints) { e.i = i; e.u = static_cast<uint64_t>(i); e.b = i != 0; put_scalar(b, v.elem, e); }
  }
}

Value scalar(ValueType t) {
  Value v;
  v.type = t;
  return v;
}

}  // namespace

void MetadataOut::add_string(const std::string& key, const std::string& s) {
  Value v = scalar(ValueType::kString);
  v.s = s;
  items.emplace_back(key, std::move(v));
}
void MetadataOut::add_u32(const std::string& key, uint32_t x) {
  Value v = scalar(ValueType::kU32);
  v.u = x;
  v.i = x;
  items.emplace_back(key, v);
}
void MetadataOut::add_i32(const std::string& key, int32_t x) {
  Value v = scalar(ValueType::kI32);
  v.i = x;
  items.emplace_back(key, v);
}
void MetadataOut::add_f32(const std::string& key, float x) {
  Value v = scalar(ValueType::kF32);
  v.f = x;
  items.emplace_back(key, v);
}
void MetadataOut::add_bool(const std::string& key, bool x) {
  Value v = scalar(ValueType::kBool);
  v.b = x;
  items.emplace_back(key, v);
}
void MetadataOut::add_strings(const std::string& key, std::vector<std::string> s) {
  Value v = scalar(ValueType::kArray);
  v.elem = ValueType::kString;
  v.strings = std::move(s);
  items.emplace_back(key, std::move(v));
}
void MetadataOut::add_i32s(const std::string& key, const std::vector<int64_t>& x) {
  Value v = scalar(ValueType::kArray);
  v.elem = ValueType::kI32;
  v.ints = x;
  items.emplace_back(key, std::move(v));
}
void MetadataOut::add_f32s(const std::string& key, const std::vector<double>& x) {
  Value v = scalar(ValueType::kArray);
  v.elem = ValueType::kF32;
  v.floats = x;
  items.emplace_back(key, std::move(v));
}

void write_file(const std::string& path, const MetadataOut& metadata,
                const std::vector<TensorOut>& tensors, uint64_t alignment) {
  write_file_streamed(path, metadata, tensors, [&](size_t k) { return tensors[k].data; }, alignment);
}

void write_file_streamed(const std::string& path, const MetadataOut& metadata, const std::vector<TensorOut>& tensors,
                         const std::function<const void*(size_t)>& bytes_of, uint64_t alignment) {
  FTUNE_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, "alignment must be a power of two");
  MetadataOut md = metadata;
  if (alignment != 32) md.add_u32("general.alignment", static_cast<uint32_t>(alignment));
  Bytes h;
  h.put<uint32_t>(0x46554747);
  h.put<uint32_t>(3);
  h.put<uint64_t>(tensors.size());
  h.put<uint64_t>(md.items.size());
  for (const auto& [key, v] : md.items) {
    h.put_string(key);
    put_value(h, v);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const TensorOut& t : tensors) {
    h.put_string(t.name);
    h.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) h.put<uint64_t>(d);
    h.put<uint32_t>(static_cast<uint32_t>(t.type));
    h.put<uint64_t>(offset);
    offsets.push_back(offset);
    offset = (offset + t.nbytes + alignment - 1) / alignment * alignment;
  }
  h.pad_to(alignment);
  ftune::st::detail::AtomicFile out(path);
  out.write(h.bytes().data(), h.bytes().size());
  static const uint8_t kZeros[64] = {};
  uint64_t written = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    while (written < offsets[k]) {
      const uint64_t n = std::min<uint64_t>(sizeof kZeros, offsets[k] - written);
      out.write(kZeros, n);
      written += n;
    }
    out.write(bytes_of(k), tensors[k].nbytes);
    written += tensors[k].nbytes;
  }
  out.commit();
}

}  // namespace ftune::gguf
