// `ftune data tokenize` end to end: each format against the `tokenizers` oracle (ids of the
// rendered text; the mask from its offsets over spans we write down by construction), the
// shard metadata, thread-count independence, compressed inputs, bad input and the summary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace ftune::test {
namespace {

using Json = nlohmann::json;
using Segments = std::vector<std::pair<std::string, bool>>;  // (text, trained)

constexpr int kBos = 0;  // <|begin_of_text|>: the first special token of the tiny tokenizers
constexpr int kEotId = 4;  // <|eot_id|>, the Llama-3-like tokenizer's EOS
constexpr int kImEnd = 6;  // <|im_end|>, the ChatML tokenizer's EOS

class TokenizeE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tokenizers_ = new TempDir;
    for (const char* style : {"llama3", "chatml", "llama2"}) {
      auto r = run_oracle("pipeline_make_tokenizer.py", tokenizers_->file(style) + " " + style);
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }
  static void TearDownTestSuite() {
    delete tokenizers_;
    tokenizers_ = nullptr;
  }
  static std::string tok(const char* style) { return tokenizers_->file(style); }

  // Runs `ftune data tokenize` on the given inputs into dir/out (removed first).
  ProcessResult tokenize(const std::string& inputs, const std::string& style, const std::string& extra) {
    run_shell("rm -rf " + dir_.file("out"));
    return run_ftune("data tokenize --inputs " + inputs + " --output " + dir_.file("out") + " --tokenizer " +
                     tok(style.c_str()) + " " + extra + " 2>&1");
  }
  // The oracle's expected ids/masks for `cases` and what dir/out holds.
  Json oracle(const std::string& style, const std::vector<Segments>& cases) {
    Json c = Json::array();
    for (const auto& segs : cases) {
      Json s = Json::array();
      for (const auto& [text, trained] : segs) s.push_back({text, trained});
      c.push_back(s);
    }
    write_file(dir_.file("cases.json"), c.dump());
    auto r = run_oracle("pipeline_expect.py", tok(style.c_str()) + " " + dir_.file("cases.json") + " " +
                                                  dir_.file("out") + " " + dir_.file("oracle.json"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return Json::parse(read_file(dir_.file("oracle.json")));
  }

  TempDir dir_;
  static TempDir* tokenizers_;
};
TempDir* TokenizeE2E::tokenizers_ = nullptr;

std::vector<int> ids_of(const Json& j) { return j.get<std::vector<int>>(); }

TEST_F(TokenizeE2E, TextFormatJsonlAndTxtMatchTheReferenceIdsAndMetadata) {
  write_file(dir_.file("a.jsonl"), "{\"text\": \"Hello there! How are you today?\"}\n\n{\"text\": \"Ünïcödé 漢字 🙂\", \"id\": 7}\n");
  write_file(dir_.file("b.txt"), "The quick brown fox.\nWhat is the capital of France?\n");
  auto r = tokenize(dir_.file("a.jsonl") + " " + dir_.file("*.txt"), "llama3", "");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json o = oracle("llama3", {{{"Hello there! How are you today?", true}}, {{"Ünïcödé 漢字 🙂", true}},
                             {{"The quick brown fox.", true}}, {{"What is the capital of France?", true}}});
  ASSERT_EQ(o["docs"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    std::vector<int> want = {kBos};  // the post-processor's BOS, and EOS to end the document
    for (int id : ids_of(o["expected"][i]["ids"])) want.push_back(id);
    want.push_back(kEotId);
    EXPECT_EQ(ids_of(o["docs"][i]["ids"]), want) << "doc " << i;
    EXPECT_TRUE(o["docs"][i]["mask"].is_null());
  }
  EXPECT_EQ(o["index"]["has_loss_mask"], false);
  EXPECT_EQ(o["attrs"]["tokenizer_hash"], o["tokenizer_sha256"]);
  EXPECT_EQ(o["attrs"]["bos_id"], kBos);
  EXPECT_EQ(o["attrs"]["eos_id"], kEotId);
  EXPECT_EQ(o["attrs"]["source_files"], Json({dir_.file("a.jsonl"), dir_.file("b.txt")}));
  EXPECT_FALSE(o["attrs"]["tool_version"].get<std::string>().empty());
  EXPECT_NE(r.output.find("2 file(s), 4 record(s) -> 4 documents"), std::string::npos) << r.output;
}

TEST_F(TokenizeE2E, InstructionTrainsOnTheResponseAndEos) {
  write_file(dir_.file("i.jsonl"),
             "{\"instruction\": \"Add\", \"input\": \"2+2\", \"output\": \"4\"}\n"
             "{\"instruction\": \"What is the capital of France?\", \"output\": \"Paris.\"}\n");
  auto r = tokenize(dir_.file("i.jsonl"), "llama3", "--format instruction --preset alpaca");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json o = oracle("llama3", {{{"USER: Add\n\n2+2\nASSISTANT: ", false}, {"4", true}},
                             {{"USER: What is the capital of France?\nASSISTANT: ", false}, {"Paris.", true}}});
  ASSERT_EQ(o["docs"].size(), 2u);
  int64_t tokens = 0, masked = 0;
  for (size_t i = 0; i < 2; ++i) {
    std::vector<int> ids = {kBos}, mask = {0};
    for (int id : ids_of(o["expected"][i]["ids"])) ids.push_back(id);
    for (int m : ids_of(o["expected"][i]["mask"])) mask.push_back(m);
    ids.push_back(kEotId);
    mask.push_back(1);
    EXPECT_EQ(ids_of(o["docs"][i]["ids"]), ids);
    EXPECT_EQ(ids_of(o["docs"][i]["mask"]), mask);
    tokens += static_cast<int64_t>(ids.size());
    for (int m : mask) masked += m == 0;
  }
  EXPECT_EQ(o["index"]["masked_tokens"], masked);
  char frac[64];
  std::snprintf(frac, sizeof(frac), "%lld tokens (%.2f%% masked)", static_cast<long long>(tokens), 100.0 * masked / tokens);
  EXPECT_NE(r.output.find(frac), std::string::npos) << frac << "\n" << r.output;
}

// `ftune data inspect --tokenizer` on what `data tokenize` wrote: the prompt (and the BOS
// before it) masked in brackets, the response and EOS plain, decoded without spaces added
// where the runs meet; another tokenizer is refused.
TEST_F(TokenizeE2E, InspectDecodesTheShardsWithTheirTokenizerOnly) {
  write_file(dir_.file("i.jsonl"), "{\"instruction\": \"What is the capital of France?\", \"output\": \"Paris.\"}\n");
  ASSERT_EQ(tokenize(dir_.file("i.jsonl"), "llama3", "--format instruction --preset alpaca").exit_code, 0);
  auto r = run_ftune("data inspect " + dir_.file("out") + " --samples 1 --tokenizer " + tok("llama3"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The space after "ASSISTANT:" is part of the token " Paris.", which is trained on.
  EXPECT_NE(r.output.find("[<|begin_of_text|>USER: What is the capital of France?\nASSISTANT:] Paris.<|eot_id|>"),
            std::string::npos) << r.output;
  auto other = run_ftune("data inspect " + dir_.file("out") + " --samples 1 --tokenizer " + tok("chatml"));
  EXPECT_NE(other.exit_code, 0);
  const std::string sha = run_shell("sha256sum " + tok("chatml") + "/tokenizer.json").output.substr(0, 64);
  const Json index = Json::parse(read_file(dir_.file("out") + "/index.json"));
  EXPECT_NE(other.output.find("has hash " + sha), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("tokenizer hash " + index["tokenizer_hash"].get<std::string>()), std::string::npos)
      << other.output;
}

const char* const kChatJsonl =
    R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},)"
    R"( {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Capital of France?"},)"
    R"( {"role": "assistant", "content": "Paris."}]})"
    "\n";

TEST_F(TokenizeE2E, ChatWithTheTokenizersLlama3LikeTemplate) {
  write_file(dir_.file("c.jsonl"), kChatJsonl);
  auto r = tokenize(dir_.file("c.jsonl"), "llama3", "--format chat");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string h = "<|start_header_id|>", e = "<|end_header_id|>\n\n";
  Json o = oracle("llama3", {{{"<|begin_of_text|>" + h + "system" + e + "Be brief.<|eot_id|>" + h + "user" + e +
                                   "Hi there<|eot_id|>" + h + "assistant" + e, false},
                              {"Hello!<|eot_id|>", true},
                              {h + "user" + e + "Capital of France?<|eot_id|>" + h + "assistant" + e, false},
                              {"Paris.<|eot_id|>", true}}});
  ASSERT_EQ(o["docs"].size(), 1u);
  // The template's BOS is not doubled and no EOS is appended: the ids are the reference's.
  EXPECT_EQ(o["docs"][0]["ids"], o["expected"][0]["ids"]);
  EXPECT_EQ(o["docs"][0]["mask"], o["expected"][0]["mask"]);
  EXPECT_EQ(o["docs"][0]["ids"][0], kBos);
  EXPECT_NE(o["docs"][0]["ids"][1], kBos);
  EXPECT_EQ(o["index"]["has_loss_mask"], true);
}

TEST_F(TokenizeE2E, ChatWithChatmlTemplates) {
  write_file(dir_.file("c.jsonl"), kChatJsonl);
  Segments want = {{"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                    "<|im_start|>assistant\n", false},
                   {"Hello!<|im_end|>\n", true},
                   {"<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n", false},
                   {"Paris.<|im_end|>\n", true}};
  auto r = tokenize(dir_.file("c.jsonl"), "chatml", "--format chat");  // the tokenizer's own (no BOS)
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json o = oracle("chatml", {want});
  EXPECT_EQ(o["docs"][0]["ids"], o["expected"][0]["ids"]);
  EXPECT_EQ(o["docs"][0]["mask"], o["expected"][0]["mask"]);
  EXPECT_EQ(o["attrs"]["eos_id"], kImEnd);

  // The built-in chatml on a tokenizer that adds BOS: the BOS comes first, untrained.
  r = tokenize(dir_.file("c.jsonl"), "llama3", "--format chat --chat-template chatml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  o = oracle("llama3", {want});
  std::vector<int> ids = {kBos}, mask = {0};
  for (int id : ids_of(o["expected"][0]["ids"])) ids.push_back(id);
  for (int m : ids_of(o["expected"][0]["mask"])) mask.push_back(m);
  EXPECT_EQ(ids_of(o["docs"][0]["ids"]), ids);
  EXPECT_EQ(ids_of(o["docs"][0]["mask"]), mask);
}

// SentencePiece-style tokenizer (a "\u2581" prepended to every text piece between special
// tokens, byte fallback): the built-in llama2 template with a BOS per user turn.
TEST_F(TokenizeE2E, ChatWithLlama2TemplateOnASentencePieceStyleTokenizer) {
  write_file(dir_.file("c.jsonl"), kChatJsonl);
  auto r = tokenize(dir_.file("c.jsonl"), "llama2", "--format chat --chat-template llama2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json o = oracle("llama2", {{{"<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]", false},
                              {" Hello! </s>", true},
                              {"<s>[INST] Capital of France? [/INST]", false},
                              {" Paris. </s>", true}}});
  EXPECT_EQ(o["docs"][0]["ids"], o["expected"][0]["ids"]);
  EXPECT_EQ(o["docs"][0]["mask"], o["expected"][0]["mask"]);
  EXPECT_EQ(r.output.find("could not be aligned"), std::string::npos) << r.output;
}

TEST_F(TokenizeE2E, ChatTemplateErrorsNameTheConstruct) {
  write_file(dir_.file("c.jsonl"), kChatJsonl);
  write_file(dir_.file("t.jinja"), "{% for m in messages %}\n{% macro x() %}{% endmacro %}{% endfor %}");
  auto r = tokenize(dir_.file("c.jsonl"), "llama3", "--format chat --chat-template " + dir_.file("t.jinja"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("t.jinja:2:4: unsupported Jinja construct '{% macro %}'"), std::string::npos) << r.output;
}

// Many documents over many shards: 1 and 4 encoder threads write the same set.
TEST_F(TokenizeE2E, OutputDoesNotDependOnTheThreadCount) {
  std::string lines;
  for (int i = 0; i < 3000; ++i) {
    lines += "{\"question\": \"What is " + std::to_string(i) + " plus " + std::to_string(i * 7 % 13) +
             "?\", \"answer\": \"It is " + std::to_string(i + i * 7 % 13) + ".\"}\n";
    if (i % 500 == 7) lines += "{\"question\": \"broken\"}\n";
  }
  write_file(dir_.file("qa.jsonl"), lines);
  std::string args = "--format instruction --preset qa --tokens-per-shard 5000 --on-error skip";
  auto r1 = tokenize(dir_.file("qa.jsonl"), "llama3", args + " --threads 1");
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  Json one = oracle("llama3", {});
  auto r4 = tokenize(dir_.file("qa.jsonl"), "llama3", args + " --threads 4");
  ASSERT_EQ(r4.exit_code, 0) << r4.output;
  Json four = oracle("llama3", {});
  EXPECT_EQ(one["docs"].size(), 3000u);
  EXPECT_GT(one["index"]["shards"].size(), 5u);
  EXPECT_EQ(one["docs"], four["docs"]);
  EXPECT_EQ(one["index"], four["index"]);
  EXPECT_NE(r4.output.find("skipped 6 record(s): missing_field 6"), std::string::npos) << r4.output;
  auto v = run_ftune("data verify " + dir_.file("out") + " 2>&1");  // the shards team's full check
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

TEST_F(TokenizeE2E, GzipAndZstdInputsGiveTheSameShards) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "{\"text\": \"Line " + std::to_string(i) + ": the quick brown fox.\"}\n";
  write_file(dir_.file("p.jsonl"), text);
  write_file(dir_.file("t.txt"), "one document\nspread over lines\n");
  ASSERT_EQ(run_shell("cd " + dir_.path() + " && gzip -k p.jsonl && zstd -q -k p.jsonl && zstd -q -k t.txt").exit_code, 0);
  ASSERT_EQ(tokenize(dir_.file("p.jsonl") + " " + dir_.file("t.txt"), "llama3", "--txt-mode file").exit_code, 0);
  Json plain = oracle("llama3", {{{"one document\nspread over lines\n", true}}});
  ASSERT_EQ(plain["docs"].size(), 201u);
  std::vector<int> whole = {kBos};  // txt_mode=file: the whole file is one document
  for (int id : ids_of(plain["expected"][0]["ids"])) whole.push_back(id);
  whole.push_back(kEotId);
  EXPECT_EQ(ids_of(plain["docs"][200]["ids"]), whole);
  for (const char* ext : {".gz", ".zst"}) {
    auto r = tokenize(dir_.file("p.jsonl") + ext + " " + dir_.file("t.txt.zst"), "llama3", "--txt-mode file");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(oracle("llama3", {})["docs"], plain["docs"]) << ext;
  }
}

// One file holding every kind of bad record, at known lines.
std::string bad_input() {
  return "{\"text\": \"good one\"}\n"                        // 1
         "{\"text\": \"unterminated}\n"                      // 2 malformed_json
         "{\"body\": \"no text field\"}\n"                   // 3 missing_field
         "{\"text\": [1, 2]}\n"                              // 4 wrong_type
         "{\"text\": \"bad \xC3\x28 byte\"}\n"               // 5 invalid_utf8
         "{\"text\": \"   \"}\n"                             // 6 empty
         "{\"text\": \"" + std::string(300, 'z') + " long\"}\n"  // 7 too_long
         "{\"text\": \"good two\"}\n";                       // 8
}

TEST_F(TokenizeE2E, BadRecordsAreSkippedAndCountedWithFileAndLine) {
  write_file(dir_.file("bad.jsonl"), bad_input());
  auto r = tokenize(dir_.file("bad.jsonl"), "llama3", "--on-error skip --max-tokens 40 --too-long reject");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string f = dir_.file("bad.jsonl");
  for (const std::string& msg : {f + ":2: malformed JSON", f + ":3: missing field 'text' [missing_field]",
                                 f + ":4: field 'text' is a array, expected a string [wrong_type]",
                                 f + ":5: invalid UTF-8 [invalid_utf8]", f + ":6: field 'text' is empty [empty]",
                                 f + ":7: "}) {
    EXPECT_NE(r.output.find("[data] skipped " + msg), std::string::npos) << msg << "\n" << r.output;
  }
  EXPECT_NE(r.output.find("over max_tokens = 40 [too_long]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("8 record(s) -> 2 documents"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("skipped 6 record(s): malformed_json 1, missing_field 1, wrong_type 1, invalid_utf8 1, "
                          "empty 1, too_long 1"),
            std::string::npos)
      << r.output;
}

TEST_F(TokenizeE2E, SkippedRecordMessagesAreCapped) {
  write_file(dir_.file("bad.jsonl"), bad_input());
  auto r = tokenize(dir_.file("bad.jsonl"), "llama3", "--on-error skip --max-messages 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  size_t shown = 0;
  for (size_t at = 0; (at = r.output.find("[data] skipped /", at)) != std::string::npos; ++at) ++shown;
  EXPECT_EQ(shown, 2u) << r.output;
  EXPECT_NE(r.output.find("further skipped records are only counted"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("skipped 5 record(s)"), std::string::npos) << r.output;  // no max_tokens: 7 is fine
}

TEST_F(TokenizeE2E, EachBadRecordFailsTheRunUnderFail) {
  std::vector<std::string> lines;
  std::string all = bad_input();
  for (size_t a = 0, b; (b = all.find('\n', a)) != std::string::npos; a = b + 1) lines.push_back(all.substr(a, b - a));
  const char* reasons[] = {"malformed_json", "missing_field", "wrong_type", "invalid_utf8", "empty", "too_long"};
  for (size_t k = 1; k <= 6; ++k) {
    std::string path = dir_.file("bad" + std::to_string(k) + ".jsonl");
    write_file(path, lines[0] + "\n" + lines[k] + "\n" + lines[7] + "\n");
    auto r = tokenize(path, "llama3", "--max-tokens 40 --too-long reject");  // on_error=fail is the default
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("error: " + path + ":2: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(std::string("[") + reasons[k - 1] + "]"), std::string::npos) << r.output;
    EXPECT_FALSE(run_shell("test -e " + dir_.file("out/index.json")).exit_code == 0);  // not a complete set
  }
}

// SIGINT once the first work item is finished: the run stops with an error that names
// --resume, the finished item's shards stay and no index.json marks the partial set complete.
TEST_F(TokenizeE2E, InterruptKeepsFinishedShards) {
  std::string line = "{\"text\": \"" + std::string(40, 'a') + " the quick brown fox jumps over the lazy dog\"}\n", text;
  for (int i = 0; i < 100000; ++i) text += line;
  write_file(dir_.file("big.jsonl"), text);
  std::string out = dir_.file("out");
  auto r = run_shell("rm -rf " + out + "; " + ftune_binary() + " data tokenize --inputs " + dir_.file("big.jsonl") +
                     " --output " + out + " --tokenizer " + tok("llama3") +
                     " --threads 1 --tokens-per-shard 20000 --item-bytes 400000 > " + dir_.file("log") + " 2>&1 & pid=$!; "
                     "for i in $(seq 600); do [ -e " + out + "/manifest/item-000000.json ] && break; sleep 0.05; done; "
                     "kill -INT $pid; wait $pid; echo rc=$?; cat " + dir_.file("log"));
  EXPECT_NE(r.output.find("interrupted by signal 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rerun with --resume"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("rc=0"), std::string::npos) << r.output;
  EXPECT_EQ(run_shell("test -e " + out + "/shard-000000-0000.h5").exit_code, 0);
  EXPECT_NE(run_shell("test -e " + out + "/index.json").exit_code, 0);
  EXPECT_EQ(run_shell("ls -a " + out + " | grep -c tmp").output, "0\n");
}

// --progress draws the bar even without a terminal; tokens/s and the ETA are on it.
TEST_F(TokenizeE2E, ProgressBarOnRequest) {
  write_file(dir_.file("a.jsonl"), "{\"text\": \"hello\"}\n");
  auto r = tokenize(dir_.file("a.jsonl"), "llama3", "--progress");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("100.0%"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tok/s  ETA 0:00:00"), std::string::npos) << r.output;
  r = tokenize(dir_.file("a.jsonl"), "llama3", "");
  EXPECT_EQ(r.output.find("ETA"), std::string::npos) << r.output;  // not a TTY
}

TEST_F(TokenizeE2E, LongDocumentsAreTruncated) {
  write_file(dir_.file("l.jsonl"), "{\"text\": \"" + std::string(200, 'q') + "\"}\n{\"text\": \"short\"}\n");
  auto r = tokenize(dir_.file("l.jsonl"), "llama3", "--max-tokens 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json o = oracle("llama3", {});
  EXPECT_EQ(o["docs"][0]["ids"].size(), 8u);
  EXPECT_LE(o["docs"][1]["ids"].size(), 8u);
  EXPECT_NE(r.output.find("truncated 1 document(s) to 8 tokens"), std::string::npos) << r.output;
}

TEST_F(TokenizeE2E, ConfigFileAndValidation) {
  write_file(dir_.file("a.jsonl"), "{\"q\": \"x\"}\n");
  auto r = tokenize(dir_.file("a.jsonl"), "llama3", "--format xml");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("tokenize.format: 'xml' is not one of text | instruction | chat"), std::string::npos) << r.output;
  write_file(dir_.file("t.txt"), "plain\n");
  r = tokenize(dir_.file("t.txt"), "llama3", "--format chat");
  EXPECT_NE(r.output.find("format=chat reads JSONL records, but " + dir_.file("t.txt") + " is a .txt file"),
            std::string::npos) << r.output;
  r = tokenize(dir_.file("missing-*.jsonl"), "llama3", "");
  EXPECT_NE(r.output.find("matches no file"), std::string::npos) << r.output;
  write_file(dir_.file("c.toml"), "[tokenize]\nformat = \"instruction\"\nprompt_field = \"q\"\nresponse_field = \"a\"\n");
  write_file(dir_.file("a.jsonl"), "{\"q\": \"x\", \"a\": \"y\"}\n");
  r = tokenize(dir_.file("a.jsonl"), "llama3", "--config " + dir_.file("c.toml"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// The example configs in configs/ load (every key known) and set what they say.
TEST_F(TokenizeE2E, ExampleConfigsLoad) {
  for (const char* name : {"data-text", "data-alpaca", "data-chat"}) {
    auto r = run_ftune("data tokenize --config " + source_dir() + "/configs/" + name + ".toml --dump-config 2>&1");
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.output;
    EXPECT_NE(r.output.find("output = \"shards/"), std::string::npos) << r.output;
  }
}

// A tokenizer whose decoder the aligner does not know: the mask comes from encoding the
// prompt and response segments one by one, and the summary says so.
TEST_F(TokenizeE2E, UnknownDecoderFallsBackToSegmentEncoding) {
  Json spec = Json::parse(read_file(tok("llama3") + "/tokenizer.json"));
  spec["decoder"] = nullptr;
  run_shell("mkdir -p " + dir_.file("tok"));
  write_file(dir_.file("tok/tokenizer.json"), spec.dump());
  write_file(dir_.file("tok/tokenizer_config.json"), read_file(tok("llama3") + "/tokenizer_config.json"));
  write_file(dir_.file("q.jsonl"), "{\"question\": \"Why?\", \"answer\": \"Because.\"}\n");
  auto r = run_ftune("data tokenize --inputs " + dir_.file("q.jsonl") + " --output " + dir_.file("out") +
                     " --tokenizer " + dir_.file("tok") + " --format instruction --preset qa 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 document(s) could not be aligned"), std::string::npos) << r.output;
  Json o = oracle("llama3", {{{"USER: Why?\nASSISTANT: ", false}}, {{"Because.", true}}});
  std::vector<int> ids = {kBos}, mask = {0};
  for (int k = 0; k < 2; ++k) {
    for (int id : ids_of(o["expected"][k]["ids"])) {
      ids.push_back(id);
      mask.push_back(k);
    }
  }
  ids.push_back(kEotId);
  mask.push_back(1);
  EXPECT_EQ(ids_of(o["docs"][0]["ids"]), ids);
  EXPECT_EQ(ids_of(o["docs"][0]["mask"]), mask);
}

}  // namespace
}  // namespace ftune::test
