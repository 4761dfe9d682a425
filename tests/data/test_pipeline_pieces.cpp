// The tokenize pipeline's pieces without a tokenizer: inputs (globs, gzip, zstd, lines) and
// document rendering per format (text, spans of the trained parts, bad records).
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/pipeline/input.h"
#include "data/pipeline/render.h"
#include "tests/data/chat_template_fixtures.h"
#include "tests/support/test_support.h"

namespace ftune::data {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  LineReader r(path);
  std::vector<std::string> lines;
  for (std::string line; r.next(line);) lines.push_back(line);
  EXPECT_EQ(r.line_number(), static_cast<int64_t>(lines.size()));
  return lines;
}

TEST(PipelineInput, PlainGzipAndZstdReadTheSameLines) {
  test::TempDir dir;
  std::string text = "first line\r\nsecond\n\nlast without newline";
  for (int i = 0; i < 3000; ++i) text += "\nfiller line number " + std::to_string(i);  // > one read chunk compressed
  test::write_file(dir.file("a.jsonl"), text);
  auto r = test::run_shell("cd " + dir.path() + " && gzip -k a.jsonl && zstd -q -k a.jsonl && "
                           "(gzip -c a.jsonl; gzip -c a.jsonl) > twice.jsonl.gz");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto plain = read_lines(dir.file("a.jsonl"));
  ASSERT_EQ(plain.size(), 3004u);
  EXPECT_EQ(plain[0], "first line");
  EXPECT_EQ(plain[2], "");
  EXPECT_EQ(plain[3], "last without newline");
  EXPECT_EQ(read_lines(dir.file("a.jsonl.gz")), plain);
  EXPECT_EQ(read_lines(dir.file("a.jsonl.zst")), plain);
  auto twice = read_lines(dir.file("twice.jsonl.gz"));  // concatenated gzip members
  ASSERT_EQ(twice.size(), 2 * plain.size() - 1);         // the last line of the first joins the second
}

TEST(PipelineInput, OverlongLinesAreErrorsNamingFileAndLine) {
  test::TempDir dir;
  test::write_file(dir.file("long.jsonl"), "{\"text\": \"ok\"}\n" + std::string(3 << 20, 'x') + "\nlast\n");
  LineReader r(dir.file("long.jsonl"), 2 << 20);
  std::string line;
  ASSERT_TRUE(r.next(line));
  try {
    r.next(line);
    FAIL() << "read a line of 3 MiB with a 2 MiB limit";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("long.jsonl") + ":2: a line longer than 2097152 bytes"),
              std::string::npos) << e.what();
  }
  // Lines longer than the read buffer but within the limit still read whole.
  LineReader ok(dir.file("long.jsonl"), 4 << 20);
  ASSERT_TRUE(ok.next(line) && ok.next(line));
  EXPECT_EQ(line.size(), size_t{3} << 20);
}

TEST(PipelineInput, CorruptAndTruncatedCompressedFilesAreErrors) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; text.size() < 100000; ++i) text += std::to_string(i * 7919 % 100003) + " ";
  text.resize(100000);
  test::write_file(dir.file("a.txt"), text);
  ASSERT_EQ(test::run_shell("cd " + dir.path() + " && gzip -k a.txt && zstd -q -k a.txt && "
                            "head -c 20000 a.txt.gz > cut.txt.gz && head -c 20000 a.txt.zst > cut.txt.zst && "
                            "printf 'not gzip at all' > bad.txt.gz").exit_code, 0);
  for (const char* name : {"cut.txt.gz", "cut.txt.zst", "bad.txt.gz"}) {
    try {
      LineReader(dir.file(name)).read_all();
      ADD_FAILURE() << name << " should not read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(LineReader(dir.file("a.txt.zst")).read_all().size(), 100000u);
}

TEST(PipelineInput, GlobsExpandSortedAndMissingInputsAreNamed) {
  test::TempDir dir;
  for (const char* n : {"b.jsonl", "a.jsonl", "c.txt.gz"}) test::write_file(dir.file(n), "");
  auto files = expand_inputs({dir.file("*.jsonl"), dir.file("c.txt.gz")});
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0], dir.file("a.jsonl"));
  EXPECT_EQ(files[1], dir.file("b.jsonl"));
  EXPECT_EQ(input_kind_of(files[2]), InputKind::kText);
  EXPECT_EQ(compression_of(files[2]), Compression::kGzip);
  EXPECT_EQ(input_kind_of("x.jsonl.zst"), InputKind::kJsonl);
  try {
    expand_inputs({dir.file("*.parquet")});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("*.parquet' matches no file"), std::string::npos) << e.what();
  }
}

TEST(PipelineRender, Utf8Validation) {
  EXPECT_TRUE(valid_utf8("plain, ünïcödé, 漢字, 🙂"));
  EXPECT_FALSE(valid_utf8("\xff"));
  EXPECT_FALSE(valid_utf8("\xc3"));          // truncated
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));  // surrogate
}

std::string trained_text(const RenderedDocument& d) {
  if (d.all_trained) return d.text;
  std::string s;
  for (auto [a, b] : d.trained) s += d.text.substr(a, b - a) + "|";
  return s;
}

TEST(PipelineRender, TextFormat) {
  TokenizeConfig cfg;
  cfg.text_field = "body";
  DocumentRenderer r(cfg, {});
  RenderedDocument d;
  BadRecord bad;
  ASSERT_TRUE(r.render(R"({"body": "hello", "x": 1})", InputKind::kJsonl, d, bad));
  EXPECT_EQ(d.text, "hello");
  EXPECT_TRUE(d.all_trained);
  ASSERT_TRUE(r.render("a plain line", InputKind::kText, d, bad));
  EXPECT_EQ(d.text, "a plain line");
}

TEST(PipelineRender, InstructionPresetsAndMask) {
  TokenizeConfig cfg;
  cfg.format = "instruction";
  cfg.preset = "alpaca";
  DocumentRenderer alpaca(cfg, {});
  RenderedDocument d;
  BadRecord bad;
  ASSERT_TRUE(alpaca.render(R"({"instruction": "Add", "input": "2+2", "output": "4"})", InputKind::kJsonl, d, bad));
  EXPECT_EQ(d.text, "USER: Add\n\n2+2\nASSISTANT: 4");
  EXPECT_EQ(trained_text(d), "4|");
  ASSERT_TRUE(alpaca.render(R"({"instruction": "Hi", "output": "Yo"})", InputKind::kJsonl, d, bad));  // input optional
  EXPECT_EQ(d.text, "USER: Hi\nASSISTANT: Yo");

  cfg.preset = "qa";
  cfg.instruction_template = "Q: {prompt}\nA:{response}\n";
  cfg.mask_prompt = false;
  DocumentRenderer qa(cfg, {});
  ASSERT_TRUE(qa.render(R"({"question": "Why?", "answer": " Because."})", InputKind::kJsonl, d, bad));
  EXPECT_EQ(d.text, "Q: Why?\nA: Because.\n");
  EXPECT_TRUE(d.all_trained);

  cfg.instruction_template = "{response} before {prompt}";
  EXPECT_THROW(DocumentRenderer(cfg, {}), Error);
}

TEST(PipelineRender, BadRecordsHaveAReasonAndMessage) {
  TokenizeConfig cfg;
  cfg.format = "instruction";
  cfg.preset = "qa";
  DocumentRenderer r(cfg, {});
  struct Case {
    std::string line;
    SkipReason reason;
    std::string message;
  };
  std::vector<Case> cases = {
      {R"({"question": "x", "answer": )", SkipReason::kMalformedJson, "malformed JSON"},
      {R"({"question": "x"})", SkipReason::kMissingField, "missing field 'answer'"},
      {R"({"question": 3, "answer": "y"})", SkipReason::kWrongType, "field 'question' is a number, expected a string"},
      {"{\"question\": \"\xff\", \"answer\": \"y\"}", SkipReason::kInvalidUtf8, "invalid UTF-8"},
      {R"({"question": "x", "answer": "  "})", SkipReason::kEmpty, "field 'answer' is empty"},
      {R"([1, 2])", SkipReason::kWrongType, "expected an object"},
  };
  for (const auto& c : cases) {
    RenderedDocument d;
    BadRecord bad;
    EXPECT_FALSE(r.render(c.line, InputKind::kJsonl, d, bad)) << c.line;
    EXPECT_EQ(bad.reason, c.reason) << c.line;
    EXPECT_NE(bad.message.find(c.message), std::string::npos) << bad.message;
  }
}

const char* const kChat =
    R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]})";

TEST(PipelineRender, ChatMasksExactlyTheAssistantTurns) {
  TokenizeConfig cfg;
  cfg.format = "chat";
  ChatTokens toks{"<|begin_of_text|>", "<|eot_id|>", ""};
  RenderedDocument d;
  BadRecord bad;
  cfg.chat_template = "llama3";
  ASSERT_TRUE(DocumentRenderer(cfg, toks).render(kChat, InputKind::kJsonl, d, bad)) << bad.message;
  EXPECT_EQ(trained_text(d), "Hello!<|eot_id|>|4<|eot_id|>|");
  EXPECT_EQ(d.text.rfind("<|begin_of_text|>", 0), 0u);
  cfg.chat_template = "";  // the tokenizer's own template (here Qwen2's)
  toks.chat_template = test::kQwen2Template;
  ASSERT_TRUE(DocumentRenderer(cfg, toks).render(kChat, InputKind::kJsonl, d, bad)) << bad.message;
  EXPECT_EQ(trained_text(d), "Hello!<|im_end|>\n|4<|im_end|>\n|");
  cfg.chat_template = "llama2";
  toks = {"<s>", "</s>", ""};
  ASSERT_TRUE(DocumentRenderer(cfg, toks).render(kChat, InputKind::kJsonl, d, bad)) << bad.message;
  EXPECT_EQ(trained_text(d), " Hello! </s>| 4 </s>|");
}

TEST(PipelineRender, ChatBadRecords) {
  TokenizeConfig cfg;
  cfg.format = "chat";
  cfg.chat_template = "llama2";
  DocumentRenderer r(cfg, {"<s>", "</s>", ""});
  RenderedDocument d;
  BadRecord bad;
  EXPECT_FALSE(r.render(R"({"messages": [{"role": "user"}]})", InputKind::kJsonl, d, bad));
  EXPECT_EQ(bad.reason, SkipReason::kMissingField);
  EXPECT_EQ(bad.message, "messages[0]: missing field 'content'");
  EXPECT_FALSE(r.render(R"({"messages": "hi"})", InputKind::kJsonl, d, bad));
  EXPECT_EQ(bad.reason, SkipReason::kWrongType);
  EXPECT_FALSE(r.render(R"({"messages": [{"role": "user", "content": "a"}]})", InputKind::kJsonl, d, bad));
  EXPECT_EQ(bad.reason, SkipReason::kEmpty);
  EXPECT_FALSE(r.render(R"({"messages": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]})",
                        InputKind::kJsonl, d, bad));
  EXPECT_EQ(bad.reason, SkipReason::kTemplateError);
  EXPECT_NE(bad.message.find("Conversation roles must alternate"), std::string::npos) << bad.message;
  cfg.chat_template = "";
  EXPECT_THROW(DocumentRenderer(cfg, {}), Error);  // no template anywhere
}

}  // namespace
}  // namespace ftune::data
