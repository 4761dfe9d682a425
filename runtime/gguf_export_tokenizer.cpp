// tokenizer.json -> tokenizer.ggml.* for the GGUF exporter: the inverse of gguf_tokenizer.cpp,
// so import -> export -> import gives the same tokenizer.json back.
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "runtime/gguf_export.h"

namespace ftune::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

json read_json_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error("model export: cannot read " + p.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(p.string() + ": not valid JSON: " + e.what());
  }
}

// llama.cpp's name for the pre-tokenizer of a byte-level tokenizer.json, or "" if none fits.
std::string pre_tokenizer_name(const json& pre) {
  if (pre.is_object() && pre.value("type", "") == "ByteLevel" && pre.value("use_regex", true))
    return "gpt2";
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre["pretokenizers"].size() == 2) {
    const json& split = pre["pretokenizers"][0];
    const json& bl = pre["pretokenizers"][1];
    const std::string llama3 =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    if (split.value("type", "") == "Split" && split["pattern"].value("Regex", "") == llama3 &&
        bl.value("type", "") == "ByteLevel" && !bl.value("use_regex", true))
      return "llama-bpe";
  }
  return "";
}

// "bos_token": "<s>" or {"content": "<s>"}; "" when absent.
std::string config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return "";
  return cfg[key].is_string() ? cfg[key].get<std::string>() : cfg[key].value("content", "");
}

}  // namespace

void add_tokenizer_metadata(gguf::MetadataOut& md, const std::string& dir, const ModelConfig& cfg) {
  const fs::path tok_path = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(tok_path))
    throw Error("model export: " + dir + " has no tokenizer.json; a GGUF carries its tokenizer and "
                "llama.cpp refuses files without one");
  const json tok = read_json_file(tok_path);
  const json& model = tok["model"];
  const std::string pre = pre_tokenizer_name(tok.value("pre_tokenizer", json()));
  if (model.value("type", "BPE") != "BPE" || model.value("byte_fallback", false) || pre.empty())
    throw Error(tok_path.string() + ": ftune exports byte-level BPE tokenizers (GPT-2 or Llama 3 "
                "pre-tokenizer) to GGUF; this one (" + model.value("type", "?") +
                (model.value("byte_fallback", false) ? ", SentencePiece-style byte fallback" : "") +
                ") is not supported yet");
  const int64_t n = cfg.vocab_size;
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int64_t> types(static_cast<size_t>(n), kUnused);
  std::vector<bool> seen(static_cast<size_t>(n), false);
  auto put = [&](const std::string& t, int64_t id, int64_t type) {
    if (id < 0 || id >= n)
      throw Error(tok_path.string() + ": token '" + t + "' has id " + std::to_string(id) +
                  ", past the model's vocab_size " + std::to_string(n));
    tokens[id] = t;
    types[id] = type;
    seen[id] = true;
  };
  for (const auto& [t, id] : model["vocab"].items()) put(t, id.get<int64_t>(), kNormal);
  for (const json& a : tok.value("added_tokens", json::array()))
    put(a["content"], a["id"], a.value("special", false) ? kControl : kUserDefined);
  // Embedding rows without a token (Qwen2-style padding) get llama.cpp's placeholder names.
  for (int64_t i = 0; i < n; ++i)
    if (!seen[i]) tokens[i] = "[PAD" + std::to_string(i) + "]";
  std::vector<std::string> merges;
  for (const json& m : model["merges"])
    merges.push_back(m.is_array() ? m[0].get<std::string>() + " " + m[1].get<std::string>() : m.get<std::string>());

  const json tc = fs::exists(fs::path(dir) / "tokenizer_config.json")
                      ? read_json_file(fs::path(dir) / "tokenizer_config.json") : json::object();
  auto id_of = [&](const std::string& t) -> int64_t {
    if (t.empty()) return -1;
    for (int64_t i = 0; i < n; ++i)
      if (seen[i] && tokens[i] == t) return i;
    return -1;
  };
  md.add_string("tokenizer.ggml.model", "gpt2");
  md.add_string("tokenizer.ggml.pre", pre);
  md.add_strings("tokenizer.ggml.tokens", tokens);
  md.add_i32s("tokenizer.ggml.token_type", types);
  md.add_strings("tokenizer.ggml.merges", merges);
  int64_t bos = id_of(config_token(tc, "bos_token")), eos = id_of(config_token(tc, "eos_token"));
  if (bos < 0 && cfg.bos_token_id) bos = *cfg.bos_token_id;
  if (eos < 0 && !cfg.eos_token_ids.empty()) eos = cfg.eos_token_ids[0];
  const std::pair<const char*, int64_t> ids[] = {
      {"tokenizer.ggml.bos_token_id", bos}, {"tokenizer.ggml.eos_token_id", eos},
      {"tokenizer.ggml.unknown_token_id", id_of(config_token(tc, "unk_token"))},
      {"tokenizer.ggml.padding_token_id", id_of(config_token(tc, "pad_token"))}};
  for (const auto& [key, id] : ids)
    if (id >= 0) md.add_u32(key, static_cast<uint32_t>(id));
  // BOS is added when the post-processor's template starts with a special token.
  bool add_bos = tc.value("add_bos_token", false);
  const json& post = tok.value("post_processor", json());
  if (post.is_object() && post.value("type", "") == "TemplateProcessing" && !post["single"].empty())
    add_bos = add_bos || post["single"][0].contains("SpecialToken");
  md.add_bool("tokenizer.ggml.add_bos_token", add_bos);
  md.add_bool("tokenizer.ggml.add_eos_token", tc.value("add_eos_token", false));
  std::string tmpl;
  if (tc.contains("chat_template") && tc["chat_template"].is_string()) tmpl = tc["chat_template"];
  else if (fs::exists(fs::path(dir) / "chat_template.jinja")) {
    std::ifstream in(fs::path(dir) / "chat_template.jinja", std::ios::binary);
    tmpl.assign(std::istreambuf_iterator<char>(in), {});
  }
  if (!tmpl.empty()) md.add_string("tokenizer.chat_template", tmpl);
}

}  // namespace ftune::model
