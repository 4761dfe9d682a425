// Reading, validating and writing single safetensors files. The checkpoint directory layer
// (index.json, shards) is in checkpoint.cpp.
#include "runtime/checkpoint/safetensors.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include <nlohmann/json.hpp>

#include "common/error.h"

// Tensor bytes are written and read as the host holds them; safetensors is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace ftune::st {
namespace {

using nlohmann::json;

// The one place that maps dtypes to their names and sizes.
struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;  // [bytes per element]
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

// JSON nesting a valid header needs: root object > tensor object > shape array. Deeper input is
// refused while parsing, so hostile headers cannot exhaust the stack when the value is freed.
constexpr int kMaxJsonDepth = 8;

const DTypeEntry* lookup_dtype(const std::string& name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

std::string known_dtypes() {
  std::string out;
  for (const auto& e : kDTypes) out += (out.empty() ? "" : ", ") + std::string(e.name);
  return out;
}

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw Error(origin + ": " + what);
}

[[noreturn]] void fail_tensor(const std::string& origin, const std::string& name,
                              const std::string& what) {
  throw Error(origin + ": tensor '" + name + "': " + what);
}

std::string byte_range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

json parse_json(const std::string& text, const std::string& origin) {
  json::parser_callback_t depth_guard = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) {
      fail(origin, "header JSON is nested deeper than " + std::to_string(kMaxJsonDepth) +
                       " levels; not a safetensors header");
    }
    return true;
  };
  try {
    return json::parse(text, depth_guard);
  } catch (const json::exception& e) {
    fail(origin, std::string("header is not valid JSON: ") + e.what());
  }
}

std::map<std::string, std::string> parse_metadata(const json& j, const std::string& origin) {
  if (!j.is_object()) fail(origin, "__metadata__ must be an object of strings, got " + std::string(j.type_name()));
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      fail(origin, "__metadata__ value of '" + key + "' must be a string, got " + value.type_name());
    }
    out[key] = value.get<std::string>();
  }
  return out;
}

std::vector<int64_t> parse_shape(const json& j, const std::string& origin, const std::string& name) {
  if (!j.is_array()) fail_tensor(origin, name, "shape must be an array of integers");
  std::vector<int64_t> shape;
  for (const auto& d : j) {
    const bool ok = d.is_number_unsigned() ||
                    (d.is_number_integer() && d.get<int64_t>() >= 0);
    if (!ok || d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_tensor(origin, name, "shape entries must be non-negative integers, got " + d.dump());
    }
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

// numel * element size of a validated (non-negative) shape; false when it overflows 64 bits.
// The one place that turns dtype and shape into a byte count.
bool shape_nbytes(DType dtype, const std::vector<int64_t>& shape, uint64_t* out) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  *out = n;
  return true;
}

uint64_t expected_nbytes(const TensorInfo& t, const std::string& origin) {
  uint64_t n = 0;
  if (!shape_nbytes(t.dtype, t.shape, &n)) fail_tensor(origin, t.name, "shape is too large: its byte size overflows 64 bits");
  return n;
}

TensorInfo parse_tensor(const std::string& name, const json& j, const std::string& origin) {
  if (!j.is_object()) fail_tensor(origin, name, "entry must be an object, got " + std::string(j.type_name()));
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!j.contains(field)) fail_tensor(origin, name, std::string("missing field '") + field + "'");
  }
  TensorInfo t;
  t.name = name;
  const json& dtype = j.at("dtype");
  if (!dtype.is_string()) fail_tensor(origin, name, "dtype must be a string, got " + dtype.dump());
  const DTypeEntry* entry = lookup_dtype(dtype.get<std::string>());
  if (entry == nullptr) {
    fail_tensor(origin, name, "unknown dtype '" + dtype.get<std::string>() + "' (known: " + known_dtypes() + ")");
  }
  t.dtype = entry->dtype;
  t.shape = parse_shape(j.at("shape"), origin, name);
  const json& offsets = j.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail_tensor(origin, name, "data_offsets must be two non-negative integers [begin, end], got " + offsets.dump());
  }
  t.begin = offsets[0].get<uint64_t>();
  t.end = offsets[1].get<uint64_t>();
  if (t.end < t.begin) {
    fail_tensor(origin, name, "data_offsets " + offsets.dump() + " end before they begin");
  }
  const uint64_t want = expected_nbytes(t, origin);
  if (want != t.nbytes()) {
    fail_tensor(origin, name, "dtype " + std::string(entry->name) + " and shape " + j.at("shape").dump() +
                                  " need " + std::to_string(want) + " bytes, but data_offsets " +
                                  offsets.dump() + " hold " + std::to_string(t.nbytes()));
  }
  return t;
}

// Sorts tensors by offset and checks that they tile [0, data_size) exactly: each begins where
// the previous ended. Anything else is a gap, an overlap or bytes outside the data section.
void check_coverage(std::vector<TensorInfo>& tensors, uint64_t data_size, const std::string& origin) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (const auto& t : tensors) {
    if (t.end > data_size) {
      fail_tensor(origin, t.name, "data_offsets " + byte_range(t.begin, t.end) +
                                      " lie outside the data section of " + std::to_string(data_size) +
                                      " bytes (file truncated or offsets corrupt)");
    }
  }
  uint64_t cursor = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : tensors) {
    if (t.begin < cursor) {
      fail_tensor(origin, t.name, "bytes " + byte_range(t.begin, t.end) + " overlap tensor '" +
                                      prev->name + "' at " + byte_range(prev->begin, prev->end));
    }
    if (t.begin > cursor) {
      fail_tensor(origin, t.name, "gap in the data section: bytes " + byte_range(cursor, t.begin) +
                                      " before this tensor belong to no tensor");
    }
    cursor = t.end;
    if (t.nbytes() > 0) prev = &t;
  }
  if (cursor != data_size) {
    fail(origin, "data section has " + std::to_string(data_size - cursor) + " bytes " +
                     byte_range(cursor, data_size) + " after the last tensor that belong to no tensor");
  }
}

// The writer's checks: a file it writes must pass its own reader.
void check_views(const std::vector<TensorView>& tensors, const std::string& path) {
  std::map<std::string, int> seen;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail(path, "'__metadata__' is reserved and cannot name a tensor");
    if (++seen[t.name] > 1) fail(path, "tensor '" + t.name + "' is given twice");
    uint64_t n = 0;
    try {
      n = t.nbytes();
    } catch (const Error& e) {
      fail(path, e.what());
    }
    if (n > 0 && t.data == nullptr) fail_tensor(path, t.name, "data is null");
  }
}

// Header bytes for tensors in the given order, padded with spaces so that the data section
// starts 8-byte aligned.
std::string build_header(const std::vector<const TensorView*>& order,
                         const std::map<std::string, std::string>& metadata, const std::string& path) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorView* t : order) {
    const uint64_t n = t->nbytes();
    header[t->name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    fail(path, std::string("cannot encode the header (tensor names and metadata must be UTF-8): ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

size_t dtype_size(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.size;
  }
  throw Error("invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

const char* dtype_name(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  throw Error("invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

DType parse_dtype(const std::string& name) {
  const DTypeEntry* e = lookup_dtype(name);
  if (e == nullptr) throw Error("unknown safetensors dtype '" + name + "' (known: " + known_dtypes() + ")");
  return e->dtype;
}

uint64_t TensorView::nbytes() const {
  for (int64_t d : shape) {
    if (d < 0) throw Error("tensor '" + name + "': negative dimension " + std::to_string(d) + " in shape");
  }
  uint64_t n = 0;
  if (!shape_nbytes(dtype, shape, &n)) throw Error("tensor '" + name + "': shape is too large: its byte size overflows 64 bits");
  return n;
}

int64_t TensorInfo::numel() const {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

void parse_header(const std::string& text, uint64_t data_size, const std::string& origin,
                  std::vector<TensorInfo>& tensors, std::map<std::string, std::string>& metadata) {
  tensors.clear();
  metadata.clear();
  const json root = parse_json(text, origin);
  if (!root.is_object()) fail(origin, "header must be a JSON object, got " + std::string(root.type_name()));
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      metadata = parse_metadata(value, origin);
    } else {
      tensors.push_back(parse_tensor(key, value, origin));
    }
  }
  check_coverage(tensors, data_size, origin);
}

uint64_t parse_file_bytes(const uint8_t* bytes, uint64_t size, const std::string& origin,
                          std::vector<TensorInfo>& tensors,
                          std::map<std::string, std::string>& metadata) {
  if (size < 8) {
    fail(origin, "truncated: the file has " + std::to_string(size) +
                     " bytes, but a safetensors file starts with an 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len > size - 8) {
    fail(origin, "header length " + std::to_string(header_len) + " is larger than the file (" +
                     std::to_string(size - 8) + " bytes after the length prefix); the file is "
                     "truncated or not a safetensors file");
  }
  if (header_len > kMaxHeaderBytes) {
    fail(origin, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                     std::to_string(kMaxHeaderBytes) + " bytes");
  }
  const std::string text(reinterpret_cast<const char*>(bytes + 8), header_len);
  parse_header(text, size - 8 - header_len, origin, tensors, metadata);
  return 8 + header_len;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->fd_ = detail::open_for_reading(path);
  f->file_size_ = detail::file_size(f->fd_.get(), path);
  if (f->file_size_ < 8) {
    // Checked here as well because an empty file cannot be mapped.
    std::vector<uint8_t> head(f->file_size_);
    detail::pread_exact(f->fd_.get(), head.data(), head.size(), 0, path);
    parse_file_bytes(head.data(), head.size(), path, f->tensors_, f->metadata_);
  }
  f->map_ = detail::Mapping(f->fd_.get(), f->file_size_, path);
  // Parsing touches only the header's pages; tensor pages fault in when data() is used.
  f->data_start_ = parse_file_bytes(f->map_.data(), f->file_size_, path, f->tensors_, f->metadata_);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* SafetensorsFile::data(const TensorInfo& t) const {
  FTUNE_CHECK(t.end <= file_size_ - data_start_, path_ + ": tensor '" + t.name + "' is not from this file");
  return map_.data() + data_start_ + t.begin;
}

void SafetensorsFile::read_range(const TensorInfo& t, uint64_t offset, uint64_t nbytes, void* dst) const {
  FTUNE_CHECK(t.begin <= t.end && t.end <= file_size_ - data_start_,
              path_ + ": tensor '" + t.name + "' is not from this file");
  if (offset > t.nbytes() || nbytes > t.nbytes() - offset) {
    throw Error(path_ + ": tensor '" + t.name + "': byte range " + byte_range(offset, offset + nbytes) +
                " is outside the tensor's " + std::to_string(t.nbytes()) + " bytes");
  }
  // pread rather than memcpy from the mapping: I/O errors become exceptions instead of SIGBUS,
  // and the kernel reads just these bytes (no fault-around of neighbouring pages).
  detail::pread_exact(fd_.get(), dst, nbytes, data_start_ + t.begin + offset,
                      path_ + ": tensor '" + t.name + "'");
}

void write_file(const std::string& path, const std::vector<TensorView>& tensors,
                const std::map<std::string, std::string>& metadata) {
  check_views(tensors, path);
  // Larger elements first (stable, so the caller's order holds within a size): every tensor
  // then starts at a multiple of its element size, and data() pointers can be used as typed
  // arrays. Python `safetensors` orders by alignment for the same reason.
  std::vector<const TensorView*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TensorView* a, const TensorView* b) {
    return dtype_size(a->dtype) > dtype_size(b->dtype);
  });
  const std::string header = build_header(order, metadata, path);
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));

  detail::AtomicFile out(path);
  out.write(prefix, sizeof prefix);
  out.write(header.data(), header.size());
  for (const TensorView* t : order) out.write(t->data, t->nbytes());
  out.commit();
}

}  // namespace ftune::st
