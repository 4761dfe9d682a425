// Loads tokenizer.json (+ tokenizer_config.json) into Tokenizer::Impl, refusing components
// whose behaviour ftune does not reproduce with an error that names the file and the part.
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "common/sha256.h"
#include "data/tokenizer/tokenizer_impl.h"

namespace ftune::data {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace tok;

constexpr const char* kSupported =
    "ftune supports BPE tokenizers: byte-level (Llama 3, Qwen2, GPT-2) and SentencePiece-style "
    "with byte_fallback (Llama 2, Mistral)";

// Ids may leave gaps (unused ids) up to this many; tables are sized by the largest id.
constexpr int64_t kMaxIdGap = 1 << 16;

// Where we are in the file, for messages: "<file>: <component>: <problem>".
struct Ctx {
  std::string file;
  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw Error(file + ": " + where + ": " + what);
  }
  [[noreturn]] void unsupported(const std::string& where, const std::string& type,
                                const std::string& supported) const {
    fail(where, "type \"" + type + "\" is not supported (supported: " + supported + "); " + kSupported);
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the tokenizer file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool get_bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? dflt : it->get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& dflt = "") {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? dflt : it->get<std::string>();
}

// nlohmann's get<int32_t>() casts any number, and a float past the int range is undefined
// behaviour; ids and counts must be integers in range.
int64_t get_integer(const Ctx& ctx, const json& j, const std::string& where, int64_t lo, int64_t hi) {
  if (!j.is_number_integer()) ctx.fail(where, "expected an integer, got " + j.dump());
  if (j.is_number_unsigned() ? j.get<uint64_t>() > static_cast<uint64_t>(hi) : j.get<int64_t>() < lo || j.get<int64_t>() > hi) {
    ctx.fail(where, j.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return j.get<int64_t>();
}
int32_t get_id(const Ctx& ctx, const json& j, const std::string& where) {
  return static_cast<int32_t>(get_integer(ctx, j, where, 0, std::numeric_limits<int32_t>::max()));
}

std::string type_of(const Ctx& ctx, const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type")) ctx.fail(where, "expected an object with a \"type\"");
  return j.at("type").get<std::string>();
}

Pattern parse_pattern(const Ctx& ctx, const json& j, const std::string& where) {
  Pattern p;
  if (j.contains("String")) {
    p.literal = j.at("String").get<std::string>();
  } else if (j.contains("Regex")) {
    try {
      p.regex = std::make_shared<const Regex>(j.at("Regex").get<std::string>());
    } catch (const std::invalid_argument& e) {
      ctx.fail(where, e.what());
    }
  } else {
    ctx.fail(where, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
  }
  return p;
}

PrependScheme parse_prepend_scheme(const Ctx& ctx, const json& j, const std::string& where) {
  if (!j.contains("prepend_scheme")) {  // files before tokenizers 0.14 have add_prefix_space
    return get_bool(j, "add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
  }
  std::string s = j.at("prepend_scheme").get<std::string>();
  if (s == "always") return PrependScheme::always;
  if (s == "first") return PrependScheme::first;
  if (s == "never") return PrependScheme::never;
  ctx.fail(where, "prepend_scheme \"" + s + "\" is not always, first or never");
}

void parse_normalizer(const Ctx& ctx, const json& j, Normalizer& out) {
  if (j.is_null()) return;
  const std::string where = "normalizer";
  std::string type = type_of(ctx, j, where);
  if (type == "Sequence") {
    for (const json& n : j.at("normalizers")) parse_normalizer(ctx, n, out);
  } else if (type == "Prepend") {
    out.steps.push_back({NormalizerStep::Kind::prepend, j.at("prepend").get<std::string>(), {}});
  } else if (type == "Replace") {
    out.steps.push_back({NormalizerStep::Kind::replace, j.at("content").get<std::string>(),
                         parse_pattern(ctx, j.at("pattern"), where + " Replace")});
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    using Kind = NormalizerStep::Kind;
    Kind kind = type == "NFC" ? Kind::nfc : type == "NFD" ? Kind::nfd : type == "NFKC" ? Kind::nfkc : Kind::nfkd;
    out.steps.push_back({kind, "", {}});
  } else {
    ctx.unsupported(where, type, "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD");
  }
}

SplitBehavior parse_behavior(const Ctx& ctx, const std::string& s) {
  if (s == "Isolated") return SplitBehavior::isolated;
  if (s == "Removed") return SplitBehavior::removed;
  if (s == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (s == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (s == "Contiguous") return SplitBehavior::contiguous;
  ctx.fail("pre_tokenizer Split", "behavior \"" + s + "\" is unknown");
}

void parse_pre_tokenizer(const Ctx& ctx, const json& j, PreTokenizer& out) {
  if (j.is_null()) return;
  const std::string where = "pre_tokenizer";
  std::string type = type_of(ctx, j, where);
  PreTokenizerStep step;
  if (type == "Sequence") {
    for (const json& p : j.at("pretokenizers")) parse_pre_tokenizer(ctx, p, out);
    return;
  } else if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::split;
    step.pattern = parse_pattern(ctx, j.at("pattern"), where + " Split");
    step.behavior = parse_behavior(ctx, j.at("behavior").get<std::string>());
    step.invert = get_bool(j, "invert", false);
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::byte_level;
    step.add_prefix_space = get_bool(j, "add_prefix_space", true);
    step.use_regex = get_bool(j, "use_regex", true);
  } else if (type == "Metaspace") {
    step.kind = PreTokenizerStep::Kind::metaspace;
    step.replacement = get_string(j, "replacement", step.replacement);
    step.prepend_scheme = parse_prepend_scheme(ctx, j, where + " Metaspace");
    step.split = get_bool(j, "split", true);
  } else {
    ctx.unsupported(where, type, "Sequence, Split, ByteLevel, Metaspace");
  }
  if (out.steps.size() >= 8) ctx.fail(where, "more than 8 pre-tokenizer steps");
  out.steps.push_back(std::move(step));
}

void parse_decoder(const Ctx& ctx, const json& j, Decoder& out) {
  if (j.is_null()) return;
  out.present = true;
  const std::string where = "decoder";
  std::string type = type_of(ctx, j, where);
  DecoderStep step;
  using Kind = DecoderStep::Kind;
  if (type == "Sequence") {
    for (const json& d : j.at("decoders")) parse_decoder(ctx, d, out);
    return;
  } else if (type == "ByteLevel") {
    step.kind = Kind::byte_level;
  } else if (type == "Replace") {
    step.kind = Kind::replace;
    step.pattern = parse_pattern(ctx, j.at("pattern"), where + " Replace");
    step.content = j.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    step.kind = Kind::byte_fallback;
  } else if (type == "Fuse") {
    step.kind = Kind::fuse;
  } else if (type == "Strip") {
    step.kind = Kind::strip;
    step.content = j.at("content").get<std::string>();
    step.start = static_cast<size_t>(get_integer(ctx, j.at("start"), where + " Strip start", 0, 1 << 20));
    step.stop = static_cast<size_t>(get_integer(ctx, j.at("stop"), where + " Strip stop", 0, 1 << 20));
  } else if (type == "Metaspace") {
    step.kind = Kind::metaspace;
    step.replacement = get_string(j, "replacement", step.replacement);
    step.prepend_scheme = parse_prepend_scheme(ctx, j, where + " Metaspace");
  } else {
    ctx.unsupported(where, type, "Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace");
  }
  out.steps.push_back(std::move(step));
}

void parse_post_processor(const Ctx& ctx, const json& j, PostProcessor& out) {
  if (j.is_null()) return;
  out.present = true;
  const std::string where = "post_processor";
  std::string type = type_of(ctx, j, where);
  if (type == "Sequence") {
    for (const json& p : j.at("processors")) parse_post_processor(ctx, p, out);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets; ids are unchanged.
  } else if (type == "TemplateProcessing") {
    const json& specials = j.at("special_tokens");
    bool after_sequence = false;
    for (const json& piece : j.at("single")) {
      if (piece.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name)) ctx.fail(where, "template token \"" + name + "\" is not in special_tokens");
      auto& dst = after_sequence ? out.suffix : out.prefix;
      for (const json& id : specials.at(name).at("ids")) dst.push_back(get_id(ctx, id, where + " " + name));
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    out.prefix.push_back(get_id(ctx, j.at("cls").at(1), where + " cls"));
    out.suffix.push_back(get_id(ctx, j.at("sep").at(1), where + " sep"));
  } else {
    ctx.unsupported(where, type, "Sequence, ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing");
  }
}

BpeConfig parse_bpe(const Ctx& ctx, const json& m) {
  const std::string where = "model";
  std::string type = m.contains("type") ? m.at("type").get<std::string>() : (m.contains("merges") ? "BPE" : "?");
  if (type != "BPE") ctx.unsupported(where, type, "BPE; not WordPiece, Unigram or WordLevel");
  if (m.contains("dropout") && !m.at("dropout").is_null() && m.at("dropout").get<double>() > 0) {
    ctx.fail(where, "BPE dropout is random at encode time; set \"dropout\": null for data preparation");
  }
  BpeConfig c;
  int64_t max_id = -1;
  for (const auto& [token, id] : m.at("vocab").items()) {
    c.vocab.emplace_back(token, get_id(ctx, id, where + " vocab \"" + token + "\""));
    max_id = std::max<int64_t>(max_id, c.vocab.back().second);
  }
  // Tables are sized by the largest id, so one stray id (2147483647) would allocate gigabytes.
  if (max_id >= static_cast<int64_t>(c.vocab.size()) + kMaxIdGap) {
    ctx.fail(where, "vocab id " + std::to_string(max_id) + " is far past the " + std::to_string(c.vocab.size()) +
                        " tokens of the vocabulary; ids should run from 0 without large gaps");
  }
  for (const json& merge : m.at("merges")) {
    if (merge.is_array() && merge.size() == 2) {
      c.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      continue;
    }
    std::string s = merge.get<std::string>();
    size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
      ctx.fail(where, "merge \"" + s + "\" is not two tokens separated by one space");
    }
    c.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
  }
  if (m.contains("unk_token") && !m.at("unk_token").is_null()) c.unk_token = m.at("unk_token").get<std::string>();
  c.continuing_subword_prefix = get_string(m, "continuing_subword_prefix");
  c.end_of_word_suffix = get_string(m, "end_of_word_suffix");
  c.fuse_unk = get_bool(m, "fuse_unk", false);
  c.byte_fallback = get_bool(m, "byte_fallback", false);
  c.ignore_merges = get_bool(m, "ignore_merges", false);
  return c;
}

void parse_added_tokens(const Ctx& ctx, const json& list, Tokenizer::Impl& impl) {
  std::vector<AddedToken> tokens;
  std::unordered_map<int32_t, std::string> normalized_form;
  std::string normed;
  const int64_t id_limit = int64_t(impl.model->max_id()) + 1 + int64_t(list.size()) + kMaxIdGap;
  for (const json& t : list) {
    AddedToken a;
    a.id = get_id(ctx, t.at("id"), "added_tokens");
    if (a.id >= id_limit) {
      ctx.fail("added_tokens", "id " + std::to_string(a.id) + " of \"" + t.value("content", "") +
                                   "\" is far past the vocabulary (" +
                                   std::to_string(impl.model->max_id() + 1) + " ids)");
    }
    a.content = t.at("content").get<std::string>();
    a.single_word = get_bool(t, "single_word", false);
    a.lstrip = get_bool(t, "lstrip", false);
    a.rstrip = get_bool(t, "rstrip", false);
    a.special = get_bool(t, "special", false);
    a.normalized = get_bool(t, "normalized", !a.special);
    if (a.content.empty()) continue;  // tokenizers ignores empty added tokens
    // Normalized tokens match (and decode) in their normalized form: tokenizers' normalized_cache.
    if (a.normalized && !impl.normalizer.empty()) {
      impl.normalizer.apply(a.content, normed);
      if (normed != a.content) normalized_form[a.id] = normed;
    }
    tokens.push_back(std::move(a));
  }
  impl.added.build(std::move(tokens), std::move(normalized_form));
}

// "bos_token": "<s>" or {"content": "<s>", ...}; "" when absent or null.
std::string config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return get_string(*it, "content");
}

// tokenizer_config.json's special tokens and chat template; `template_file` reads the template
// kept beside it ("" when there is none), only when the config has none.
using TemplateFile = std::function<std::string()>;
void apply_config(const json& cfg, const TemplateFile& template_file, Tokenizer::Impl& impl) {
  impl.bos_token = config_token(cfg, "bos_token");
  impl.eos_token = config_token(cfg, "eos_token");
  impl.pad_token = config_token(cfg, "pad_token");
  if (cfg.contains("chat_template") && cfg.at("chat_template").is_string()) {
    impl.chat_template = cfg.at("chat_template").get<std::string>();
  } else if (cfg.contains("chat_template") && cfg.at("chat_template").is_array()) {
    for (const json& t : cfg.at("chat_template")) {  // named templates: take "default"
      if (get_string(t, "name") == "default") impl.chat_template = get_string(t, "template");
    }
  } else {  // transformers >= 4.50 writes it apart: chat_template.jinja or .json
    impl.chat_template = template_file();
  }
  // A tokenizer.json without a post-processor: transformers adds BOS/EOS from the config.
  // With one, the post-processor decides, as in `tokenizers`.
  if (!impl.post.present) {
    if (get_bool(cfg, "add_bos_token", false) && impl.token_to_id(impl.bos_token)) {
      impl.post.prefix.push_back(*impl.token_to_id(impl.bos_token));
    }
    if (get_bool(cfg, "add_eos_token", false) && impl.token_to_id(impl.eos_token)) {
      impl.post.suffix.push_back(*impl.token_to_id(impl.eos_token));
    }
  }
  impl.bos_id = impl.bos_token.empty() ? std::nullopt : impl.token_to_id(impl.bos_token);
  impl.eos_id = impl.eos_token.empty() ? std::nullopt : impl.token_to_id(impl.eos_token);
  impl.pad_id = impl.pad_token.empty() ? std::nullopt : impl.token_to_id(impl.pad_token);
  // Without a config entry, the template's first/last special token is BOS/EOS.
  if (impl.bos_token.empty() && !impl.post.prefix.empty()) {
    impl.bos_id = impl.post.prefix.front();
    impl.bos_token = impl.added.by_id(*impl.bos_id) ? impl.added.by_id(*impl.bos_id)->content
                                                     : impl.model->id_to_token(*impl.bos_id);
  }
  if (impl.eos_token.empty() && !impl.post.suffix.empty()) {
    impl.eos_id = impl.post.suffix.back();
    impl.eos_token = impl.added.by_id(*impl.eos_id) ? impl.added.by_id(*impl.eos_id)->content
                                                     : impl.model->id_to_token(*impl.eos_id);
  }
}

// Fields of the wrong type (`"bos_token": {"content": 5}`) are json::exceptions; name the file.
// `cfg_text` null: no tokenizer_config.json.
void apply_config_text(const std::string* cfg_text, const std::string& cfg_name, const TemplateFile& template_file,
                       Tokenizer::Impl& impl) {
  json cfg = json::object();
  if (cfg_text != nullptr) {
    try {
      cfg = json::parse(*cfg_text);
    } catch (const json::exception& e) {
      throw Error(cfg_name + ": not valid JSON: " + e.what());
    }
    if (!cfg.is_object()) throw Error(cfg_name + ": the top level is a JSON " + cfg.type_name() + ", expected an object");
  }
  try {
    apply_config(cfg, template_file, impl);
  } catch (const json::exception& e) {
    throw Error(cfg_name + ": malformed tokenizer_config.json: " + e.what());
  }
}

void parse_tokenizer_json(const Ctx& ctx, const json& root, Tokenizer::Impl& impl) {
  if (!root.is_object() || !root.contains("model")) ctx.fail("top level", "no \"model\" object; is this a tokenizer.json?");
  for (const char* key : {"truncation", "padding"}) {
    if (root.contains(key) && !root.at(key).is_null()) {
      ctx.fail(key, std::string("is set; ftune packs sequences itself, so set \"") + key + "\": null");
    }
  }
  parse_normalizer(ctx, root.value("normalizer", json()), impl.normalizer);
  parse_pre_tokenizer(ctx, root.value("pre_tokenizer", json()), impl.pre_tokenizer);
  try {
    impl.model = std::make_unique<BpeModel>(parse_bpe(ctx, root.at("model")));
  } catch (const std::invalid_argument& e) {
    ctx.fail("model", e.what());
  }
  parse_decoder(ctx, root.value("decoder", json()), impl.decoder);
  parse_post_processor(ctx, root.value("post_processor", json()), impl.post);
  parse_added_tokens(ctx, root.value("added_tokens", json::array()), impl);
  impl.vocab_size = std::max(impl.model->max_id(), impl.added.max_id()) + 1;
  // Every id the post-processor adds must decode again: in range and not a hole.
  for (const auto* ids : {&impl.post.prefix, &impl.post.suffix}) {
    for (int32_t id : *ids) {
      if (id < 0 || id >= impl.vocab_size || (!impl.added.by_id(id) && impl.model->id_to_token(id).empty())) {
        ctx.fail("post_processor", "special token id " + std::to_string(id) + " is not a token of the vocabulary");
      }
    }
  }
}

}  // namespace

const std::vector<std::string>& tokenizer_file_names() {
  static const std::vector<std::string> names = {"tokenizer.json", "tokenizer_config.json",
                                                 "special_tokens_map.json", "chat_template.jinja",
                                                 "chat_template.json"};
  return names;
}

std::optional<int32_t> Tokenizer::Impl::token_to_id(std::string_view token) const {
  if (const tok::AddedToken* a = added.by_content(token)) return a->id;
  return model->token_to_id(token);
}

namespace {

std::unique_ptr<Tokenizer::Impl> parse_tokenizer_impl(const std::string& bytes, const std::string& name) {
  auto impl = std::make_unique<Tokenizer::Impl>();
  impl->path = name;
  impl->hash = sha256_hex(bytes);
  Ctx ctx{impl->path};
  json root;
  try {
    root = json::parse(bytes);
  } catch (const json::exception& e) {
    throw Error(impl->path + ": not valid JSON: " + e.what());
  }
  try {
    parse_tokenizer_json(ctx, root, *impl);
  } catch (const json::exception& e) {  // a field of the wrong type or missing
    ctx.fail("malformed tokenizer.json", e.what());
  } catch (const Error&) {
    throw;
  } catch (const std::runtime_error& e) {  // e.g. an added token the normalizer cannot normalize
    ctx.fail("tokenizer.json", e.what());
  }
  return impl;
}

}  // namespace

std::unique_ptr<Tokenizer::Impl> load_tokenizer_impl(const std::string& path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  if (!fs::exists(file)) throw Error(file.string() + ": no such tokenizer file");
  auto impl = parse_tokenizer_impl(read_bytes(file.string()), file.string());
  const fs::path dir = file.parent_path();
  const fs::path cfg_path = dir / "tokenizer_config.json";
  std::optional<std::string> cfg_text;
  if (fs::exists(cfg_path)) cfg_text = read_bytes(cfg_path.string());
  const TemplateFile template_file = [&dir]() -> std::string {
    if (fs::exists(dir / "chat_template.jinja")) return read_bytes((dir / "chat_template.jinja").string());
    if (fs::exists(dir / "chat_template.json")) {  // {"chat_template": "..."}, processors' form
      const fs::path p = dir / "chat_template.json";
      try {
        const json t = json::parse(read_bytes(p.string()));
        return get_string(t, "chat_template");
      } catch (const json::exception& e) {
        throw Error(p.string() + ": not valid JSON with a \"chat_template\" string: " + e.what());
      }
    }
    return "";
  };
  apply_config_text(cfg_text ? &*cfg_text : nullptr, cfg_path.string(), template_file, *impl);
  return impl;
}

std::unique_ptr<Tokenizer::Impl> tokenizer_impl_from_json(const std::string& tokenizer_json,
                                                          const std::string* config_json, const std::string& name) {
  auto impl = parse_tokenizer_impl(tokenizer_json, name);
  apply_config_text(config_json, name + " (tokenizer_config.json)", [] { return std::string(); }, *impl);
  return impl;
}

}  // namespace ftune::data
