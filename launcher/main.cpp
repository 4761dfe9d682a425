// ftune: parse, pick the subcommand, run it, return its exit code.
#include <iostream>

#include "common/error.h"
#include "launcher/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ftune: fine-tune Llama-family models on GPU clusters", "ftune"};
  app.require_subcommand(1);
  app.set_version_flag("--version", FTUNE_VERSION);
  ftune::cli::install_toml_config(app);
  ftune::cli::CommandSet commands;
  ftune::register_model_commands(app, commands);
  ftune::register_generate_command(app, commands);
  ftune::register_data_commands(app, commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return ftune::cli::report_parse_error(app, e);
  } catch (const ftune::Error& e) {
    std::cerr << "ftune: error: " << e.what() << "\n";
    return 2;
  }
  try {
    return commands.run_selected(app);
  } catch (const ftune::Error& e) {
    std::cerr << "ftune: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ftune: internal error: " << e.what() << "\n";
    return 3;
  }
}
