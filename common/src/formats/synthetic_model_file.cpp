// synthetic_model_file.cpp: a SyntheticModel as an in-memory ModelFile, without a round trip
// through the disk (the chapter binaries' fallback when no real model was fetched).
#include "infer/formats/synthetic.h"

#include <cstring>

namespace infer {

ModelFile model_file_from_synthetic(SyntheticModel model) {
  ModelFile file;
  file.path = "<synthetic>";
  file.format = "synthetic";
  file.config = model.config;
  file.tokenizer = std::move(model.tokenizer);
  file.owned.reserve(model.tensors.size());
  for (auto& [name, values] : model.tensors) {
    auto& bytes = file.owned.emplace_back(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    std::vector<float>().swap(values);  // free the float copy as we go: large presets are big
    TensorView view;
    view.name = name;
    view.dtype = DType::F32;
    view.shape = model.shapes.at(name);
    view.data = bytes.data();
    view.n_bytes = bytes.size();
    file.tensors[name] = std::move(view);
  }
  file.validate_llama_tensors();
  return file;
}

}  // namespace infer
