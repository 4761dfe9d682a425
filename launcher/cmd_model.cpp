// `ftune model init|info|import|export`: write a random HF model, describe one, GGUF in and out.
#include <iostream>
#include <memory>

#include "common/error.h"
#include "launcher/commands.h"
#include "launcher/torch_loader.h"
#include "runtime/gguf_export.h"
#include "runtime/gguf_import.h"
#include "runtime/model/config.h"
#include "runtime/tasks.h"

namespace ftune {

void register_model_commands(CLI::App& root, cli::CommandSet& commands) {
  CLI::App* group = cli::CommandSet::group(&root, "model", "create and inspect model directories");

  auto init = std::make_shared<model::ModelInitConfig>();
  auto out = std::make_shared<std::string>();
  cli::Command& init_cmd =
      commands.add(group, "init", "write a randomly initialised Hugging Face model directory");
  init_cmd.required.push_back(cli::add_top_option(init_cmd.app, init_cmd.sections, "out", *out, "directory to write"));
  cli::add_section(init_cmd.app, init_cmd.sections, "model", *init);
  init_cmd.run = [init, out] {
    std::cout << torch_api().init_model_dir(*init, *out) << "\n";
    return 0;
  };

  auto dir = std::make_shared<std::string>();
  cli::Command& info_cmd = commands.add(
      group, "info", "architecture, shapes, parameter count and bytes (config.json suffices)");
  auto positional = std::make_shared<std::string>();
  cli::add_top_option(info_cmd.app, info_cmd.sections, "model", *dir, "HF model directory, or a .gguf file");
  info_cmd.app->add_option("path", *positional, "the same as --model: `ftune model info FILE.gguf`");
  auto quant = std::make_shared<std::string>();
  cli::add_top_option(info_cmd.app, info_cmd.sections, "quant", *quant,
                      "also the memory of the base quantised this way: nf4 (QLoRA's 4-bit base)");
  info_cmd.run = [dir, positional, quant] {
    if (!quant->empty() && *quant != "nf4")
      throw Error("model info: --quant '" + *quant + "' is not known; the choice is nf4");
    if (dir->empty() == positional->empty())
      throw Error("model info: give the model once, as --model PATH or as PATH (a directory or a .gguf file)");
    if (dir->empty()) *dir = *positional;
    // config.json and safetensors (or GGUF) headers only: no LibTorch loaded.
    std::cout << (model::is_gguf_path(*dir) ? model::describe_gguf(*dir) : model::describe_model_dir(*dir));
    if (*quant == "nf4" && !model::is_gguf_path(*dir))
      std::cout << model::describe_nf4(model::load_model_dir_config(*dir));
    return 0;
  };

  // Torch-free: dequantising and writing safetensors needs no tensors library.
  auto import_cfg = std::make_shared<model::ModelImportConfig>();
  auto file = std::make_shared<std::string>();
  cli::Command& import_cmd = commands.add(
      group, "import", "turn a GGUF file (llama.cpp) into a Hugging Face model directory");
  import_cmd.required.push_back(import_cmd.app->add_option("file", *file, "the .gguf file"));
  cli::add_section(import_cmd.app, import_cmd.sections, "import", *import_cfg, cli::ShortFlags::yes);
  import_cmd.run = [import_cfg, file] {
    std::cout << model::import_gguf(*file, *import_cfg) << "\n";
    return 0;
  };

  auto export_cfg = std::make_shared<model::ModelExportConfig>();
  cli::Command& export_cmd =
      commands.add(group, "export", "write a Hugging Face llama directory as a GGUF file (llama.cpp)");
  cli::add_section(export_cmd.app, export_cmd.sections, "export", *export_cfg, cli::ShortFlags::yes);
  export_cmd.run = [export_cfg] {
    std::cout << model::export_gguf(*export_cfg) << "\n";
    return 0;
  };
}

}  // namespace ftune
