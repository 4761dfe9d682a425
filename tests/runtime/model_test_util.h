// Helpers shared by the model tests: tiny configs, reading reference tensors, error capture.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include <ATen/ATen.h>

#include "common/error.h"
#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/checkpoint/safetensors.h"

namespace ftune::model::testing {

// A tensor from a .safetensors file written by an oracle script, copied out of the mapping.
inline at::Tensor read_tensor(const std::string& path, const std::string& name) {
  auto file = st::SafetensorsFile::open(path);
  const st::TensorInfo* info = file->find(name);
  if (info == nullptr) throw Error(path + " has no tensor " + name);
  void* bytes = const_cast<uint8_t*>(file->data(*info));
  return at::from_blob(bytes, info->shape, at::TensorOptions(to_scalar_type(info->dtype))).clone();
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// The ftune::Error message `fn` throws, or a test failure when it throws nothing.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an ftune::Error";
  return "";
}

}  // namespace ftune::model::testing
