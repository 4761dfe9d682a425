// libftune_torch.so's entry point: the table the launcher reaches the LibTorch tasks through.
#include "runtime/torch_api.h"
#include "runtime/train/trainer.h"

extern "C" __attribute__((visibility("default"))) const ftune::model::TorchApi* ftune_torch_api() {
  static const ftune::model::TorchApi api = {
      ftune::model::kTorchApiVersion,
      sizeof(ftune::model::TorchApi),
      &ftune::model::init_model_dir,
      &ftune::model::run_generate,
      &ftune::train::run_train,
      &ftune::model::merge_adapter,
  };
  return &api;
}
