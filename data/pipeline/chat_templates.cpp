#include "data/pipeline/chat_templates.h"

#include <map>

#include "common/error.h"

namespace ftune::data {
namespace {

// Each turn is <|im_start|>role\ncontent<|im_end|>\n (Qwen2 without its default system turn).
const char* const kChatml =
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Llama 3 Instruct: header tokens around the role, trimmed content, <|eot_id|>; BOS first.
const char* const kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

// Llama 2 Chat: [INST] blocks with the system prompt folded into the first user turn, a BOS
// before every user turn and an EOS after every answer; roles must alternate.
const char* const kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";

const std::map<std::string, std::string>& templates() {
  static const std::map<std::string, std::string> kTemplates = {
      {"chatml", kChatml}, {"llama3", kLlama3}, {"llama2", kLlama2}};
  return kTemplates;
}

}  // namespace

const std::string& builtin_chat_template(const std::string& name) {
  auto it = templates().find(name);
  if (it == templates().end()) {
    std::string names;
    for (const auto& n : builtin_chat_template_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error("unknown chat template '" + name + "' (built-in: " + names +
                "; or leave it empty to use the tokenizer's own)");
  }
  return it->second;
}

std::vector<std::string> builtin_chat_template_names() {
  std::vector<std::string> names;
  for (const auto& [name, _] : templates()) names.push_back(name);
  return names;
}

}  // namespace ftune::data
