// `ftune plan`: the per-GPU memory of a training run before anything is loaded, whether it
// fits, and what would make it fit. Torch-free: config.json or a preset is all it reads.
#include <iostream>
#include <memory>

#include "launcher/commands.h"
#include "runtime/train/fit_plan.h"

namespace ftune {

void register_plan_command(CLI::App& root, cli::CommandSet& commands) {
  auto opts = std::make_shared<train::PlanOptions>();
  auto json = std::make_shared<bool>(false);
  cli::Command& cmd = commands.add(&root, "plan", "per-GPU memory of a training run (parameters, gradients, "
                                                  "optimizer state, activations, ...), whether it fits, "
                                                  "and what would make it fit");
  cli::add_section(cmd.app, cmd.sections, "plan", *opts, cli::ShortFlags::yes);
  cmd.app->add_flag("--json", *json, "one JSON object: fits, the breakdown in bytes, suggestions");
  cmd.run = [opts, json] {
    const train::PlanResult r = train::plan_run(train::plan_model(*opts), *opts);
    if (*json) std::cout << train::plan_json(r).dump(1) << "\n";
    else std::cout << train::plan_text(r);
    return r.fits ? 0 : 3;  // 3: planned fine, does not fit (scripts can tell it from bad input)
  };
}

}  // namespace ftune
