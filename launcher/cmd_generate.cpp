#include "launcher/commands.h"

namespace ftune {
void register_generate_command(CLI::App&, cli::CommandSet&) {}
}  // namespace ftune
