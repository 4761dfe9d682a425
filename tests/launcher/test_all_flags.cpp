// Walks the real ftune command tree: every flag is registered once, documented, and every
// dotted flag is a key of the command's dumped config (so a resolved config is complete).
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "launcher/commands.h"

namespace {

std::string path_of(const CLI::App* app) {
  std::string p;
  for (; app != nullptr && app->get_parent() != nullptr; app = app->get_parent())
    p = app->get_name() + (p.empty() ? "" : " " + p);
  return p;
}

TEST(AllFlags, EveryLeafFlagIsUniqueDocumentedAndDumped) {
  CLI::App root{"ftune", "ftune"};
  ftune::cli::CommandSet commands;
  ftune::build_cli(root, commands);
  ASSERT_GE(commands.all().size(), 8u) << "model init/info, generate, data encode/decode/tokenize/inspect/verify";
  for (const auto& cmd : commands.all()) {
    std::string where = path_of(cmd->app);
    std::set<std::string> names;
    std::string dump = cmd->sections.dump_toml();
    for (const CLI::Option* opt : cmd->app->get_options()) {
      for (const auto& n : opt->get_lnames()) EXPECT_TRUE(names.insert(n).second) << where << ": --" << n;
      if (opt->get_name() == "--help" || opt->get_name() == "--dump-config") continue;
      EXPECT_FALSE(opt->get_description().empty()) << where << ": " << opt->get_name() << " has no help";
      for (const auto& n : opt->get_lnames()) {
        auto dot = n.find('.');
        if (dot == std::string::npos) continue;
        std::string section = "[" + n.substr(0, dot) + "]\n", key = "\n" + n.substr(dot + 1) + " = ";
        auto at = dump.find(section);
        ASSERT_NE(at, std::string::npos) << where << ": --" << n << " has no [section] in the dump";
        EXPECT_NE(dump.find(key, at), std::string::npos) << where << ": --" << n << " missing from the dump";
      }
    }
  }
}

}  // namespace
