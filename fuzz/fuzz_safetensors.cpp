// fuzz_safetensors: load_safetensors on a checkpoint directory whose config.json and
// model.safetensors both come from the input (split_input: u16 length + config.json, then the
// shard), so the fuzzer mutates the JSON config, the JSON header and the data together.
#include "fuzz_util.h"
#include "infer/formats/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = infer::fuzz::scratch_dir() / "checkpoint";
  static const bool created = std::filesystem::create_directories(dir);
  (void)created;
  const auto [config, shard] = infer::fuzz::split_input(data, size);
  infer::fuzz::write_file(dir / "config.json", reinterpret_cast<const uint8_t*>(config.data()), config.size());
  infer::fuzz::write_file(dir / "model.safetensors", reinterpret_cast<const uint8_t*>(shard.data()), shard.size());
  try {
    const infer::ModelFile file = infer::load_safetensors(dir.string());
    infer::fuzz::exercise_model(file, data, size);
  } catch (const infer::Error&) {
  }
  return 0;
}
