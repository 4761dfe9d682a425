// `ftune train`: one rank of a fine-tuning run (start N of them with mpirun/srun). Parses the
// sections of the run config here, torch-free; the loop runs in libftune_torch.so.
#include <memory>

#include "launcher/commands.h"
#include "launcher/torch_loader.h"
#include "runtime/train/train_config.h"

namespace ftune {

void register_train_command(CLI::App& root, cli::CommandSet& commands) {
  auto cfg = std::make_shared<train::TrainConfig>();
  cli::Command& cmd = commands.add(&root, "train", "fine-tune a model: full (sharded) or LoRA; "
                                                    "one process per GPU under mpirun/srun");
  cli::add_section(cmd.app, cmd.sections, "model", cfg->model);
  cli::add_section(cmd.app, cmd.sections, "method", cfg->method);
  cli::add_section(cmd.app, cmd.sections, "lora", cfg->lora);
  cli::add_section(cmd.app, cmd.sections, "data", cfg->data);
  cli::add_section(cmd.app, cmd.sections, "train", cfg->train);
  cli::add_section(cmd.app, cmd.sections, "optim", cfg->optim);
  cli::add_section(cmd.app, cmd.sections, "schedule", cfg->schedule);
  cli::SectionList* sections = &cmd.sections;
  cmd.run = [cfg, sections] {
    cfg->resolved_toml = sections->dump_toml();
    return torch_api().run_train(*cfg);
  };
}

}  // namespace ftune
