// fuzz_llama2c: load_llama2c on arbitrary bytes (legacy and version-1 headers, stacked fp32
// tensors); what it accepts goes through Weights and a few tokens at a few positions (exercise_model).
#include "fuzz_util.h"
#include "infer/formats/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = infer::fuzz::scratch_dir() / "model.bin";
  infer::fuzz::write_file(path, data, size);
  try {
    const infer::ModelFile file = infer::load_llama2c(path.string());
    infer::fuzz::exercise_model(file, data, size);
  } catch (const infer::Error&) {
  }
  return 0;
}
