// fuzz_gguf: load_gguf on arbitrary bytes (header, metadata, tensor infos, embedded tokenizer), then
// whatever it accepts goes through Weights, a few tokens at a few positions and the tokenizer (exercise_model).
#include "fuzz_util.h"
#include "infer/formats/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = infer::fuzz::scratch_dir() / "model.gguf";
  infer::fuzz::write_file(path, data, size);
  try {
    const infer::ModelFile file = infer::load_gguf(path.string());
    infer::fuzz::exercise_model(file, data, size);
  } catch (const infer::Error&) {
    // A clean refusal is the expected outcome for most inputs.
  }
  return 0;
}
