// The ftune executable loads LibTorch (through libftune_torch.so) only for the commands that
// need tensors, and says clearly when that library cannot be loaded.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/tokenizer/byte_tokenizer.h"
#include "tests/support/test_support.h"

namespace ftune {
namespace {

using test::run_shell;
using test::shell_quote;

// The dynamic loader's own record of every object it maps (needed or dlopen()ed), so this
// fails whether LibTorch comes back as a NEEDED entry or through an eager dlopen.
test::ProcessResult run_traced(const std::string& args) {
  return run_shell("LD_DEBUG=files " + shell_quote(test::ftune_binary()) + " " + args);
}

bool loads_libtorch(const std::string& ld_debug_output) {
  return ld_debug_output.find("libtorch") != std::string::npos ||
         ld_debug_output.find("libc10") != std::string::npos;
}

// A model directory holding config.json and the byte tokenizer, written without ftune.
void write_tokenizer(const test::TempDir& dir) {
  test::write_file(dir.file("tokenizer.json"), data::byte_tokenizer_json());
  test::write_file(dir.file("tokenizer_config.json"), data::byte_tokenizer_config_json());
}

TEST(LazyTorch, ExecutableDoesNotNeedLibTorch) {
  auto r = run_shell("readelf -d " + shell_quote(test::ftune_binary()));
  if (r.exit_code == 127) GTEST_SKIP() << "readelf is not installed";
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(NEEDED)"), std::string::npos) << r.output;
  EXPECT_FALSE(loads_libtorch(r.output)) << r.output;
}

TEST(LazyTorch, TorchFreeCommandsDoNotLoadLibTorch) {
  test::TempDir dir;
  write_tokenizer(dir);
  test::write_file(dir.file("in.jsonl"), "{\"text\": \"hello world\"}\n");
  const std::string tok = " --tokenizer " + shell_quote(dir.path());
  const std::vector<std::string> commands = {
      "--version",
      "generate --help",
      "model init --dump-config --out " + shell_quote(dir.file("m")),
      "data encode" + tok + " " + shell_quote(dir.file("in.jsonl")),
  };
  for (const auto& args : commands) {
    auto r = run_traced(args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
    EXPECT_FALSE(loads_libtorch(r.output)) << "`ftune " << args << "` loaded LibTorch";
  }
}

// Also the control for the test above: the same trace does show LibTorch where it is loaded.
TEST(LazyTorch, ModelInfoIsTorchFreeGenerateLoadsTorch) {
  test::TempDir dir;
  const std::string model = shell_quote(dir.file("m"));
  auto init = test::run_ftune("model init --model.preset tiny-llama --out " + model);
  ASSERT_EQ(init.exit_code, 0) << init.output;
  auto info = run_traced("model info --model " + model);
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("parameters:"), std::string::npos) << info.output;
  EXPECT_FALSE(loads_libtorch(info.output)) << "`ftune model info` loaded LibTorch";
  auto gen = run_traced("generate --model " + model + " --prompt-ids 1,2 --max-new-tokens 1 --greedy");
  EXPECT_EQ(gen.exit_code, 0) << gen.output;
  EXPECT_TRUE(loads_libtorch(gen.output)) << "the LD_DEBUG trace no longer shows LibTorch";
}

TEST(LazyTorch, MissingLibraryIsAClearError) {
  auto r = run_shell("FTUNE_TORCH_LIB=/nonexistent/libftune_torch.so " +
                     shell_quote(test::ftune_binary()) + " generate --model m --prompt-ids 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("ftune: error: cannot load /nonexistent/libftune_torch.so"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("No such file"), std::string::npos) << r.output;  // dlerror()
  EXPECT_NE(r.output.find("FTUNE_TORCH_LIB"), std::string::npos) << r.output;
}

TEST(LazyTorch, UnloadableLibraryIsAClearError) {
  test::TempDir dir;
  test::write_file(dir.file("not_a_library.so"), "not an ELF file\n");
  const std::vector<std::string> libs = {dir.file("not_a_library.so"), "libm.so.6"};
  for (const auto& lib : libs) {
    auto r = run_shell("FTUNE_TORCH_LIB=" + shell_quote(lib) + " " +
                       shell_quote(test::ftune_binary()) + " model init --out " +
                       shell_quote(dir.file("m")));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("ftune: error: cannot load " + lib), std::string::npos) << r.output;
  }
  // libm loads but has no entry point: dlsym's message names the symbol.
  auto r = run_shell("FTUNE_TORCH_LIB=libm.so.6 " + shell_quote(test::ftune_binary()) +
                     " generate --model m --prompt-ids 1");
  EXPECT_NE(r.output.find("ftune_torch_api"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune
