#include "data/pipeline/render.h"

#include <fstream>
#include <sstream>

#include "common/error.h"
#include "data/pipeline/chat_templates.h"
#include "data/pipeline/jinja.h"

namespace ftune::data {
namespace {

using Json = jinja::Value;

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos; }

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read chat template file " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// A string field of a record: missing, null and non-string fields are bad records unless
// `optional` (then missing/null give "").
bool string_field(const Json& obj, const std::string& key, bool optional, std::string& out, BadRecord& bad) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (optional) {
      out.clear();
      return true;
    }
    bad = {SkipReason::kMissingField, "missing field '" + key + "'"};
    return false;
  }
  if (!it->is_string()) {
    bad = {SkipReason::kWrongType, "field '" + key + "' is a " + std::string(it->type_name()) + ", expected a string"};
    return false;
  }
  out = it->get<std::string>();
  return true;
}

}  // namespace

const char* skip_reason_name(SkipReason reason) {
  switch (reason) {
    case SkipReason::kMalformedJson: return "malformed_json";
    case SkipReason::kMissingField: return "missing_field";
    case SkipReason::kWrongType: return "wrong_type";
    case SkipReason::kInvalidUtf8: return "invalid_utf8";
    case SkipReason::kEmpty: return "empty";
    case SkipReason::kTooLong: return "too_long";
    case SkipReason::kTemplateError: return "template_error";
  }
  return "?";
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

DocumentRenderer::DocumentRenderer(const TokenizeConfig& cfg, const ChatTokens& tokens)
    : cfg_(cfg), tokens_(tokens) {
  if (cfg_.preset == "qa") {
    cfg_.prompt_field = "question", cfg_.response_field = "answer", cfg_.input_field = "";
  } else if (cfg_.preset == "alpaca") {
    cfg_.prompt_field = "instruction", cfg_.response_field = "output", cfg_.input_field = "input";
  } else if (!cfg_.preset.empty()) {
    throw Error("tokenize.preset: unknown preset '" + cfg_.preset + "' (qa, alpaca, or empty)");
  }
  if (cfg_.format == "instruction") {
    const std::string& t = cfg_.instruction_template;
    size_t p = t.find("{prompt}"), r = t.find("{response}");
    if (p == std::string::npos || r == std::string::npos || r < p || t.find("{prompt}", p + 1) != std::string::npos ||
        t.find("{response}", r + 1) != std::string::npos) {
      throw Error("tokenize.instruction_template must contain {prompt} once and then {response} once, got \"" + t + "\"");
    }
    prompt_head_ = t.substr(0, p);
    prompt_tail_ = t.substr(p + 8, r - p - 8);
    response_tail_ = t.substr(r + 10);
  }
  if (cfg_.format == "chat") {
    std::string source = tokens_.chat_template, name = "tokenizer chat template";
    const std::string& c = cfg_.chat_template;
    if (!c.empty() && (c.find('/') != std::string::npos || c.find(".jinja") != std::string::npos)) {
      source = read_text_file(c), name = c;
    } else if (!c.empty()) {
      source = builtin_chat_template(c), name = "chat template '" + c + "'";
    }
    if (source.empty()) {
      throw Error("format=chat: the tokenizer has no chat_template in tokenizer_config.json; set "
                  "tokenize.chat_template to chatml, llama3, llama2 or a .jinja file");
    }
    chat_ = std::make_unique<jinja::Template>(source, name);
    chat_source_ = source;
  }
}

DocumentRenderer::~DocumentRenderer() = default;

bool DocumentRenderer::render(std::string_view record, InputKind kind, RenderedDocument& out, BadRecord& bad) const {
  out.all_trained = true;
  out.trained.clear();
  if (!valid_utf8(record)) {
    bad = {SkipReason::kInvalidUtf8, "invalid UTF-8"};
    return false;
  }
  if (kind == InputKind::kText) {
    if (blank(record)) {
      bad = {SkipReason::kEmpty, "empty document"};
      return false;
    }
    out.text.assign(record);
    return true;
  }
  Json j;
  try {
    j = Json::parse(record.begin(), record.end());
  } catch (const Json::parse_error& e) {
    std::string what = e.what();
    bad = {SkipReason::kMalformedJson, "malformed JSON: " + what.substr(what.find(' ') + 1)};
    return false;
  }
  if (!j.is_object()) {
    bad = {SkipReason::kWrongType, std::string("the line is a JSON ") + j.type_name() + ", expected an object"};
    return false;
  }
  if (cfg_.format == "instruction") return render_instruction(&j, out, bad);
  if (cfg_.format == "chat") return render_chat(&j, out, bad);
  if (!string_field(j, cfg_.text_field, false, out.text, bad)) return false;
  if (blank(out.text)) {
    bad = {SkipReason::kEmpty, "field '" + cfg_.text_field + "' is empty"};
    return false;
  }
  return true;
}

bool DocumentRenderer::render_instruction(const void* json, RenderedDocument& out, BadRecord& bad) const {
  const Json& j = *static_cast<const Json*>(json);
  std::string prompt, input, response;
  if (!string_field(j, cfg_.prompt_field, false, prompt, bad)) return false;
  if (!cfg_.input_field.empty() && !string_field(j, cfg_.input_field, true, input, bad)) return false;
  if (!string_field(j, cfg_.response_field, false, response, bad)) return false;
  if (blank(response)) {
    bad = {SkipReason::kEmpty, "field '" + cfg_.response_field + "' is empty"};
    return false;
  }
  if (!blank(input)) prompt += "\n\n" + input;  // Alpaca's layout: instruction, blank line, input
  out.text = prompt_head_ + prompt + prompt_tail_;
  size_t response_start = out.text.size();
  out.text += response + response_tail_;
  if (cfg_.mask_prompt) {
    out.all_trained = false;
    out.trained.emplace_back(response_start, out.text.size());
  }
  return true;
}

// The trained span of each assistant turn is found by rendering prefixes of the conversation:
// messages[:i] with the generation prompt ends where turn i's answer starts, messages[:i+1]
// ends where it stops. This works for any template that renders turns left to right.
bool DocumentRenderer::render_chat(const void* json, RenderedDocument& out, BadRecord& bad) const {
  const Json& j = *static_cast<const Json*>(json);
  auto it = j.find(cfg_.messages_field);
  if (it == j.end()) {
    bad = {SkipReason::kMissingField, "missing field '" + cfg_.messages_field + "'"};
    return false;
  }
  if (!it->is_array()) {
    bad = {SkipReason::kWrongType, "field '" + cfg_.messages_field + "' is a " + it->type_name() + ", expected a list"};
    return false;
  }
  const Json& msgs = *it;
  bool any_assistant = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    std::string where = cfg_.messages_field + "[" + std::to_string(i) + "]", role, content;
    if (!msgs[i].is_object()) {
      bad = {SkipReason::kWrongType, where + " is a " + msgs[i].type_name() + ", expected an object"};
      return false;
    }
    if (!string_field(msgs[i], "role", false, role, bad) || !string_field(msgs[i], "content", false, content, bad)) {
      bad.message = where + ": " + bad.message;
      return false;
    }
    any_assistant = any_assistant || role == "assistant";
  }
  if (!any_assistant) {
    bad = {SkipReason::kEmpty, "no assistant message to train on"};
    return false;
  }
  Json vars = {{"messages", msgs},
               {"bos_token", tokens_.bos_token},
               {"eos_token", tokens_.eos_token},
               {"add_generation_prompt", false}};
  try {
    out.text = chat_->render(vars);
    if (!cfg_.mask_prompt) return true;
    out.all_trained = false;
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (msgs[i]["role"] != "assistant") continue;
      vars["messages"] = Json(msgs.begin(), msgs.begin() + static_cast<std::ptrdiff_t>(i));
      vars["add_generation_prompt"] = true;
      std::string before = chat_->render(vars);
      vars["messages"].push_back(msgs[i]);
      vars["add_generation_prompt"] = false;
      std::string upto = chat_->render(vars);
      if (upto.compare(0, before.size(), before) != 0 || out.text.compare(0, upto.size(), upto) != 0) {
        bad = {SkipReason::kTemplateError, "the chat template does not render message " + std::to_string(i) +
                                               " after the earlier ones, so its loss mask cannot be found"};
        return false;
      }
      out.trained.emplace_back(before.size(), upto.size());
    }
  } catch (const jinja::RenderError& e) {
    bad = {SkipReason::kTemplateError, std::string("chat template: ") + e.what()};
    return false;
  }
  return true;
}

std::string render_chat_prompt(const ChatTokens& tokens, const std::string& messages_json,
                               bool add_generation_prompt) {
  if (tokens.chat_template.empty())
    throw Error("the tokenizer has no chat template (chat_template in tokenizer_config.json or "
                "chat_template.jinja); give the prompt as text with --prompt instead");
  const jinja::Template tmpl(tokens.chat_template, "tokenizer chat template");
  Json vars = {{"messages", Json::parse(messages_json)},
               {"bos_token", tokens.bos_token},
               {"eos_token", tokens.eos_token},
               {"add_generation_prompt", add_generation_prompt}};
  return tmpl.render(vars);
}

}  // namespace ftune::data
