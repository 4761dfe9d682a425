// Chat templates by name, for tokenizers whose tokenizer_config.json has none (base models)
// or to override the model's own. Each is written to render exactly as that model's template.
#pragma once

#include <string>
#include <vector>

namespace ftune::data {

// The Jinja source of a built-in template: "chatml", "llama3" or "llama2"; throws ftune::Error
// listing the names otherwise.
const std::string& builtin_chat_template(const std::string& name);
std::vector<std::string> builtin_chat_template_names();

}  // namespace ftune::data
