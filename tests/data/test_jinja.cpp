// The chat-template interpreter: exact renders of real templates and clear errors for what it
// does not support (agreement with jinja2: test_jinja_oracle.cpp).
#include <gtest/gtest.h>

#include "data/pipeline/chat_templates.h"
#include "data/pipeline/jinja.h"
#include "tests/data/chat_template_fixtures.h"

namespace ftune::data::jinja {
namespace {

using test::conversation;
using test::vars;

TEST(Jinja, Llama3RendersHeadersTrimmedContentAndOneBos) {
  Template t(builtin_chat_template("llama3"));
  Value v = vars(conversation(true), true);
  v["bos_token"] = "<|begin_of_text|>";
  EXPECT_EQ(t.render(v),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nCapital of France?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nParis.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(Jinja, ChatmlAndLlama2) {
  Value msgs = Value::array({Value{{"role", "user"}, {"content", "Hi"}}, Value{{"role", "assistant"}, {"content", "Yo"}}});
  EXPECT_EQ(Template(builtin_chat_template("chatml")).render(vars(msgs, false)),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n");
  msgs.insert(msgs.begin(), Value{{"role", "system"}, {"content", "Sys"}});
  EXPECT_EQ(Template(builtin_chat_template("llama2")).render(vars(msgs, false)),
            "<s>[INST] <<SYS>>\nSys\n<</SYS>>\n\nHi [/INST] Yo </s>");
}

TEST(Jinja, RaiseExceptionCarriesTheTemplatesMessage) {
  Template t(test::kMistralTemplate);
  Value msgs = Value::array({Value{{"role", "assistant"}, {"content", "first"}}});
  try {
    t.render(vars(msgs, false));
    FAIL() << "expected a RenderError";
  } catch (const RenderError& e) {
    EXPECT_NE(std::string(e.what()).find("Conversation roles must alternate"), std::string::npos) << e.what();
  }
}

void expect_parse_error(const std::string& src, const std::string& what, const std::string& where) {
  try {
    Template t(src, "tpl");
    FAIL() << "expected an error for " << src;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_NE(msg.find(where), std::string::npos) << msg;
  }
}

TEST(Jinja, UnsupportedConstructsAreNamedWithTheirPosition) {
  expect_parse_error("ab\n  {% macro f() %}x{% endmacro %}", "unsupported Jinja construct '{% macro %}'", "tpl:2:6");
  expect_parse_error("{% set x %}body{% endset %}", "'{% set %} block'", "tpl:1:4");
  expect_parse_error("{{ x ** 2 }}", "'**'", "tpl:1:6");
  expect_parse_error("{% for x in y %}", "missing '{% endfor %}'", "tpl:1:17");
  expect_parse_error("{{ 'abc }}", "unclosed", "tpl:1:1");
  expect_parse_error("{% generation %}", "'{% generation %}'", "tpl:1:4");
  expect_parse_error("a\n{{ x | wordwrap }}", "unsupported Jinja filter 'wordwrap'", "tpl:2:8");
  expect_parse_error("{% if x is odd %}{% endif %}", "unsupported Jinja test 'odd'", "tpl:1:9");
  expect_parse_error("{{ strftime_now('%d') }}", "unsupported Jinja function 'strftime_now'", "tpl:1:4");
  expect_parse_error("{{ m.content.title() }}", "unsupported method 'title'", "tpl:1:13");
}

// Found by a mutation run through the CLI: std::stoll/std::stod threw std::out_of_range past the
// parser, and `ftune data tokenize` ended as "internal error: stoll" (exit 3).
TEST(Jinja, NumberLiteralsOutOfRangeNameTheLiteralAndItsPosition) {
  expect_parse_error("{{ message['role'-9223372036854775808] }}",
                     "integer literal 9223372036854775808 is out of range", "tpl:1:19");
  expect_parse_error("x\n{{ 1" + std::string(400, '0') + ".5 }}", "float literal 1000", "tpl:2:4");
  // The largest int64 still parses and renders.
  EXPECT_EQ(Template("{{ 9223372036854775807 }}").render(Value::object()), "9223372036854775807");
  EXPECT_EQ(Template("{{ -9223372036854775807 - 1 }}").render(Value::object()), "-9223372036854775808");
}

std::string render_error(const std::string& src) {
  try {
    Template("x\n" + src, "tpl").render(vars(conversation(false), false));
  } catch (const RenderError& e) {
    return e.what();
  }
  return "(rendered)";
}

// Found with scripts/fuzz.sh jinja and its seeds: signed overflow (undefined behaviour; a
// SIGFPE for INT64_MIN // -1 in a release build), stack overflows on deep nesting, and loops
// or strings without bound (a hang or an out-of-memory per record).
TEST(Jinja, IntegerOverflowIsARenderErrorNotUndefinedBehaviour) {
  EXPECT_NE(render_error("{{ 9223372036854775807 + 1 }}").find("tpl:2:24: integer overflow in 9223372036854775807 + 1"),
            std::string::npos) << render_error("{{ 9223372036854775807 + 1 }}");
  EXPECT_NE(render_error("{{ 3037000500 * 3037000500 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(render_error("{{ (-9223372036854775807 - 1) // -1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(render_error("{{ -(-9223372036854775807 - 1) }}").find("integer overflow in -(-9223372036854775808)"),
            std::string::npos);
  // Python: INT64_MIN % -1 == 0, and floor division still rounds down.
  EXPECT_EQ(Template("{{ (-9223372036854775807 - 1) % -1 }} {{ -7 // 2 }}").render(Value::object()), "0 -4");
}

TEST(Jinja, DeepNestingIsRefusedWhenParsed) {
  expect_parse_error("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}", "nested more than 256 levels",
                     "tpl:1:");
  std::string chain = "{{ 1";
  for (int i = 0; i < 600; ++i) chain += " + 1";
  expect_parse_error(chain + " }}", "expression nested more than 256 levels", "tpl:1:");
  std::string blocks;
  for (int i = 0; i < 300; ++i) blocks += "{% if true %}";
  expect_parse_error(blocks, "nested more than 256 levels", "tpl:1:");
}

TEST(Jinja, LoopsAndStringsAreBoundedPerRender) {
  EXPECT_NE(render_error("{% for i in range(100000000) %}{% endfor %}").find("tpl:2:18: range(100000000) is over 1048576 items"),
            std::string::npos);
  EXPECT_NE(render_error("{% for a in range(400) %}{% for b in range(400) %}{% endfor %}{% endfor %}")
                .find("more than 100000 loop iterations"),
            std::string::npos);
  EXPECT_NE(render_error("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                         "{% endfor %}").find("a string of over 67108864 bytes"),
            std::string::npos);
}

}  // namespace
}  // namespace ftune::data::jinja
