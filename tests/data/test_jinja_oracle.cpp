// The chat-template interpreter agrees byte for byte with jinja2 (configured as transformers'
// apply_chat_template) on real templates and the rest of the supported subset.
#include <gtest/gtest.h>

#include "data/pipeline/chat_templates.h"
#include "data/pipeline/jinja.h"
#include "tests/data/chat_template_fixtures.h"
#include "tests/support/test_support.h"

namespace ftune::data::jinja {
namespace {

using test::conversation;
using test::vars;

// Every template x conversation x generation-prompt setting agrees byte for byte with jinja2.
TEST(JinjaOracle, AgreesWithJinja2) {
  std::vector<std::string> templates = {builtin_chat_template("llama3"), builtin_chat_template("llama2"),
                                        builtin_chat_template("chatml"), test::kQwen2Template,
                                        test::kMistralTemplate, test::kKitchenSinkTemplate};
  std::vector<Value> convs = {conversation(true), conversation(false), Value::array()};
  Value odd = conversation(false);
  odd.push_back({{"role", "tool"}, {"content", "ünïcode \"q\""}, {"name", "calc"}});
  convs.push_back(odd);
  Value cases = Value::array();
  for (const auto& t : templates) {
    for (const auto& c : convs) {
      for (bool gen : {false, true}) cases.push_back({{"template", t}, {"vars", vars(c, gen)}});
    }
  }
  test::TempDir dir;
  test::write_file(dir.file("cases.json"), cases.dump());
  auto r = test::run_oracle("pipeline_render_chat.py", dir.file("cases.json") + " " + dir.file("out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Value expected = Value::parse(test::read_file(dir.file("out.json")));
  ASSERT_EQ(expected.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + "\n" + cases[i]["template"].get<std::string>());
    Template t(cases[i]["template"].get<std::string>());
    if (expected[i].contains("error")) {
      EXPECT_THROW(t.render(cases[i]["vars"]), Error) << expected[i]["error"];
    } else {
      EXPECT_EQ(t.render(cases[i]["vars"]), expected[i]["ok"].get<std::string>());
    }
  }
}

}  // namespace
}  // namespace ftune::data::jinja
