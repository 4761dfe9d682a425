// libFuzzer target for `--config FILE` (scripts/fuzz.sh toml): the input is written to a file
// and read as the config of `ftune data tokenize` through the same CLI11 + toml++ path as the
// binary (launcher/cli/config.h), then validated. Accepted configs must dump (--dump-config)
// to TOML that reads back to the same dump. Refusals must be CLI11 parse errors or
// ftune::Errors; anything else (another exception, a sanitizer report) aborts.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "data/pipeline/tokenize_config.h"
#include "launcher/cli/config.h"

namespace {

// One file per fuzzing process, rewritten for every input.
const std::string& config_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string p = std::string(dir && *dir ? dir : "/tmp") + "/ftune-fuzz-toml-XXXXXX";
    int fd = mkstemp(p.data());
    if (fd < 0) std::abort();
    close(fd);
    return p;
  }();
  return path;
}

void write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// Parses `ftune data tokenize --config FILE` into a fresh config; returns the resolved dump.
std::string parse_config(const std::string& path, bool& accepted) {
  CLI::App app{"fuzz", "ftune"};
  ftune::cli::CommandSet commands;
  ftune::data::TokenizeConfig cfg;
  ftune::cli::install_toml_config(app);
  CLI::App* data = ftune::cli::CommandSet::group(&app, "data", "data tools");
  ftune::cli::Command& cmd = commands.add(data, "tokenize", "tokenize");
  ftune::cli::add_section(cmd.app, cmd.sections, "tokenize", cfg, ftune::cli::ShortFlags::yes);
  const char* argv[] = {"ftune", "data", "tokenize", "--config", path.c_str()};
  accepted = false;
  try {
    app.parse(5, const_cast<char**>(argv));
  } catch (const CLI::ParseError& e) {
    if (std::getenv("FTUNE_FUZZ_VERBOSE")) std::fprintf(stderr, "refused: %s\n", e.what());
    return "";
  } catch (const ftune::Error& e) {
    if (std::getenv("FTUNE_FUZZ_VERBOSE")) std::fprintf(stderr, "refused: %s\n", e.what());
    // The formatter's own messages name the file.
    if (std::string(e.what()).find(path) == std::string::npos &&
        std::string(e.what()).rfind("unsupported TOML value", 0) != 0) {
      std::abort();
    }
    return "";
  }
  accepted = true;
  try {
    ftune::data::validate(cfg);
  } catch (const ftune::Error& e) {
    if (std::string(e.what()).rfind("tokenize.", 0) != 0) std::abort();  // names the key
  }
  return cmd.sections.dump_toml();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_file(config_path(), std::string(reinterpret_cast<const char*>(data), size));
  bool accepted = false;
  const std::string dump = parse_config(config_path(), accepted);
  if (!accepted) return 0;
  // The resolved config, written into every run directory, must read back unchanged.
  write_file(config_path(), dump);
  bool again = false;
  const std::string dump2 = parse_config(config_path(), again);
  if (!again || dump2 != dump) {
    std::fprintf(stderr, "dumped config does not read back:\n%s\n---\n%s\n", dump.c_str(), dump2.c_str());
    std::abort();
  }
  return 0;
}
