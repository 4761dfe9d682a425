// `ftune generate`: continue a prompt with a model directory and print the new token ids.
#include <iostream>
#include <memory>

#include "launcher/commands.h"
#include "runtime/tasks.h"

namespace ftune {

void register_generate_command(CLI::App& root, cli::CommandSet& commands) {
  auto cfg = std::make_shared<model::GenerateConfig>();
  cli::Command& cmd = commands.add(&root, "generate", "generate tokens from a model (KV cache)");
  // Few options, typed by hand: `--max-new-tokens` works beside `--generate.max_new_tokens`.
  cli::add_section(cmd.app, cmd.sections, "generate", *cfg, cli::ShortFlags::yes);
  cmd.run = [cfg] {
    std::vector<int64_t> ids = model::run_generate(*cfg);
    const char* sep = cfg->json ? ", " : " ";
    std::string list;
    for (size_t i = 0; i < ids.size(); ++i) list += (i ? sep : "") + std::to_string(ids[i]);
    // Text stays null until a tokenizer can decode the ids.
    if (cfg->json) std::cout << "{\"ids\": [" << list << "], \"text\": null}\n";
    else std::cout << list << "\n";
    return 0;
  };
}

}  // namespace ftune
