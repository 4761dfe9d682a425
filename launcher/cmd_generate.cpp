// `ftune generate`: continue a prompt with a model directory and print the new tokens, as text
// when a tokenizer is found (the model directory's or --tokenizer), else as ids.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "launcher/commands.h"
#include "launcher/torch_loader.h"
#include "runtime/tasks.h"

namespace ftune {

namespace {

void print_result(const model::GenerateConfig& cfg, const model::GenerateResult& r) {
  const char* sep = cfg.json ? ", " : " ";
  std::string list;
  for (size_t i = 0; i < r.ids.size(); ++i) list += (i ? sep : "") + std::to_string(r.ids[i]);
  if (cfg.json) {
    // The decoders emit lossy UTF-8 as `tokenizers` does; replace rather than throw regardless.
    const std::string text =
        r.text ? nlohmann::json(*r.text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
               : "null";
    std::cout << "{\"ids\": [" << list << "], \"text\": " << text << "}\n";
    return;
  }
  // A text prompt gets text back; an ids prompt keeps its ids line, with the text after it.
  if (cfg.prompt_ids.empty() && r.text) {  // --prompt or --chat
    std::cout << *r.text << "\n";
    return;
  }
  std::cout << list << "\n";
  if (r.text) std::cout << *r.text << "\n";
}

}  // namespace

void register_generate_command(CLI::App& root, cli::CommandSet& commands) {
  auto cfg = std::make_shared<model::GenerateConfig>();
  cli::Command& cmd = commands.add(&root, "generate", "generate tokens from a model (KV cache)");
  // Few options, typed by hand: `--max-new-tokens` works beside `--generate.max_new_tokens`.
  cli::add_section(cmd.app, cmd.sections, "generate", *cfg, cli::ShortFlags::yes);
  cmd.run = [cfg] {
    print_result(*cfg, torch_api().run_generate(*cfg));
    return 0;
  };
}

}  // namespace ftune
