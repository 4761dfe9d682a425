#include "launcher/commands.h"

namespace ftune {
void register_model_commands(CLI::App&, cli::CommandSet&) {}
}  // namespace ftune
