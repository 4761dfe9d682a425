// `ftune data tokenize`: JSONL/text corpora -> HDF5 token shards (data/pipeline/pipeline.h).
#include <iostream>
#include <memory>

#include "data/pipeline/pipeline.h"
#include "launcher/commands.h"

namespace ftune {

void register_data_tokenize_command(CLI::App* data, cli::CommandSet& commands) {
  // Owned by the run closure, which lives as long as the flags CLI11 binds to it.
  auto cfg = std::make_shared<data::TokenizeConfig>();
  cli::Command& cmd = commands.add(data, "tokenize", "tokenize JSONL or text corpora into token shards");
  cli::add_section(cmd.app, cmd.sections, "tokenize", *cfg, cli::ShortFlags::yes);
  cmd.run = [cfg] {
    data::TokenizeSummary summary = data::run_tokenize(*cfg, FTUNE_VERSION, std::cerr);
    std::cout << data::format_summary(summary, *cfg);
    return 0;
  };
}

}  // namespace ftune
