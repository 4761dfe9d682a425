// How one sharding unit's parameters lie in its flat buffer, and which part of it each shard
// owns. Torch-free arithmetic: the engine allocates by it, the loader reads checkpoint byte
// ranges by it, and the checkpoint writer names slices by it.
//
// Parameters are laid end to end in the order given; the buffer is padded to a multiple of the
// shard count so every shard owns the same number of elements, [s * shard_numel, (s + 1) *
// shard_numel). A shard's slice may start or end inside a tensor and may span several.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ftune::sharding {

struct FlatEntry {
  std::string name;            // full HF name
  std::vector<int64_t> shape;
  int64_t numel = 0;
  int64_t offset = 0;          // [elements] in the flat buffer
};

// A run of elements of one tensor inside one shard's slice.
struct FlatPiece {
  size_t entry = 0;            // index into entries()
  int64_t entry_offset = 0;    // [elements] into the tensor (row-major)
  int64_t shard_offset = 0;    // [elements] into the shard's slice
  int64_t count = 0;           // [elements]
};

class FlatLayout {
 public:
  FlatLayout() = default;
  FlatLayout(const std::vector<std::pair<std::string, std::vector<int64_t>>>& params, int shards);

  const std::vector<FlatEntry>& entries() const { return entries_; }
  int shards() const { return shards_; }
  int64_t numel() const { return numel_; }                  // [elements] without padding
  int64_t padded_numel() const { return shard_numel_ * shards_; }
  int64_t shard_numel() const { return shard_numel_; }     // [elements] per shard
  // The tensor runs inside shard s's slice, in flat order; padding is in no piece.
  std::vector<FlatPiece> pieces(int shard) const;

 private:
  std::vector<FlatEntry> entries_;
  int shards_ = 1;
  int64_t numel_ = 0;
  int64_t shard_numel_ = 0;
};

}  // namespace ftune::sharding
