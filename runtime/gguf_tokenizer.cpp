// tokenizer.json + tokenizer_config.json from a GGUF's tokenizer.ggml.* metadata, built the way
// transformers' GGUF loader builds them (integrations/gguf/gguf_tokenizer_mapping.py), so the
// same text gives the same ids through ftune, transformers and the imported directory.
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "common/error.h"
#include "runtime/gguf_import.h"

namespace ftune::model {
namespace {

using nlohmann::json;

constexpr int64_t kControl = 3;      // llama.cpp token type CONTROL
constexpr int64_t kUserDefined = 4;  // USER_DEFINED

// GPT-2's reversible byte -> printable code point table (bytes_to_unicode).
std::vector<uint32_t> byte_to_codepoint() {
  std::vector<uint32_t> t(256, 0);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    t[b] = printable ? b : next++;
  }
  return t;
}

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Code points of a UTF-8 string; false if it is not valid UTF-8.
bool codepoints(const std::string& s, std::vector<uint32_t>& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return true;
}

class ByteAlphabet {
 public:
  ByteAlphabet() : table_(byte_to_codepoint()), set_(table_.begin(), table_.end()) {}
  // Is every code point of the token in the byte alphabet (so it is already byte-level)?
  bool spelled(const std::string& token) const {
    std::vector<uint32_t> cps;
    if (!codepoints(token, cps)) return false;
    for (uint32_t cp : cps)
      if (!set_.count(cp)) return false;
    return true;
  }
  // transformers respells tokens outside the alphabet byte by byte.
  std::string respell(const std::string& token) const {
    if (spelled(token)) return token;
    std::string out;
    for (unsigned char b : token) append_utf8(out, table_[b]);
    return out;
  }

 private:
  std::vector<uint32_t> table_;
  std::set<uint32_t> set_;
};

struct TokenizerMeta {
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre ("" when absent)
  std::vector<std::string> tokens;
  std::vector<double> scores;
  std::vector<int64_t> types;
  std::vector<std::string> merges;
  bool has_merges = false;
};

TokenizerMeta read_meta(const gguf::File& f) {
  TokenizerMeta m;
  if (!f.find_key("tokenizer.ggml.model"))
    throw Error(f.path() + ": metadata key 'tokenizer.ggml.model' is missing: the file carries no "
                "tokenizer; ftune imports only models with one (export the GGUF with llama.cpp's "
                "convert_hf_to_gguf.py from a directory with tokenizer.json)");
  m.model = f.get_string("tokenizer.ggml.model");
  if (f.find_key("tokenizer.ggml.pre")) m.pre = f.get_string("tokenizer.ggml.pre");
  const gguf::Value* tokens = f.find_key("tokenizer.ggml.tokens");
  if (!tokens || tokens->type != gguf::ValueType::kArray || tokens->elem != gguf::ValueType::kString)
    throw Error(f.path() + ": metadata key 'tokenizer.ggml.tokens' is missing or not an array of "
                "strings; the tokenizer cannot be rebuilt without its vocabulary");
  m.tokens = tokens->strings;
  if (const gguf::Value* v = f.find_key("tokenizer.ggml.scores")) m.scores = v->floats;
  if (const gguf::Value* v = f.find_key("tokenizer.ggml.token_type")) m.types = v->ints;
  if (const gguf::Value* v = f.find_key("tokenizer.ggml.merges")) {
    m.merges = v->strings;
    m.has_merges = true;
  }
  if (!m.types.empty() && m.types.size() != m.tokens.size())
    throw Error(f.path() + ": tokenizer.ggml.token_type has " + std::to_string(m.types.size()) +
                " entries but tokenizer.ggml.tokens has " + std::to_string(m.tokens.size()));
  return m;
}

json added_token(int64_t id, const std::string& content, bool special) {
  return {{"id", id},           {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},    {"normalized", false}, {"special", special}};
}

// The split regexes transformers substitutes for llama.cpp pre-tokenizer names (the ones a llama
// architecture file uses); other names keep the builder's default (GPT-2's ByteLevel regex) in
// transformers, and ftune refuses them rather than guess.
const char* kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json byte_level_pre_tokenizer(const gguf::File& f, const std::string& pre) {
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "smollm")
    return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "smaug-bpe")
    return {{"type", "Sequence"},
            {"pretokenizers",
             json::array({{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Split}}}, {"behavior", "Isolated"}, {"invert", false}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}};
  throw Error(f.path() + ": metadata key 'tokenizer.ggml.pre' is '" + pre +
              "', a pre-tokenizer ftune does not rebuild (supported: default, gpt2, smollm, "
              "llama-bpe, llama3, llama-v3, smaug-bpe)");
}

// Splits "a b" into its two tokens; false when it is not exactly two tokens.
bool split_merge(const std::string& s, std::pair<std::string, std::string>& out) {
  const size_t sp = s.find(' ');
  if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) return false;
  out = {s.substr(0, sp), s.substr(sp + 1)};
  return true;
}

json gpt2_model(const gguf::File& f, const TokenizerMeta& m) {
  const ByteAlphabet alphabet;
  json vocab = json::object();
  for (size_t i = 0; i < m.tokens.size(); ++i) vocab[alphabet.respell(m.tokens[i])] = i;
  if (!m.has_merges)
    throw Error(f.path() + ": metadata key 'tokenizer.ggml.merges' is missing; a gpt2 (byte-level "
                "BPE) tokenizer needs its merges");
  json merges = json::array();
  std::pair<std::string, std::string> mp;
  for (const std::string& s : m.merges) {
    if (!split_merge(s, mp))
      throw Error(f.path() + ": tokenizer.ggml.merges entry \"" + s + "\" is not two tokens separated by one space");
    merges.push_back({mp.first, mp.second});
  }
  return {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
          {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false},
          {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}};
}

// Merges a SentencePiece vocabulary implies, as transformers' generate_merges with scores: every
// split of every token into two vocabulary pieces, best score first (then longer pieces).
json sentencepiece_merges(const TokenizerMeta& m) {
  std::unordered_map<std::string, int64_t> vocab;
  for (size_t i = 0; i < m.tokens.size(); ++i) vocab[m.tokens[i]] = static_cast<int64_t>(i);
  std::unordered_map<std::string, double> score;
  std::vector<std::string> order;  // first appearance, as a Python dict keeps it
  for (size_t i = 0; i < m.tokens.size(); ++i) {
    if (score.emplace(m.tokens[i], m.scores[i]).second) order.push_back(m.tokens[i]);
    else score[m.tokens[i]] = m.scores[i];
  }
  struct Merge { std::string l, r; double s; };
  std::vector<Merge> merges;
  for (const std::string& tok : order) {
    std::vector<uint32_t> cps;
    if (!codepoints(tok, cps)) continue;
    std::vector<Merge> local;
    size_t byte = 0;
    for (size_t k = 1; k < cps.size(); ++k) {
      byte += cps[k - 1] < 0x80 ? 1 : cps[k - 1] < 0x800 ? 2 : cps[k - 1] < 0x10000 ? 3 : 4;
      std::string l = tok.substr(0, byte), r = tok.substr(byte);
      if (vocab.count(l) && vocab.count(r)) local.push_back({l, r, score[tok]});
    }
    std::stable_sort(local.begin(), local.end(), [&](const Merge& a, const Merge& b) {
      return std::make_pair(vocab[a.l], vocab[a.r]) < std::make_pair(vocab[b.l], vocab[b.r]);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  // Python's sorted(reverse=True) is stable: equal keys keep their order.
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.s != b.s) return a.s > b.s;
    if (a.l.size() != b.l.size()) return a.l.size() > b.l.size();
    return a.r.size() > b.r.size();
  });
  json out = json::array();
  for (const Merge& mg : merges) out.push_back({mg.l, mg.r});
  return out;
}

}  // namespace

namespace {

// The normalizer-free pipeline and BPE model of a `llama` (SentencePiece) vocabulary, as
// transformers' LlamaTokenizer builds it: Metaspace (prefix "▁" on the first word only), byte
// fallback, and unk_token null (byte fallback covers every byte).
void sentencepiece_pipeline(const gguf::File& f, const TokenizerMeta& m, json& tok) {
  if (m.scores.size() != m.tokens.size())
    throw Error(f.path() + ": metadata key 'tokenizer.ggml.scores' is missing or has another length "
                "than tokenizer.ggml.tokens; a llama (SentencePiece) tokenizer needs one score per token");
  tok["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}};
  tok["decoder"] = {{"type", "Sequence"},
                    {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                                              {{"type", "ByteFallback"}},
                                              {{"type", "Fuse"}},
                                              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  json vocab = json::object();
  for (size_t i = 0; i < m.tokens.size(); ++i) vocab[m.tokens[i]] = i;
  json merges = json::array();
  if (!m.has_merges) merges = sentencepiece_merges(m);
  std::pair<std::string, std::string> mp;
  for (const std::string& s : m.merges)
    if (split_merge(s, mp)) merges.push_back({mp.first, mp.second});
  tok["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true},
                  {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}};
}

// Control tokens become special added tokens, user-defined ones plain added tokens, as in
// transformers (a byte-level "control" token outside the byte alphabet is a llama.cpp mislabel
// and stays out). LlamaTokenizer also makes its unk token special (a SentencePiece <unk> is of
// type UNKNOWN, not CONTROL).
json added_tokens(const gguf::File& f, const TokenizerMeta& m) {
  const ByteAlphabet alphabet;
  int64_t unk = -1;
  if (m.model == "llama" && f.find_key("tokenizer.ggml.unknown_token_id")) unk = f.get_int("tokenizer.ggml.unknown_token_id");
  json added = json::array();
  for (size_t i = 0; i < m.types.size(); ++i) {
    const bool special = (m.types[i] == kControl && (m.model != "gpt2" || alphabet.spelled(m.tokens[i]))) ||
                         static_cast<int64_t>(i) == unk;
    if (special || m.types[i] == kUserDefined) added.push_back(added_token(i, m.tokens[i], special));
  }
  return added;
}

// The token a tokenizer.ggml.*_token_id key names; null when the key is absent.
json token_of(const gguf::File& f, const TokenizerMeta& m, const std::string& key) {
  const gguf::Value* v = f.find_key("tokenizer.ggml." + key);
  if (!v) return nullptr;
  if (!v->is_integer() || v->i < 0 || v->i >= static_cast<int64_t>(m.tokens.size()))
    throw Error(f.path() + ": metadata key 'tokenizer.ggml." + key + "' is not a token id of the vocabulary");
  return m.tokens[v->i];
}

// BOS/EOS around each sequence when the file's add_bos_token/add_eos_token say so (llama.cpp
// adds BOS to a SentencePiece vocabulary that does not say otherwise, as transformers does).
json post_processor(const gguf::File& f, const TokenizerMeta& m, bool add_bos, bool add_eos) {
  json single = json::array(), specials = json::object();
  auto special_piece = [&](const std::string& key) {
    const json t = token_of(f, m, key);
    if (!t.is_string()) return;
    single.push_back({{"SpecialToken", {{"id", t}, {"type_id", 0}}}});
    specials[t.get<std::string>()] = {{"id", t}, {"ids", {f.get_int("tokenizer.ggml." + key)}}, {"tokens", {t}}};
  };
  if (add_bos) special_piece("bos_token_id");
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (add_eos) special_piece("eos_token_id");
  json pair = single;
  pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

}  // namespace

TokenizerFiles gguf_tokenizer_files(const gguf::File& f) {
  const TokenizerMeta m = read_meta(f);
  json tok = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"normalizer", nullptr}};
  if (m.model == "gpt2") {
    tok["pre_tokenizer"] = byte_level_pre_tokenizer(f, m.pre);
    tok["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    tok["model"] = gpt2_model(f, m);
  } else if (m.model == "llama") {
    sentencepiece_pipeline(f, m, tok);
  } else {
    throw Error(f.path() + ": metadata key 'tokenizer.ggml.model' is '" + m.model +
                "', a tokenizer model ftune does not rebuild (supported: gpt2 = byte-level BPE, "
                "llama = SentencePiece BPE with byte fallback)");
  }
  tok["added_tokens"] = added_tokens(f, m);
  const bool add_bos = f.get_bool("tokenizer.ggml.add_bos_token", m.model == "llama");
  const bool add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
  tok["post_processor"] = post_processor(f, m, add_bos, add_eos);
  json cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
              {"bos_token", token_of(f, m, "bos_token_id")},
              {"eos_token", token_of(f, m, "eos_token_id")},
              {"unk_token", token_of(f, m, "unknown_token_id")},
              {"pad_token", token_of(f, m, "padding_token_id")},
              {"add_bos_token", add_bos},
              {"add_eos_token", add_eos},
              {"clean_up_tokenization_spaces", false}};
  if (f.find_key("tokenizer.chat_template")) cfg["chat_template"] = f.get_string("tokenizer.chat_template");
  return {tok, cfg};
}

}  // namespace ftune::model
