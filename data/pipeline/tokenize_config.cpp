#include "data/pipeline/tokenize_config.h"

#include <algorithm>

#include "common/error.h"

namespace ftune::data {
namespace {

void check_choice(const std::string& key, const std::string& value, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : " | ") + a;
  throw Error("tokenize." + key + ": '" + value + "' is not one of " + list);
}

}  // namespace

void validate(const TokenizeConfig& cfg) {
  if (cfg.inputs.empty()) throw Error("tokenize.inputs: give at least one input file or glob (--inputs a.jsonl ...)");
  if (cfg.output.empty()) throw Error("tokenize.output: give the shard directory to write (--output DIR)");
  if (cfg.tokenizer.empty()) throw Error("tokenize.tokenizer: give a tokenizer.json or its directory (--tokenizer PATH)");
  check_choice("format", cfg.format, {"text", "instruction", "chat"});
  check_choice("txt_mode", cfg.txt_mode, {"line", "file"});
  check_choice("too_long", cfg.too_long, {"truncate", "reject"});
  check_choice("on_error", cfg.on_error, {"fail", "skip"});
  if (cfg.max_tokens < 0) throw Error("tokenize.max_tokens must be >= 0 (0: no limit)");
  if (cfg.threads < 0) throw Error("tokenize.threads must be >= 0 (0: one per core)");
  if (cfg.tokens_per_shard <= 0) throw Error("tokenize.tokens_per_shard must be positive");
  if (cfg.max_messages < 0) throw Error("tokenize.max_messages must be >= 0");
  if (cfg.item_bytes <= 0) throw Error("tokenize.item_bytes must be positive (default 134217728, 128 MiB)");
}

}  // namespace ftune::data
