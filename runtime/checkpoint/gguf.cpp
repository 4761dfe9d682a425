// Reading and writing GGUF files; the layout is described in gguf.h.
#include "runtime/checkpoint/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF I/O assumes a little-endian host");

namespace ftune::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

}  // namespace

// Reads the header bytes front to back; every read checks the bytes left, so a truncated or
// hostile header ends in a message naming the offset and the field, never a read past the end.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t size, const std::string& path) : p_(p), size_(size), path_(path) {}

  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    const uint64_t n = read<uint64_t>(what + " (length)");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  // An element count that cannot be right: each element takes at least min_bytes.
  void check_count(uint64_t count, uint64_t min_bytes, const std::string& what) const {
    if (count > (size_ - pos_) / std::max<uint64_t>(min_bytes, 1))
      fail(what + ": count " + std::to_string(count) + " is more than the " +
           std::to_string(size_ - pos_) + " bytes left could hold; the file is truncated or corrupt");
  }
  uint64_t pos() const { return pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path_ + ": " + what + " (at byte " + std::to_string(pos_) + " of " +
                std::to_string(size_) + ")");
  }

 private:
  void need(uint64_t n, const std::string& what) const {
    if (n > size_ - pos_)
      fail("truncated header: " + what + " needs " + std::to_string(n) + " bytes, " +
           std::to_string(size_ - pos_) + " left; the file was cut short (re-download or re-export it)");
  }
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

namespace {

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kF64); }

uint64_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::kU8: case ValueType::kI8: case ValueType::kBool: return 1;
    case ValueType::kU16: case ValueType::kI16: return 2;
    case ValueType::kU32: case ValueType::kI32: case ValueType::kF32: return 4;
    case ValueType::kU64: case ValueType::kI64: case ValueType::kF64: return 8;
    case ValueType::kString: case ValueType::kArray: return 8;  // at least the length/header
  }
  return 1;
}

// Reads one scalar of type t into v (strings into v.s).
void read_scalar(Cursor& c, ValueType t, Value& v, const std::string& what) {
  switch (t) {
    case ValueType::kU8: v.u = c.read<uint8_t>(what); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI8: v.i = c.read<int8_t>(what); break;
    case ValueType::kU16: v.u = c.read<uint16_t>(what); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI16: v.i = c.read<int16_t>(what); break;
    case ValueType::kU32: v.u = c.read<uint32_t>(what); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI32: v.i = c.read<int32_t>(what); break;
    case ValueType::kU64: v.u = c.read<uint64_t>(what); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI64: v.i = c.read<int64_t>(what); break;
    case ValueType::kF32: v.f = c.read<float>(what); break;
    case ValueType::kF64: v.f = c.read<double>(what); break;
    case ValueType::kBool: {
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1) c.fail(what + ": bool value " + std::to_string(b) + " is not 0 or 1");
      v.b = b != 0;
      v.i = b;
      break;
    }
    case ValueType::kString: v.s = c.read_string(what); break;
    case ValueType::kArray: c.fail(what + ": nested array where a scalar was expected");
  }
  if (t != ValueType::kU64 && t != ValueType::kF32 && t != ValueType::kF64 && t != ValueType::kString)
    v.u = static_cast<uint64_t>(v.i);
}

Value read_value(Cursor& c, ValueType t, const std::string& what, int depth);

void read_array(Cursor& c, Value& v, const std::string& what, int depth) {
  const uint32_t et = c.read<uint32_t>(what + " (array element type)");
  if (!valid_value_type(et)) c.fail(what + ": unknown array element type " + std::to_string(et));
  v.elem = static_cast<ValueType>(et);
  v.count = c.read<uint64_t>(what + " (array length)");
  c.check_count(v.count, scalar_size(v.elem), what);
  if (v.elem == ValueType::kArray) {
    if (depth > 2) c.fail(what + ": arrays nested more than 3 deep");
    for (uint64_t k = 0; k < v.count; ++k) read_value(c, ValueType::kArray, what, depth + 1);
    return;
  }
  Value e;
  for (uint64_t k = 0; k < v.count; ++k) {
    read_scalar(c, v.elem, e, what);
    if (v.elem == ValueType::kString) v.strings.push_back(std::move(e.s));
    else if (v.elem == ValueType::kF32 || v.elem == ValueType::kF64) v.floats.push_back(e.f);
    else v.ints.push_back(e.i);
  }
}

Value read_value(Cursor& c, ValueType t, const std::string& what, int depth) {
  Value v;
  v.type = t;
  if (t == ValueType::kArray) read_array(c, v, what, depth);
  else read_scalar(c, t, v, what);
  return v;
}

}  // namespace

const char* value_type_name(ValueType t) {
  static const char* kNames[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                 "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? kNames[i] : "?";
}

bool Value::is_integer() const {
  return type != ValueType::kF32 && type != ValueType::kF64 && type != ValueType::kString &&
         type != ValueType::kArray && type != ValueType::kBool;
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  return n;
}

std::vector<int64_t> TensorInfo::torch_shape() const {
  return std::vector<int64_t>(dims.rbegin(), dims.rend());
}

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  auto fd = ftune::st::detail::open_for_reading(path);
  const uint64_t size = ftune::st::detail::file_size(fd.get(), path);
  f->map_ = ftune::st::detail::Mapping(fd.get(), size, path);
  f->parse(f->map_.data(), size);
  return f;
}

void File::parse(const uint8_t* bytes, uint64_t size) {
  Cursor c(bytes, size, path_);
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) {
    std::string got(reinterpret_cast<const char*>(bytes), 4);
    for (char& ch : got) if (ch < 32 || ch > 126) ch = '?';
    throw Error(path_ + ": not a GGUF file: the first 4 bytes are \"" + got +
                "\", a GGUF file starts with \"GGUF\"");
  }
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    throw Error(path_ + ": GGUF version " + std::to_string(version_) +
                " is not supported (ftune reads versions 2 and 3; re-convert the model with a "
                "current llama.cpp convert_hf_to_gguf.py)");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  parse_metadata(c, n_kv);
  parse_tensor_infos(c, n_tensors);
  check_layout(c.pos(), size);
  base_ = bytes;
}

void File::parse_metadata(Cursor& c, uint64_t n_kv) {
  c.check_count(n_kv, 12, "metadata");
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string key = c.read_string("metadata key #" + std::to_string(k));
    const uint32_t t = c.read<uint32_t>("type of key '" + key + "'");
    if (!valid_value_type(t)) c.fail("metadata key '" + key + "': unknown value type " + std::to_string(t));
    Value v = read_value(c, static_cast<ValueType>(t), "metadata key '" + key + "'", 0);
    if (!metadata_.emplace(key, std::move(v)).second) c.fail("metadata key '" + key + "' appears twice");
  }
  if (const Value* a = find_key("general.alignment")) {
    if (!a->is_integer() || a->u == 0 || (a->u & (a->u - 1)) != 0)
      throw Error(path_ + ": metadata key 'general.alignment' must be a power-of-two integer");
    alignment_ = a->u;
  }
}

void File::parse_tensor_infos(Cursor& c, uint64_t n_tensors) {
  c.check_count(n_tensors, 24, "tensor infos");
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.name = c.read_string("tensor name #" + std::to_string(k));
    const std::string what = "tensor '" + t.name + "'";
    const uint32_t nd = c.read<uint32_t>(what + " (dimension count)");
    if (nd == 0 || nd > kMaxDims) c.fail(what + ": " + std::to_string(nd) + " dimensions (1 to 4 allowed)");
    for (uint32_t d = 0; d < nd; ++d) t.dims.push_back(c.read<uint64_t>(what + " (dimension)"));
    const uint32_t type = c.read<uint32_t>(what + " (type)");
    const TypeTraits* tr = type_traits(type);
    if (tr == nullptr)
      c.fail(what + ": unknown ggml type id " + std::to_string(type) +
             "; the file is corrupt or from a newer llama.cpp than ftune knows");
    t.type = tr->type;
    t.offset = c.read<uint64_t>(what + " (offset)");
    uint64_t n = 1;
    for (uint64_t d : t.dims) {
      if (d == 0 || n > std::numeric_limits<uint64_t>::max() / d / tr->block_bytes)
        c.fail(what + ": dimension of 0 or a size past 64 bits");
      n *= d;
    }
    if (t.dims[0] % tr->block_elems != 0)
      c.fail(what + ": row length " + std::to_string(t.dims[0]) + " is not a multiple of " +
             tr->name + "'s block of " + std::to_string(tr->block_elems));
    t.nbytes = n / tr->block_elems * tr->block_bytes;
    if (!index_.emplace(t.name, tensors_.size()).second) c.fail(what + " appears twice");
    tensors_.push_back(std::move(t));
  }
}

// Every tensor's bytes lie inside the data section, aligned, and no two overlap.
void File::check_layout(uint64_t header_end, uint64_t size) {
  data_start_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  if (data_start_ > size && !tensors_.empty())
    throw Error(path_ + ": truncated: the data section would start at byte " +
                std::to_string(data_start_) + " of " + std::to_string(size));
  const uint64_t data_size = size > data_start_ ? size - data_start_ : 0;
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0)
      throw Error(path_ + ": tensor '" + t.name + "': offset " + std::to_string(t.offset) +
                  " is not a multiple of the alignment " + std::to_string(alignment_));
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      throw Error(path_ + ": tensor '" + t.name + "': bytes [" + std::to_string(t.offset) + ", " +
                  std::to_string(t.offset + t.nbytes) + ") of the data section lie past its end (" +
                  std::to_string(data_size) + " bytes): the tensor data is truncated or the offset is wrong");
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const TensorInfo& a = *by_offset[k - 1];
    const TensorInfo& b = *by_offset[k];
    if (a.offset + a.nbytes > b.offset)
      throw Error(path_ + ": tensors '" + a.name + "' (bytes " + std::to_string(a.offset) + "-" +
                  std::to_string(a.offset + a.nbytes) + ") and '" + b.name + "' (from byte " +
                  std::to_string(b.offset) + ") overlap in the data section");
  }
}

const TensorInfo* File::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const Value* File::find_key(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const uint8_t* File::data(const TensorInfo& t) const { return base_ + data_start_ + t.offset; }

namespace {
[[noreturn]] void key_fail(const std::string& path, const std::string& key, const std::string& what) {
  throw Error(path + ": metadata key '" + key + "' " + what);
}
}  // namespace

std::string File::get_string(const std::string& key) const {
  const Value* v = find_key(key);
  if (!v) key_fail(path_, key, "is missing");
  if (v->type != ValueType::kString) key_fail(path_, key, std::string("is ") + value_type_name(v->type) + ", expected a string");
  return v->s;
}

int64_t File::get_int(const std::string& key) const {
  const Value* v = find_key(key);
  if (!v) key_fail(path_, key, "is missing");
  if (!v->is_integer()) key_fail(path_, key, std::string("is ") + value_type_name(v->type) + ", expected an integer");
  return v->i;
}

double File::get_float(const std::string& key) const {
  const Value* v = find_key(key);
  if (!v) key_fail(path_, key, "is missing");
  if (v->is_float()) return v->f;
  if (v->is_integer()) return static_cast<double>(v->i);
  key_fail(path_, key, std::string("is ") + value_type_name(v->type) + ", expected a number");
}

bool File::get_bool(const std::string& key, bool dflt) const {
  const Value* v = find_key(key);
  if (!v) return dflt;
  if (v->type != ValueType::kBool) key_fail(path_, key, std::string("is ") + value_type_name(v->type) + ", expected a bool");
  return v->b;
}

}  // namespace ftune::gguf
