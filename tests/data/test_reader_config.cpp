// ReaderConfig registers as `--data.*` flags and TOML keys, and validates cross-field rules.
#include "data/reader/reader_config.h"
#include "launcher/cli/config.h"

#include "common/error.h"

#include <gtest/gtest.h>

namespace ftune::test {
namespace {

TEST(ReaderConfigFlags, EveryFieldIsADataFlag) {
  CLI::App app;
  cli::SectionList sections;
  data::ReaderConfig cfg;
  cli::add_section(&app, sections, "data", cfg);
  app.parse(std::vector<std::string>{"--data.shards=/s", "--data.seq_len=4096", "--data.packing=pack",
                                     "--data.mask_doc_boundary=false", "--data.val_fraction=0.05"});
  EXPECT_EQ(cfg.shards, "/s");
  EXPECT_EQ(cfg.seq_len, 4096);
  EXPECT_EQ(cfg.packing, "pack");
  EXPECT_FALSE(cfg.mask_doc_boundary);
  EXPECT_DOUBLE_EQ(cfg.val_fraction, 0.05);
  std::string toml = sections.dump_toml();
  EXPECT_NE(toml.find("global_batch = 8"), std::string::npos) << toml;
}

TEST(ReaderConfigFlags, ValidationNamesTheKey) {
  auto message = [](const data::ReaderConfig& cfg, int world) {
    try {
      cfg.validate(world);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  data::ReaderConfig cfg;
  cfg.packing = "bin";
  EXPECT_NE(message(cfg, 1).find("data.packing"), std::string::npos);
  cfg = {};
  cfg.val_fraction = 0.1;
  cfg.val_shards = "/v";
  EXPECT_NE(message(cfg, 1).find("data.val_fraction"), std::string::npos);
  cfg = {};
  cfg.global_batch = 6;
  EXPECT_NE(message(cfg, 4).find("multiple of 4"), std::string::npos);
  EXPECT_EQ(message(cfg, 3), "");
}

}  // namespace
}  // namespace ftune::test
