#include "launcher/commands.h"

namespace ftune {

void build_cli(CLI::App& root, cli::CommandSet& commands) {
  root.require_subcommand(1);
  root.set_version_flag("--version", FTUNE_VERSION);
  cli::install_toml_config(root);
  register_model_commands(root, commands);
  register_generate_command(root, commands);
  register_data_commands(root, commands);
  register_train_command(root, commands);
  register_merge_command(root, commands);
  register_launch_command(root, commands);
  register_slurm_commands(root, commands);
  register_plan_command(root, commands);
}

}  // namespace ftune
