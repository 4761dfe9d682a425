// GGUF files (llama.cpp's model format), read and written without LibTorch.
//
// Layout (v2 and v3, little-endian): magic "GGUF", u32 version, u64 tensor count, u64 metadata
// count; metadata as (string key, u32 type, value) with strings as u64 length + bytes and arrays
// as (u32 element type, u64 count, elements); tensor infos as (string name, u32 n_dims,
// u64 dims[n_dims] fastest-varying first, u32 ggml type, u64 offset); then padding to
// `general.alignment` (default 32) and the data section, where each offset points (relative to
// its start, a multiple of the alignment). v1 (u32 counts) is refused.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint/gguf_quant.h"
#include "runtime/checkpoint/posix_file.h"

namespace ftune::gguf {

class Cursor;  // gguf.cpp: bounds-checked reads of the header

// Metadata value types, as numbered in the file.
enum class ValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Scalars live in `i`/`u`/`f`/`b`/`s` by their kind; arrays keep their
// elements in `strings`, `ints` (every integer and bool kind, widened) or `floats`. Arrays of
// arrays are read past (their contents are not kept): no tokenizer or model key uses them.
struct Value {
  ValueType type = ValueType::kU8;
  ValueType elem = ValueType::kU8;  // arrays only
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<std::string> strings;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  uint64_t count = 0;  // arrays: number of elements in the file

  bool is_integer() const;
  bool is_float() const { return type == ValueType::kF32 || type == ValueType::kF64; }
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] varies fastest (a row's length)
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // [bytes] from the start of the data section
  uint64_t nbytes = 0;  // [bytes] from the type's block layout
  uint64_t numel() const;
  // Row-major shape as PyTorch and safetensors write it: dims reversed.
  std::vector<int64_t> torch_shape() const;
};

// A GGUF file opened read-only and mmapped whole; nothing is copied but the metadata. Opening
// validates everything a reader relies on: magic, version, every length and count against the
// bytes left, known value and tensor types, alignment, tensor byte ranges inside the data
// section and disjoint. Each violation throws ftune::Error naming the file, the key or tensor,
// and what to change.
class File {
 public:
  static std::unique_ptr<File> open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, Value>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order
  const TensorInfo* find(const std::string& name) const;              // null if absent
  const Value* find_key(const std::string& key) const;                // null if absent
  // Zero-copy pointer to the tensor's bytes inside the mapping (valid while this lives).
  const uint8_t* data(const TensorInfo& t) const;

  // Typed metadata reads; a missing key or another type throws ftune::Error naming both.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;    // any integer type
  double get_float(const std::string& key) const;   // f32/f64, or an integer
  bool get_bool(const std::string& key, bool dflt) const;  // dflt when absent

  // Parses bytes already in memory (the mapping); exposed for tests of hostile input.
  void parse(const uint8_t* bytes, uint64_t size);

 private:
  File() = default;
  void parse_metadata(Cursor& c, uint64_t n_kv);
  void parse_tensor_infos(Cursor& c, uint64_t n_tensors);
  void check_layout(uint64_t header_end, uint64_t size);
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_start_ = 0;  // [bytes] from the start of the file
  std::map<std::string, Value> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  const uint8_t* base_ = nullptr;  // the parsed bytes (the mapping's)
  ftune::st::detail::Mapping map_;
};

// --- writing ---------------------------------------------------------------------------------

// A tensor to write: `data` holds nbytes of the given type's blocks, borrowed until write_file
// returns. `dims` in GGUF order (fastest first).
struct TensorOut {
  std::string name;
  std::vector<uint64_t> dims;
  GgmlType type = GgmlType::kF32;
  const void* data = nullptr;
  uint64_t nbytes = 0;
};

// Ordered metadata for writing (GGUF readers see keys in file order; llama.cpp expects
// general.architecture first by convention).
struct MetadataOut {
  std::vector<std::pair<std::string, Value>> items;
  void add_string(const std::string& key, const std::string& v);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_strings(const std::string& key, std::vector<std::string> v);
  void add_i32s(const std::string& key, const std::vector<int64_t>& v);
  void add_f32s(const std::string& key, const std::vector<double>& v);
};

// Writes a GGUF v3 file atomically (temporary file beside it, fsync, rename), tensor data
// aligned to `alignment` (which is also written as general.alignment when not 32).
void write_file(const std::string& path, const MetadataOut& metadata,
                const std::vector<TensorOut>& tensors, uint64_t alignment = 32);
// The same, with each tensor's bytes produced only when it is written: bytes_of(k) returns
// tensors[k].nbytes bytes, valid until the next call (`data` is ignored). An exporter holds one
// converted tensor at a time, not the model.
void write_file_streamed(const std::string& path, const MetadataOut& metadata, const std::vector<TensorOut>& tensors,
                         const std::function<const void*(size_t)>& bytes_of, uint64_t alignment = 32);

}  // namespace ftune::gguf
