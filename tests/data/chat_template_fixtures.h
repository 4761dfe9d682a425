// Chat templates written to match the structure of real models' tokenizer_config.json
// templates, plus one that exercises the rest of the supported Jinja subset.
#pragma once

#include "data/pipeline/jinja.h"

namespace ftune::test {

// Qwen2-Instruct: ChatML with a default system turn when the conversation has none.
inline const char* const kQwen2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Mistral-7B-Instruct v0.1: BOS once, [INST] ... [/INST] answer</s>, strict alternation.
inline const char* const kMistralTemplate =
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}";

// Multi-line, indented, with whitespace control, namespace(), loop.last, elif, tests,
// `in`, `~`, slicing, tojson, methods and filters: the rest of the subset.
inline const char* const kKitchenSinkTemplate = R"JINJA(
{%- set ns = namespace(system='', count=0) -%}
{%- if messages[0].role == 'system' -%}
    {%- set ns.system = messages[0]['content'] | trim -%}
    {%- set rest = messages[1:] -%}
{%- else -%}
    {%- set rest = messages -%}
{%- endif %}
{{ bos_token }}
{% if ns.system %}
    System: {{ ns.system }}
{% endif %}
{% for m in rest %}
    {% set ns.count = ns.count + 1 %}
    {% if m['role'] == 'user' %}
  [{{ loop.index }}/{{ loop.length }}] User: {{ m.content.strip() }}
    {% elif m.role in ['assistant', 'bot'] and m.content is defined %}
  Bot~ {{ m.content ~ ' (' ~ (m.content | length) ~ ')' }}{{ eos_token if loop.last else '' }}
    {% else %}
  Other {{ m | tojson }} {{ m.get('name', 'anon') | upper }}
    {% endif %}
{% endfor %}
{#- a comment -#}
turns={{ ns.count }} {{ 'gen' if add_generation_prompt else 'nogen' }} {{ (7 // 2) ~ (-7 % 3) ~ (not true) }}
{%- if add_generation_prompt %}
Bot~{% endif %}
)JINJA";

// A conversation with (or without) a system turn, and the variables a chat template sees.
inline data::jinja::Value conversation(bool with_system) {
  data::jinja::Value msgs = data::jinja::Value::array();
  if (with_system) msgs.push_back({{"role", "system"}, {"content", " Be brief. "}});
  msgs.push_back({{"role", "user"}, {"content", "Hi there"}});
  msgs.push_back({{"role", "assistant"}, {"content", "Hello! "}});
  msgs.push_back({{"role", "user"}, {"content", "Capital of France?"}});
  msgs.push_back({{"role", "assistant"}, {"content", "Paris."}});
  return msgs;
}

inline data::jinja::Value vars(data::jinja::Value messages, bool gen) {
  return {{"messages", std::move(messages)},
          {"bos_token", "<s>"},
          {"eos_token", "</s>"},
          {"add_generation_prompt", gen}};
}

}  // namespace ftune::test
