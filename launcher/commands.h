// The ftune subcommands, each registered by its own file so main stays thin.
#pragma once

#include "launcher/cli/config.h"
#include "runtime/train/train_config.h"

namespace ftune {

// Builds the whole command tree on root (--config, --version, every subcommand): used by main
// and by the test that walks every flag.
void build_cli(CLI::App& root, cli::CommandSet& commands);

void register_model_commands(CLI::App& root, cli::CommandSet& commands);     // cmd_model.cpp
void register_generate_command(CLI::App& root, cli::CommandSet& commands);   // cmd_generate.cpp
void register_data_commands(CLI::App& root, cli::CommandSet& commands);      // cmd_data.cpp
void register_train_command(CLI::App& root, cli::CommandSet& commands);      // cmd_train.cpp
// The sections of `ftune train` (model, method, lora, data, train, optim, schedule) on cmd;
// `ftune slurm submit` takes them too. cfg outlives cmd.
void add_train_sections(cli::Command& cmd, train::TrainConfig* cfg);     // cmd_train.cpp
void register_merge_command(CLI::App& root, cli::CommandSet& commands);      // cmd_train.cpp
void register_launch_command(CLI::App& root, cli::CommandSet& commands);     // cmd_launch.cpp
void register_slurm_commands(CLI::App& root, cli::CommandSet& commands);     // cmd_slurm.cpp
void register_plan_command(CLI::App& root, cli::CommandSet& commands);       // cmd_plan.cpp

}  // namespace ftune
