// golden_util.h: greedy decoding helpers and the stories260K golden run, shared by the engine's tests
// (test_golden.cpp, test_cached_generator.cpp), the CUDA tests and the lab tests.
//
// The golden run is llama2.c's `run stories260K.bin -z tok512.bin -t 0.0 -n 200`: the sequence starts
// with BOS, run.c makes 200 forward steps and prints the token each one samples (so up to 200 new
// tokens), it stops when BOS is sampled, and each token is printed with the previous one as context
// (the space after BOS is dropped, <0xNN> pieces print their byte). The text it prints is
// ../shared/models/stories260K/expected_greedy_200.txt.
#pragma once

#include "infer/model/backend.h"
#include "infer/engine/generator.h"
#include "infer/formats/model_file.h"
#include "infer/tokenizer/tokenizer.h"
#include "infer/model/transformer.h"
#include "infer/model/weights.h"
#include "test_util.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace infer::test {

// ../shared/models/stories260K: the real 260K-parameter Llama (both llama2.c formats), its tok512
// tokenizer and llama2.c's greedy text.
inline std::filesystem::path stories260k_dir() { return shared_models_dir() / "stories260K"; }
inline std::filesystem::path golden_text_path() { return stories260k_dir() / "expected_greedy_200.txt"; }
inline constexpr int kGoldenSteps = 200;  // run.c's -n 200

// The whole file, byte for byte ("" when it cannot be read).
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Greedy (temperature 0) decoding of up to max_new tokens, stopping early only on stop_tokens.
inline GenerationOptions greedy_options(int max_new, std::vector<int> stop_tokens = {}) {
  GenerationOptions options;
  options.max_new_tokens = max_new;
  options.sampler.temperature = 0.0f;
  options.stop_tokens = std::move(stop_tokens);
  return options;
}

// Greedy tokens of a GeneratorType (NaiveGenerator, CachedGenerator) on `backend` with `format` weights.
template <typename GeneratorType>
std::vector<int> greedy_tokens(const ModelFile& file, WeightFormat format, Backend& backend,
                               const std::vector<int>& prompt, int max_new, std::vector<int> stop_tokens = {}) {
  Weights weights(file, format, backend);
  Transformer transformer(weights, backend, int(prompt.size()) + max_new);
  GeneratorType generator(transformer);
  return generator.generate(prompt, greedy_options(max_new, std::move(stop_tokens))).tokens;
}

// The text of `tokens` as run.c prints it: each token decoded with the one before it as context,
// `first` (the prompt's last token, BOS here) before the first.
inline std::string decode_as_printed(const Tokenizer& tokenizer, int first, const std::vector<int>& tokens) {
  std::string text;
  int previous = first;
  for (int token : tokens) {
    text += tokenizer.decode_token(previous, token);
    previous = token;
  }
  return text;
}

// The golden run (see the top of this file) of the llama2.c model at `model_path` with GeneratorType on
// `backend`, f32 weights; returns the text, to compare with read_text(golden_text_path()).
template <typename GeneratorType = NaiveGenerator>
std::string stories260k_greedy_text(const std::filesystem::path& model_path, Backend& backend) {
  const ModelFile file = load_model_file(model_path.string());
  const auto tokenizer =
      load_llama2c_tokenizer((stories260k_dir() / "tok512.bin").string(), file.config.vocab_size);
  const int bos = tokenizer->bos_id();
  const std::vector<int> tokens =
      greedy_tokens<GeneratorType>(file, WeightFormat::F32, backend, {bos}, kGoldenSteps, /*stop_tokens=*/{bos});
  return decode_as_printed(*tokenizer, bos, tokens);
}

}  // namespace infer::test
