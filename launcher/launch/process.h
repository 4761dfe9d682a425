// Runs the launcher (mpirun or srun) as a child and stands in front of it: the signals this
// process gets go to the child once each, and its exit code is returned.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ftune::launch {

// Runs argv[0] from PATH with argv; returns its exit code, or 128 + the signal that ended it.
// SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to this process are forwarded (mpirun passes
// SIGUSR1/2 on to the ranks); a terminal's, which the child gets itself, is not. The child gets
// SIGTERM should this process die first. Throws ftune::Error when
// argv[0] cannot be started (naming it and PATH).
int run_forwarding_signals(const std::vector<std::string>& argv);

// The NAME=value entries of this process's environment.
std::vector<std::string> current_environ();

// The path of the running executable (/proc/self/exe).
std::string self_executable();

}  // namespace ftune::launch

namespace ftune::launch {

// Runs argv (argv[0] from PATH) with stdout and stderr read line by line into on_line; returns
// the exit code (128 + signal). Throws ftune::Error when argv[0] cannot be started.
int run_reading_lines(const std::vector<std::string>& argv,
                      const std::function<void(const std::string&)>& on_line);

// The path of `name` in a PATH directory, or "" when none has it.
std::string find_on_path(const std::string& name);

}  // namespace ftune::launch
