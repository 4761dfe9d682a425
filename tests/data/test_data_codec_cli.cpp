// `ftune data encode` / `ftune data decode` through the binary, on a hand-written tokenizer.
#include <gtest/gtest.h>

#include "tests/data/tiny_tokenizer.h"
#include "tests/support/test_support.h"

namespace ftune::data {
namespace {

class DataCodecCli : public ::testing::Test {
 protected:
  void SetUp() override { test::write_file(dir_.file("tokenizer.json"), tiny_byte_level(false).dump()); }
  std::string tok() const { return "--tokenizer " + test::shell_quote(dir_.path()); }
  test::TempDir dir_;
};

TEST_F(DataCodecCli, EncodeThenDecodeRoundTrips) {
  test::write_file(dir_.file("in.jsonl"), "{\"text\": \"the the\"}\n\n{\"text\": \"the<|eot|>\"}\n");
  auto enc = test::run_ftune("data encode " + tok() + " " + dir_.file("in.jsonl"));
  ASSERT_EQ(enc.exit_code, 0) << enc.output;
  EXPECT_EQ(enc.output, "{\"ids\":[83,96,97]}\n{\"ids\":[83,96,98]}\n");
  test::write_file(dir_.file("ids.jsonl"), enc.output);
  auto dec = test::run_ftune("data decode " + tok() + " " + dir_.file("ids.jsonl"));
  ASSERT_EQ(dec.exit_code, 0) << dec.output;
  EXPECT_EQ(dec.output, "{\"text\":\"the the\"}\n{\"text\":\"the<|eot|>\"}\n");
  auto skip = test::run_ftune("data decode --skip-special-tokens " + tok() + " - < " + dir_.file("ids.jsonl"));
  EXPECT_EQ(skip.output, "{\"text\":\"the the\"}\n{\"text\":\"the\"}\n");
}

TEST_F(DataCodecCli, BadLinesNameFileAndLine) {
  test::write_file(dir_.file("bad.jsonl"), "{\"text\": \"ok\"}\n{\"text\": oops}\n");
  auto r = test::run_ftune("data encode " + tok() + " " + dir_.file("bad.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(dir_.file("bad.jsonl") + ":2: not a valid JSON line"), std::string::npos) << r.output;

  test::write_file(dir_.file("wrong.jsonl"), "{\"ids\": [1]}\n");
  r = test::run_ftune("data encode " + tok() + " - < " + dir_.file("wrong.jsonl"));
  EXPECT_NE(r.output.find("<stdin>:1: expected {\"text\": \"...\"}"), std::string::npos) << r.output;

  test::write_file(dir_.file("range.jsonl"), "{\"ids\": [1, 2]}\n{\"ids\": [5, 12345]}\n");
  r = test::run_ftune("data decode " + tok() + " " + dir_.file("range.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(dir_.file("range.jsonl") + ":2: token id 12345 at position 1 is out of range"),
            std::string::npos) << r.output;
}

TEST_F(DataCodecCli, MissingTokenizerIsAnError) {
  auto r = test::run_ftune("data encode - < /dev/null");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--tokenizer is required"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::data
