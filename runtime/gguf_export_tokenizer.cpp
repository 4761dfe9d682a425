// tokenizer.json -> tokenizer.ggml.* for the GGUF exporter: the inverse of gguf_tokenizer.cpp,
// so import -> export -> import gives the same tokenizer.json back (byte-level `gpt2` and
// SentencePiece-style `llama` vocabularies).
#include <cctype>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "common/error.h"
#include "runtime/gguf_export.h"

namespace ftune::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

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

// A SentencePiece-style tokenizer.json (byte fallback, "▁" for spaces by Metaspace or by the
// normalizer, as transformers writes Llama 2 / Mistral ones): llama.cpp's `llama` model.
bool is_sentencepiece(const json& tok) {
  const json& m = tok["model"];
  if (m.value("type", "BPE") != "BPE" || !m.value("byte_fallback", false)) return false;
  const json pre = tok.value("pre_tokenizer", json());
  const json norm = tok.value("normalizer", json());
  return (pre.is_object() && pre.value("type", "") == "Metaspace") ||
         (pre.is_null() && norm.is_object() && norm.dump().find("▁") != std::string::npos);
}

bool is_byte_piece(const std::string& t) {
  return t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
         std::isxdigit(static_cast<unsigned char>(t[4]));
}

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  std::vector<bool> seen;
  int64_t id_of(const std::string& t) const {
    if (t.empty()) return -1;
    for (size_t i = 0; i < tokens.size(); ++i)
      if (seen[i] && tokens[i] == t) return static_cast<int64_t>(i);
    return -1;
  }
};

// Tokens by id (the model's vocab_size of them), with llama.cpp token types.
Vocab build_vocab(const json& tok, const fs::path& tok_path, int64_t n, bool sentencepiece) {
  Vocab v{std::vector<std::string>(static_cast<size_t>(n)), std::vector<int64_t>(static_cast<size_t>(n), kUnused),
          std::vector<bool>(static_cast<size_t>(n), false)};
  auto put = [&](const std::string& t, int64_t id, int64_t type) {
    if (id < 0 || id >= n)
      throw Error(tok_path.string() + ": token '" + t + "' has id " + std::to_string(id) +
                  ", past the model's vocab_size " + std::to_string(n));
    v.tokens[id] = t;
    v.types[id] = type;
    v.seen[id] = true;
  };
  for (const auto& [t, id] : tok["model"]["vocab"].items())
    put(t, id.get<int64_t>(), sentencepiece && is_byte_piece(t) ? kByte : kNormal);
  for (const json& a : tok.value("added_tokens", json::array()))
    put(a["content"], a["id"], a.value("special", false) ? kControl : kUserDefined);
  // Embedding rows without a token (Qwen2-style padding) get llama.cpp's placeholder names.
  for (int64_t i = 0; i < n; ++i)
    if (!v.seen[i]) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
  return v;
}

// llama.cpp's SentencePiece tokenizer merges the adjacent pair whose joined piece scores
// highest; BPE merges the pair of lowest rank. Scoring each piece by minus the rank of the first
// merge that makes it gives llama.cpp the same merge order (pieces no merge makes score lowest).
std::vector<double> merge_scores(const Vocab& v, const std::vector<std::pair<std::string, std::string>>& merges) {
  std::vector<double> scores(v.tokens.size(), -1e9);
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.seen[i]) index.emplace(v.tokens[i], i);
  for (size_t r = merges.size(); r-- > 0;) {
    auto it = index.find(merges[r].first + merges[r].second);
    if (it != index.end()) scores[it->second] = -static_cast<double>(r);
  }
  return scores;
}

std::string read_chat_template(const std::string& dir, const json& tc) {
  if (tc.contains("chat_template") && tc["chat_template"].is_string()) return tc["chat_template"];
  std::ifstream in(fs::path(dir) / "chat_template.jinja", std::ios::binary);
  return in ? std::string(std::istreambuf_iterator<char>(in), {}) : std::string();
}

}  // namespace

void add_tokenizer_metadata(gguf::MetadataOut& md, const std::string& dir, const ModelConfig& cfg) {
  const fs::path tok_path = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(tok_path))
    throw Error("model export: " + dir + " has no tokenizer.json; a GGUF carries its tokenizer and "
                "llama.cpp refuses files without one");
  const json tok = read_json_file(tok_path);
  const bool sp = is_sentencepiece(tok);
  const std::string pre = sp ? "" : pre_tokenizer_name(tok.value("pre_tokenizer", json()));
  if (tok["model"].value("type", "BPE") != "BPE" || (!sp && pre.empty()))
    throw Error(tok_path.string() + ": ftune exports BPE tokenizers to GGUF: byte-level with the GPT-2 "
                "or Llama 3 pre-tokenizer, or SentencePiece-style with byte fallback; this one (model " +
                tok["model"].value("type", "?") + ", pre_tokenizer " + tok.value("pre_tokenizer", json()).dump() +
                ") is neither");
  Vocab v = build_vocab(tok, tok_path, cfg.vocab_size, sp);
  std::vector<std::pair<std::string, std::string>> merges;
  for (const json& m : tok["model"]["merges"]) {
    if (m.is_array()) merges.emplace_back(m[0], m[1]);
    else {
      const std::string s = m;
      const size_t at = s.find(' ');
      merges.emplace_back(s.substr(0, at), at == std::string::npos ? "" : s.substr(at + 1));
    }
  }
  const json tc = fs::exists(fs::path(dir) / "tokenizer_config.json")
                      ? read_json_file(fs::path(dir) / "tokenizer_config.json") : json::object();
  const int64_t unk = v.id_of(config_token(tc, "unk_token"));
  if (sp && unk >= 0) v.types[unk] = kUnknown;
  md.add_string("tokenizer.ggml.model", sp ? "llama" : "gpt2");
  if (!sp) md.add_string("tokenizer.ggml.pre", pre);
  md.add_strings("tokenizer.ggml.tokens", v.tokens);
  if (sp) md.add_f32s("tokenizer.ggml.scores", merge_scores(v, merges));
  md.add_i32s("tokenizer.ggml.token_type", v.types);
  // SentencePiece files need no merges in llama.cpp, but with them transformers and ftune rebuild
  // exactly this merge list instead of deriving one from the scores.
  std::vector<std::string> merge_strings;
  for (const auto& [l, r] : merges) merge_strings.push_back(l + " " + r);
  md.add_strings("tokenizer.ggml.merges", merge_strings);
  int64_t bos = v.id_of(config_token(tc, "bos_token")), eos = v.id_of(config_token(tc, "eos_token"));
  if (bos < 0 && cfg.bos_token_id) bos = *cfg.bos_token_id;
  if (eos < 0 && !cfg.eos_token_ids.empty()) eos = cfg.eos_token_ids[0];
  const std::pair<const char*, int64_t> ids[] = {
      {"tokenizer.ggml.bos_token_id", bos}, {"tokenizer.ggml.eos_token_id", eos},
      {"tokenizer.ggml.unknown_token_id", unk},
      {"tokenizer.ggml.padding_token_id", v.id_of(config_token(tc, "pad_token"))}};
  for (const auto& [key, id] : ids)
    if (id >= 0) md.add_u32(key, static_cast<uint32_t>(id));
  // BOS is added when the post-processor's template starts with a special token.
  bool add_bos = tc.value("add_bos_token", false);
  const json& post = tok.value("post_processor", json());
  if (post.is_object() && post.value("type", "") == "TemplateProcessing" && !post["single"].empty())
    add_bos = add_bos || post["single"][0].contains("SpecialToken");
  md.add_bool("tokenizer.ggml.add_bos_token", add_bos);
  md.add_bool("tokenizer.ggml.add_eos_token", tc.value("add_eos_token", false));
  if (sp) md.add_bool("tokenizer.ggml.add_space_prefix", true);
  const std::string tmpl = read_chat_template(dir, tc);
  if (!tmpl.empty()) md.add_string("tokenizer.chat_template", tmpl);
}

}  // namespace ftune::model
