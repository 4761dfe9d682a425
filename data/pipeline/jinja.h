// A small Jinja2 interpreter for Hugging Face chat templates (`chat_template` in
// tokenizer_config.json). It covers the subset that the Llama 2/3, Mistral and Qwen2/ChatML
// templates use -- for/if/set, namespace(), loop.*, the usual operators, a few filters, tests
// and string methods -- and renders with the same whitespace options as transformers'
// apply_chat_template (trim_blocks and lstrip_blocks on). Anything else is refused when the
// template is parsed, with the construct and its line:column, rather than rendered wrongly.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace ftune::data::jinja {

// Template values: ordered so that tojson keeps the key order of the input.
using Value = nlohmann::ordered_json;

// A failure while rendering: raise_exception(...) in the template, or a type error.
class RenderError : public Error {
 public:
  using Error::Error;
};

struct Node;

class Template {
 public:
  // Throws ftune::Error "<name>:<line>:<col>: ..." for syntax errors and unsupported constructs.
  explicit Template(const std::string& source, std::string name = "chat template");
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // `globals` is an object (messages, bos_token, add_generation_prompt, ...). Const and
  // thread-safe: all render state lives on the stack.
  std::string render(const Value& globals) const;

 private:
  std::string name_;
  std::string source_;  // kept for line:column in render errors
  std::vector<std::unique_ptr<Node>> body_;
};

}  // namespace ftune::data::jinja
