// enormous_model.h: a model file too large for any machine's (or GPU's) memory, for the tests that
// check it is refused up front (test_resources.cpp on the CPU, tests_cuda/test_cuda_memory.cpp).
#pragma once

#include "infer/formats/model_file.h"
#include "infer/formats/synthetic.h"

#include <cstdint>
#include <vector>

namespace infer::test {

// A Llama whose fp32 weights are far larger than any machine's memory (~2.4 TB at dim 16384, 200
// layers): its tensors are views of one small buffer (`backing`, which must outlive the file), so
// only the up-front check can stop it.
inline ModelFile enormous_model_file(std::vector<uint8_t>& backing) {
  ModelConfig config = synthetic_preset("llama3-8b");
  config.dim = 16384;
  config.n_heads = 128;
  config.n_kv_heads = 8;
  config.head_dim = 128;
  config.hidden_dim = 53248;
  config.n_layers = 200;
  ModelFile file;
  file.path = "<enormous model>";
  file.format = "memory";
  file.config = config;
  backing.assign(64, 0);
  for (const auto& [name, shape] : llama_tensor_shapes(config)) {
    TensorView view{name, DType::F32, shape, backing.data(), 0};
    view.n_bytes = size_t(view.n_elements()) * sizeof(float);  // what validate_llama_tensors expects
    file.tensors[name] = view;
  }
  return file;
}

}  // namespace infer::test
