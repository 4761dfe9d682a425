// The ftune subcommands, each registered by its own file so main stays thin.
#pragma once

#include "launcher/cli/config.h"

namespace ftune {

// Builds the whole command tree on root (--config, --version, every subcommand): used by main
// and by the test that walks every flag.
void build_cli(CLI::App& root, cli::CommandSet& commands);

void register_model_commands(CLI::App& root, cli::CommandSet& commands);     // cmd_model.cpp
void register_generate_command(CLI::App& root, cli::CommandSet& commands);   // cmd_generate.cpp
void register_data_commands(CLI::App& root, cli::CommandSet& commands);      // cmd_data.cpp
void register_train_command(CLI::App& root, cli::CommandSet& commands);      // cmd_train.cpp
void register_merge_command(CLI::App& root, cli::CommandSet& commands);      // cmd_train.cpp
void register_plan_command(CLI::App& root, cli::CommandSet& commands);       // cmd_plan.cpp

}  // namespace ftune
