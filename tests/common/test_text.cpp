// The shared text helpers behind suggestions and human-readable figures.
#include <gtest/gtest.h>

#include "common/text.h"

TEST(Text, EditDistanceAndClosestMatch) {
  EXPECT_EQ(ftune::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(ftune::edit_distance("", "abc"), 3u);
  EXPECT_EQ(ftune::closest_match("optim.lrr", {"optim.lr", "optim.warmup"}), "optim.lr");
  EXPECT_EQ(ftune::closest_match("zzzzzz", {"optim.lr", "optim.warmup"}), "") << "too far to suggest";
}

TEST(Text, WithCommas) {
  EXPECT_EQ(ftune::with_commas(0), "0");
  EXPECT_EQ(ftune::with_commas(999), "999");
  EXPECT_EQ(ftune::with_commas(1000), "1,000");
  EXPECT_EQ(ftune::with_commas(70553706496), "70,553,706,496");
  EXPECT_EQ(ftune::with_commas(-1234567), "-1,234,567");
  EXPECT_EQ(ftune::with_commas(-123), "-123");
}

TEST(Text, FormatBytesAndSplit) {
  EXPECT_EQ(ftune::format_bytes(512), "512 B");
  EXPECT_EQ(ftune::format_bytes(1.5 * 1024 * 1024 * 1024), "1.50 GiB");
  EXPECT_EQ(ftune::split("a,,b", ','), (std::vector<std::string>{"a", "", "b"}));
}
