// safetensors files and Hugging Face checkpoints, without LibTorch.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section; offsets are relative to the data section. Reading is zero-copy through
// a read-only mmap; `read_range` reads only the requested bytes (pread), so a rank can load its
// slice of a tensor without touching the rest of the file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint/posix_file.h"

namespace ftune::st {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);                 // [bytes per element]
const char* dtype_name(DType dtype);            // "BF16"
DType parse_dtype(const std::string& name);     // throws ftune::Error naming the bad dtype

// Headers beyond this are refused before parsing (the Python `safetensors` library uses the
// same limit), so a corrupt length prefix cannot make us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // [bytes] offset in the data section
  uint64_t end = 0;    // [bytes] one past the last byte
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// One .safetensors file, validated on open: header length within the file, valid JSON,
// known dtypes, offsets inside the data section, no overlaps, nbytes == numel * dtype size,
// and the tensors cover the data section exactly. Every violation throws ftune::Error naming
// the file and the tensor.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // by data offset
  const TensorInfo* find(const std::string& name) const;               // null if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Zero-copy pointer to the tensor's bytes inside the mapping (valid while this object lives).
  const uint8_t* data(const TensorInfo& t) const;
  // Copies bytes [offset, offset + nbytes) of tensor t into dst, reading only those bytes.
  void read_range(const TensorInfo& t, uint64_t offset, uint64_t nbytes, void* dst) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
  detail::UniqueFd fd_;   // kept open for read_range
  detail::Mapping map_;   // whole file, read-only
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;  // [bytes] 8 + header length
};

// Parses and validates a header (the JSON bytes after the length prefix) against a data
// section of `data_size` bytes. Exposed for the fuzz target and tests; `origin` names the
// file in messages.
void parse_header(const std::string& json, uint64_t data_size, const std::string& origin,
                  std::vector<TensorInfo>& tensors, std::map<std::string, std::string>& metadata);

// Validates a whole file held in memory: the 8-byte length prefix (at least 8 bytes, header
// length within the file and under kMaxHeaderBytes), then parse_header on the rest. Returns
// the offset of the data section. SafetensorsFile::open runs it on its mapping; the fuzz target
// runs it on arbitrary bytes.
uint64_t parse_file_bytes(const uint8_t* bytes, uint64_t size, const std::string& origin,
                          std::vector<TensorInfo>& tensors,
                          std::map<std::string, std::string>& metadata);

// A Hugging Face checkpoint directory: `model.safetensors`, or the shards listed in
// `model.safetensors.index.json` (weight_map: tensor -> file). Opening checks that every
// listed shard exists and that each tensor is where the index says.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws ftune::Error if missing
  const SafetensorsFile& file_of(const std::string& name) const;
  // Throws one ftune::Error listing every name of `required` that the checkpoint lacks.
  void require(const std::vector<std::string>& required) const;

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<size_t, const TensorInfo*>> where_;  // name -> (file, info)
};

// A tensor to write: bytes are borrowed and must outlive the write call.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  // numel * dtype size; throws ftune::Error for a negative dimension or a size past 64 bits.
  uint64_t nbytes() const;
};

// Writes one safetensors file (header padded with spaces to 8-byte alignment), atomically:
// temp name, fsync, then rename. Tensors are laid out by element size, largest first (the
// caller's order within a size), so every tensor is aligned to its element size.
void write_file(const std::string& path, const std::vector<TensorView>& tensors,
                const std::map<std::string, std::string>& metadata = {});

// Writes a HF checkpoint into dir (created if missing): one `model.safetensors` when it fits in
// max_shard_bytes, else `model-0000k-of-0000n.safetensors` files (filled greedily in the given
// order; a tensor over the limit gets a shard of its own) plus `model.safetensors.index.json`,
// written last. A single-file write removes a stale index so that it cannot shadow the new file.
void write_checkpoint(const std::string& dir, const std::vector<TensorView>& tensors,
                      uint64_t max_shard_bytes = 5'000'000'000ULL,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// write_checkpoint for tensors produced one shard at a time (a GGUF import dequantises them):
// `specs` give names, dtypes and shapes (data ignored); `make` is called once per shard, in
// order, with that shard's specs and returns views of their bytes in the same order, valid until
// it is called again. Peak memory is one shard's tensors, not the model's.
using ShardMaker = std::function<std::vector<TensorView>(const std::vector<TensorView>& specs)>;
void write_checkpoint_by_shard(const std::string& dir, const std::vector<TensorView>& specs, const ShardMaker& make,
                               uint64_t max_shard_bytes = 5'000'000'000ULL,
                               const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// A sharded HF checkpoint written one shard at a time, for exports that never hold the whole
// model: write_shard(k, ...) writes model-0000k-of-0000n.safetensors (k from 1), finish()
// writes the index last, once every shard is complete.
class ShardedCheckpointWriter {
 public:
  ShardedCheckpointWriter(std::string dir, size_t num_shards,
                          std::map<std::string, std::string> metadata = {{"format", "pt"}});
  void write_shard(size_t k, const std::vector<TensorView>& tensors);
  void finish();

 private:
  std::string dir_;
  size_t num_shards_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::string> weight_map_;
  uint64_t total_ = 0;
};

}  // namespace ftune::st
