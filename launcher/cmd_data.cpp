// `ftune data ...`: the data tool. Codec commands (encode/decode) live in cmd_data_codec.cpp.
#include "launcher/commands.h"

namespace ftune {

void register_data_codec_commands(CLI::App* data, cli::CommandSet& commands);
void register_data_tokenize_command(CLI::App* data, cli::CommandSet& commands);  // cmd_data_tokenize.cpp
void register_data_shard_commands(CLI::App* data, cli::CommandSet& commands);  // cmd_data_shards.cpp

void register_data_commands(CLI::App& root, cli::CommandSet& commands) {
  CLI::App* data = cli::CommandSet::group(&root, "data", "pre-tokenize corpora and inspect token shards");
  register_data_codec_commands(data, commands);
  register_data_tokenize_command(data, commands);
  register_data_shard_commands(data, commands);
}

}  // namespace ftune
