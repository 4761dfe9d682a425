// ftune: parse, pick the subcommand, run it, return its exit code.
#include <iostream>

#include "common/error.h"
#include "launcher/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ftune: fine-tune Llama-family models on GPU clusters", "ftune"};
  ftune::cli::CommandSet commands;
  ftune::build_cli(app, commands);
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
