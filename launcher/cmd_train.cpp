// `ftune train`: one rank of a fine-tuning run (start N of them with mpirun/srun). Parses the
// sections of the run config here, torch-free; the loop runs in libftune_torch.so.
#include <iostream>
#include <memory>

#include "launcher/commands.h"
#include "launcher/slurm/sbatch_script.h"
#include "launcher/torch_loader.h"
#include "runtime/tasks.h"
#include "runtime/train/preemption.h"
#include "runtime/train/train_config.h"

namespace ftune {

void add_train_sections(cli::Command& cmd, train::TrainConfig* cfg) {
  // Short forms for hand-typed runs and scripts: `--model DIR --data DIR --steps 100 ...`.
  const auto no = cli::ShortFlags::no;
  cli::add_section(cmd.app, cmd.sections, "model", cfg->model, no, {{"path", "model"}, {"device", "device"}});
  cli::add_section(cmd.app, cmd.sections, "precision", cfg->precision, no, {{"compute", "dtype"}});
  cli::add_section(cmd.app, cmd.sections, "method", cfg->method, no, {{"name", "method"}, {"adapter", "adapter"}});
  cli::add_section(cmd.app, cmd.sections, "lora", cfg->lora);
  cli::add_section(cmd.app, cmd.sections, "ia3", cfg->ia3);
  cli::add_section(cmd.app, cmd.sections, "qlora", cfg->qlora);
  cli::add_section(cmd.app, cmd.sections, "prefix", cfg->prefix);
  cli::add_section(cmd.app, cmd.sections, "data", cfg->data, no,
                   {{"shards", "data"}, {"seq_len", "seq-len"}, {"global_batch", "global-batch"}});
  cli::add_section(cmd.app, cmd.sections, "train", cfg->train, no,
                   {{"out", "out"}, {"steps", "steps"}, {"micro_batch", "micro-batch"}, {"seed", "seed"}});
  cli::add_section(cmd.app, cmd.sections, "optim", cfg->optim, no, {{"lr", "lr"}});
  cli::add_section(cmd.app, cmd.sections, "schedule", cfg->schedule);
  cli::add_section(cmd.app, cmd.sections, "eval", cfg->eval);
  cli::add_section(cmd.app, cmd.sections, "checkpoint", cfg->checkpoint, no, {{"resume", "resume"}});
  cli::add_section(cmd.app, cmd.sections, "log", cfg->log);
  cli::add_section(cmd.app, cmd.sections, "comm", cfg->comm);
}

void register_train_command(CLI::App& root, cli::CommandSet& commands) {
  auto cfg = std::make_shared<train::TrainConfig>();
  cli::Command& cmd = commands.add(&root, "train", "fine-tune a model: full (sharded), LoRA, DoRA, QLoRA, "
                                                    "IA3 or prefix tuning; one process per GPU under mpirun/srun");
  add_train_sections(cmd, cfg.get());
  // One run.toml serves `ftune slurm submit` and the ranks: [slurm] is accepted and unused here.
  auto slurm_cfg = std::make_shared<slurm::SlurmSection>();
  cli::add_section(cmd.app, cmd.sections, "slurm", *slurm_cfg);
  cli::SectionList* sections = &cmd.sections;
  cmd.run = [cfg, sections, slurm_cfg] {
    train::defer_stop_signals();  // until the trainer's handlers are in (runtime/train/preemption.h)
    cfg->resolved_toml = sections->dump_toml();
    return torch_api().run_train(*cfg);
  };
}

void register_merge_command(CLI::App& root, cli::CommandSet& commands) {
  auto cfg = std::make_shared<model::MergeConfig>();
  cli::Command& cmd = commands.add(&root, "merge", "fold an adapter (LoRA, DoRA, IA3) into its base model (HF directory out)");
  cli::add_section(cmd.app, cmd.sections, "merge", *cfg, cli::ShortFlags::yes);
  cmd.run = [cfg] {
    std::cout << torch_api().merge_adapter(*cfg) << "\n";
    return 0;
  };
}

}  // namespace ftune
