// `ftune data encode` / `ftune data decode`: tokenizer round trips for debugging and scripts.
#include "launcher/commands.h"

namespace ftune {
void register_data_codec_commands(CLI::App*, cli::CommandSet&) {}
}  // namespace ftune
