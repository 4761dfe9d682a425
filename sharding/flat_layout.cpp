#include "sharding/flat_layout.h"

#include <algorithm>

#include "common/error.h"

namespace ftune::sharding {

FlatLayout::FlatLayout(const std::vector<std::pair<std::string, std::vector<int64_t>>>& params,
                       int shards)
    : shards_(shards) {
  FTUNE_CHECK(shards >= 1, "a flat layout needs at least one shard");
  for (const auto& [name, shape] : params) {
    int64_t n = 1;
    for (int64_t d : shape) {
      FTUNE_CHECK(d >= 0, "negative dimension in " + name);
      n *= d;
    }
    entries_.push_back({name, shape, n, numel_});
    numel_ += n;
  }
  shard_numel_ = (numel_ + shards - 1) / shards;
}

std::vector<FlatPiece> FlatLayout::pieces(int shard) const {
  FTUNE_CHECK(shard >= 0 && shard < shards_, "shard index out of range");
  const int64_t begin = int64_t(shard) * shard_numel_, end = begin + shard_numel_;
  std::vector<FlatPiece> out;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const FlatEntry& e = entries_[i];
    const int64_t lo = std::max(begin, e.offset), hi = std::min(end, e.offset + e.numel);
    if (lo < hi) out.push_back({i, lo - e.offset, lo - begin, hi - lo});
  }
  return out;
}

}  // namespace ftune::sharding
