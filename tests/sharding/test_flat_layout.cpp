// The flat layout: offsets end to end, equal padded shards, and pieces that cover every element
// exactly once across shards, cutting tensors where slices end.
#include <gtest/gtest.h>

#include "sharding/flat_layout.h"

namespace ftune::sharding {
namespace {

TEST(FlatLayout, PiecesCoverEveryElementOnceAcrossShards) {
  FlatLayout l({{"a", {3, 5}}, {"b", {7}}, {"c", {2, 2}}}, 4);  // 26 elements
  EXPECT_EQ(l.numel(), 26);
  EXPECT_EQ(l.shard_numel(), 7);
  EXPECT_EQ(l.padded_numel(), 28);
  EXPECT_EQ(l.entries()[1].offset, 15);
  std::vector<int> seen(26, 0);
  for (int s = 0; s < 4; ++s) {
    int64_t expect_offset = 0;
    for (const auto& p : l.pieces(s)) {
      EXPECT_EQ(p.shard_offset, expect_offset);  // pieces are contiguous within the slice
      expect_offset += p.count;
      for (int64_t i = 0; i < p.count; ++i) ++seen[l.entries()[p.entry].offset + p.entry_offset + i];
    }
    EXPECT_EQ(expect_offset, s < 3 ? 7 : 5);  // the last slice ends in 2 elements of padding
  }
  for (int n : seen) EXPECT_EQ(n, 1);
  // Shard 2 is [14, 21): the last element of a, then the first six of b.
  auto p2 = l.pieces(2);
  ASSERT_EQ(p2.size(), 2u);
  EXPECT_EQ(p2[0].entry, 0u);
  EXPECT_EQ(p2[0].entry_offset, 14);
  EXPECT_EQ(p2[0].count, 1);
  EXPECT_EQ(p2[1].entry, 1u);
  EXPECT_EQ(p2[1].count, 6);
}

TEST(FlatLayout, OneShardHoldsEverythingWithoutPadding) {
  FlatLayout l({{"w", {4, 4}}}, 1);
  EXPECT_EQ(l.padded_numel(), 16);
  ASSERT_EQ(l.pieces(0).size(), 1u);
  EXPECT_EQ(l.pieces(0)[0].count, 16);
}

}  // namespace
}  // namespace ftune::sharding
