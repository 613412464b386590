// golden_util.h: greedy decoding helpers and the stories260K golden run, shared by the engine's tests
// (test_golden.cpp, test_cached_generator.cpp), the CUDA tests and the lab tests.
//
// The golden run is llama2.c's `run stories260K.bin -z tok512.bin -t 0.0 -n 200`: the sequence starts
// with BOS, run.c makes 200 forward steps and prints the token each one samples (so up to 200 new
// tokens), it stops when BOS is sampled, and each token is printed with the previous one as context
// (the space after BOS is dropped, <0xNN> pieces print their byte). The text it prints is
// stories260K/expected_greedy_200.txt (found like every model file: infer/core/model_search.h).
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

// stories260K (README "Models": ../shared/models/stories260K/ in CI): the real 260K-parameter Llama in
// both llama2.c formats, its tok512 tokenizer and llama2.c's greedy text, as names for INFER_MODEL_FILE.
inline constexpr const char* kStories260K = "stories260K/stories260K.bin";
inline constexpr const char* kStories260KV1 = "stories260K/stories260K_v1.bin";
inline constexpr const char* kTok512 = "stories260K/tok512.bin";
inline constexpr const char* kGoldenText = "stories260K/expected_greedy_200.txt";
inline constexpr int kGoldenSteps = 200;  // run.c's -n 200
inline constexpr size_t kGoldenTextBytes = 464;

// Declares the three files of the golden run (model `model_name`, tok512, the expected text) as
// model_path, tokenizer_path and golden_path; returns from the test case (skip or, in CI, failure) when
// any is absent.
#define INFER_GOLDEN_FILES(model_name)                                          \
  INFER_MODEL_FILE(model_path, model_name);                                     \
  INFER_MODEL_FILE(tokenizer_path, ::infer::test::kTok512);                     \
  INFER_MODEL_FILE(golden_path, ::infer::test::kGoldenText)

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

// The golden run (see the top of this file) of the llama2.c model at `model_path` with its tokenizer at
// `tokenizer_path`, GeneratorType on `backend`, f32 weights; returns the text, to compare with
// read_text(golden_path).
template <typename GeneratorType = NaiveGenerator>
std::string stories260k_greedy_text(const std::filesystem::path& model_path, const std::filesystem::path& tokenizer_path,
                                    Backend& backend) {
  const ModelFile file = load_model_file(model_path.string());
  const auto tokenizer = load_llama2c_tokenizer(tokenizer_path.string(), file.config.vocab_size);
  const int bos = tokenizer->bos_id();
  const std::vector<int> tokens =
      greedy_tokens<GeneratorType>(file, WeightFormat::F32, backend, {bos}, kGoldenSteps, /*stop_tokens=*/{bos});
  return decode_as_printed(*tokenizer, bos, tokens);
}

}  // namespace infer::test
