// libFuzzer target for the Jinja chat-template parser and renderer (scripts/fuzz.sh jinja): the
// input is parsed as a template and rendered with a small fixed conversation, with and without
// the generation prompt, as `ftune data tokenize --format chat` does. Parse errors must name
// the template ("fuzz-template:<line>:<col>: ..."); render failures must be RenderErrors;
// anything else (another exception, a sanitizer report, a hang) is a finding.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "data/pipeline/jinja.h"

namespace {

using ftune::data::jinja::Value;

const Value& conversation() {
  static const Value msgs = Value::array({
      Value{{"role", "system"}, {"content", " Be brief. "}},
      Value{{"role", "user"}, {"content", "Hi there"}},
      Value{{"role", "assistant"}, {"content", "Hello! "}},
      Value{{"role", "user"}, {"content", "\xC3\x9Cn\xC3\xAF \xE6\xBC\xA2 {{ not a tag }}"}},
      Value{{"role", "assistant"}, {"content", "Paris.", }, {"name", "bot"}},
  });
  return msgs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<ftune::data::jinja::Template> t;
  try {
    t = std::make_unique<ftune::data::jinja::Template>(source, "fuzz-template");
  } catch (const ftune::Error& e) {
    if (std::string(e.what()).rfind("fuzz-template:", 0) != 0) std::abort();  // says where
    return 0;
  }
  for (bool gen : {false, true}) {
    Value vars = {{"messages", conversation()}, {"bos_token", "<s>"}, {"eos_token", "</s>"},
                  {"add_generation_prompt", gen}};
    try {
      (void)t->render(vars);
    } catch (const ftune::data::jinja::RenderError& e) {
      if (std::string(e.what()).rfind("fuzz-template:", 0) != 0) std::abort();
    }
  }
  return 0;
}
