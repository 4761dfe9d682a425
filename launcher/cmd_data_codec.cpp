// `ftune data encode` / `ftune data decode`: tokenizer round trips for debugging and scripts.
// One JSON object per input line: {"text": ...} -> {"ids": [...]}, {"ids": [...]} -> {"text": ...}.
#include <fstream>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/tokenizer/tokenizer.h"
#include "launcher/commands.h"

namespace ftune {
namespace {

using nlohmann::json;

struct EncodeConfig {
  std::string tokenizer;  // tokenizer.json or its directory
  bool add_special_tokens = false;
  template <class F>
  void fields(F&& f) {
    f("tokenizer", tokenizer, "tokenizer.json, or the directory that holds it");
    f("add_special_tokens", add_special_tokens,
      "add the post-processor's special tokens (e.g. BOS), as tokenizers' add_special_tokens");
  }
};

struct DecodeConfig {
  std::string tokenizer;
  bool skip_special_tokens = false;
  template <class F>
  void fields(F&& f) {
    f("tokenizer", tokenizer, "tokenizer.json, or the directory that holds it");
    f("skip_special_tokens", skip_special_tokens, "leave special tokens out of the text");
  }
};

// Calls on_line(object, where) for each non-blank JSONL line of `input` ("-": stdin);
// `where` is "file:line" for messages.
template <class F>
void for_each_jsonl(const std::string& input, F&& on_line) {
  std::ifstream file;
  if (input != "-") {
    file.open(input);
    if (!file) throw Error(input + ": cannot open the input file");
  }
  std::istream& in = input == "-" ? std::cin : file;
  const std::string name = input == "-" ? "<stdin>" : input;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = name + ":" + std::to_string(number);
    json obj;
    try {
      obj = json::parse(line);
    } catch (const json::parse_error& e) {
      throw Error(where + ": not a valid JSON line: " + e.what());
    }
    if (!obj.is_object()) throw Error(where + ": expected a JSON object");
    try {
      on_line(obj, where);
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
  }
}

std::shared_ptr<const data::Tokenizer> load_tokenizer(const std::string& path) {
  if (path.empty()) throw Error("--tokenizer is required (a tokenizer.json or its directory)");
  // Line-by-line stdin/stdout through iostreams is several times slower while synced with stdio;
  // these commands use nothing else.
  std::ios::sync_with_stdio(false);
  return data::Tokenizer::load(path);
}

int run_encode(const EncodeConfig& cfg, const std::string& input) {
  auto tok = load_tokenizer(cfg.tokenizer);
  std::vector<int32_t> ids;
  std::string out;
  for_each_jsonl(input, [&](const json& obj, const std::string&) {
    auto text = obj.find("text");
    if (text == obj.end() || !text->is_string()) throw Error("expected {\"text\": \"...\"}");
    ids.clear();
    tok->encode_into(text->get_ref<const std::string&>(), cfg.add_special_tokens, ids);
    out = "{\"ids\":[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(ids[i]);
    }
    out += "]}\n";
    std::cout << out;
  });
  std::cout.flush();
  return 0;
}

int run_decode(const DecodeConfig& cfg, const std::string& input) {
  auto tok = load_tokenizer(cfg.tokenizer);
  for_each_jsonl(input, [&](const json& obj, const std::string&) {
    auto ids = obj.find("ids");
    if (ids == obj.end() || !ids->is_array()) throw Error("expected {\"ids\": [...]}");
    std::vector<int32_t> v;
    for (const json& id : *ids) {
      // get<int32_t>() would wrap 4294967301 to 5 and decode the wrong token.
      if (!id.is_number_integer() || (id.is_number_unsigned() ? id.get<uint64_t>() > INT32_MAX
                                                              : id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX)) {
        throw Error("ids must be integers in the int32 range, got " + id.dump());
      }
      v.push_back(id.get<int32_t>());
    }
    json line = {{"text", tok->decode(v, cfg.skip_special_tokens)}};
    std::cout << line.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  });
  std::cout.flush();
  return 0;
}

}  // namespace

void register_data_codec_commands(CLI::App* data, cli::CommandSet& commands) {
  static EncodeConfig encode_cfg;
  static DecodeConfig decode_cfg;
  static std::string encode_input = "-", decode_input = "-";

  cli::Command& enc = commands.add(data, "encode", "text JSONL ({\"text\": ...}) to token ids ({\"ids\": [...]})");
  cli::add_section(enc.app, enc.sections, "codec", encode_cfg, cli::ShortFlags::yes);
  enc.app->add_option("input", encode_input, "JSONL file, or - for stdin")->capture_default_str();
  enc.run = [] { return run_encode(encode_cfg, encode_input); };

  cli::Command& dec = commands.add(data, "decode", "token id JSONL ({\"ids\": [...]}) to text ({\"text\": ...})");
  cli::add_section(dec.app, dec.sections, "codec", decode_cfg, cli::ShortFlags::yes);
  dec.app->add_option("input", decode_input, "JSONL file, or - for stdin")->capture_default_str();
  dec.run = [] { return run_decode(decode_cfg, decode_input); };
}

}  // namespace ftune
