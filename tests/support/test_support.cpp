#include "tests/support/test_support.h"

#include <ftw.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ftune::test {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ftune-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

namespace {
int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }
}  // namespace

TempDir::~TempDir() {
  // Not std::filesystem::remove_all: libtorch.so exports its own copy of that function, built
  // against an older libstdc++, and in binaries that link LibTorch it wins and crashes (null
  // call inside remove_all). nftw is plain libc.
  ::nftw(path_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

ProcessResult run_shell(const std::string& command) {
  ProcessResult r;
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed for: " + command);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string ftune_binary() {
  const char* bin = std::getenv("FTUNE_BIN");
  return bin ? bin : std::string(FTUNE_TEST_BINARY_DIR) + "/launcher/ftune";
}

std::string source_dir() { return FTUNE_TEST_SOURCE_DIR; }

std::string python() {
  const char* py = std::getenv("FTUNE_PYTHON");
  return py ? py : FTUNE_TEST_PYTHON;
}

ProcessResult run_ftune(const std::string& args) { return run_shell(ftune_binary() + " " + args); }

ProcessResult run_oracle(const std::string& script, const std::string& args) {
  return run_shell(python() + " " + source_dir() + "/tests/oracle/" + script + " " + args);
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool process_alive(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!in || !std::getline(in, stat)) return false;
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

}  // namespace ftune::test
