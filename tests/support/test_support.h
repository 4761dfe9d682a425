// Helpers for tests: temporary directories, running processes, finding the oracle Python.
#pragma once

#include <string>
#include <vector>

namespace ftune::test {

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string output;  // stdout and stderr together
};

// Runs `command` through /bin/sh, capturing stdout and stderr.
ProcessResult run_shell(const std::string& command);

// Runs the ftune binary under test with `args` (already shell-quoted as needed).
ProcessResult run_ftune(const std::string& args);

// Runs a Python oracle script from tests/oracle/ with the repo's .venv interpreter.
ProcessResult run_oracle(const std::string& script, const std::string& args);

// Path of the ftune binary under test ($FTUNE_BIN).
std::string ftune_binary();
std::string source_dir();
std::string python();  // the .venv interpreter with transformers, tokenizers, h5py...

// The process exists and is not a zombie waiting for its reaper (mpirun's ranks outlive it as
// zombies): for fault tests that must leave no rank behind.
bool process_alive(int pid);

void write_file(const std::string& path, const std::string& contents);
std::string read_file(const std::string& path);
std::string shell_quote(const std::string& s);

}  // namespace ftune::test
