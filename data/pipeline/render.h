// Turns one input record (a JSONL line or a text document) into the text to tokenize and the
// byte spans of it that are trained on, per format: text, instruction or chat.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/pipeline/input.h"
#include "data/pipeline/tokenize_config.h"

namespace ftune::data {

namespace jinja {
class Template;
}

// Why a record was not tokenized; the summary counts each.
enum class SkipReason { kMalformedJson, kMissingField, kWrongType, kInvalidUtf8, kEmpty, kTooLong, kTemplateError };
constexpr int kNumSkipReasons = 7;
const char* skip_reason_name(SkipReason reason);  // "malformed_json", ...

struct BadRecord {
  SkipReason reason;
  std::string message;  // without the file:line prefix
};

struct RenderedDocument {
  std::string text;
  bool all_trained = true;
  // [byte offsets into text] of the trained parts, sorted and disjoint; used when !all_trained.
  std::vector<std::pair<size_t, size_t>> trained;
};

// What the chat format takes from the tokenizer.
struct ChatTokens {
  std::string bos_token, eos_token;
  std::string chat_template;  // the tokenizer's own; "" when it has none
};

bool valid_utf8(std::string_view s);

// The prompt a chat model continues, as transformers' apply_chat_template(messages,
// tokenize=False, add_generation_prompt=...): the tokenizer's template rendered with
// bos_token/eos_token. `messages_json` is a JSON list of {"role", "content"} objects. Throws
// ftune::Error when tokens.chat_template is empty or the template fails.
std::string render_chat_prompt(const ChatTokens& tokens, const std::string& messages_json,
                               bool add_generation_prompt = true);

class DocumentRenderer {
 public:
  // Resolves the preset and the chat template; throws ftune::Error for a bad configuration
  // (e.g. format=chat and neither the tokenizer nor the config has a template).
  DocumentRenderer(const TokenizeConfig& cfg, const ChatTokens& tokens);
  ~DocumentRenderer();

  // The Jinja source of the chat template in use (format=chat), else "".
  const std::string& chat_template_source() const { return chat_source_; }

  // false with `bad` filled for a bad record. Thread-safe (const).
  bool render(std::string_view record, InputKind kind, RenderedDocument& out, BadRecord& bad) const;

 private:
  bool render_instruction(const void* json, RenderedDocument& out, BadRecord& bad) const;
  bool render_chat(const void* json, RenderedDocument& out, BadRecord& bad) const;

  TokenizeConfig cfg_;
  ChatTokens tokens_;
  std::string prompt_head_, prompt_tail_, response_tail_;  // instruction template around the fields
  std::unique_ptr<jinja::Template> chat_;
  std::string chat_source_;
};

}  // namespace ftune::data
