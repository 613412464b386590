// test_golden.cpp: end to end against real model output.
//
// Greedy decoding of stories260K (both llama2.c formats) with its tok512 tokenizer must reproduce
// ../shared/models/stories260K/expected_greedy_200.txt byte for byte, with llama2.c's `run -t 0.0
// -n 200` semantics: the sequence starts with BOS, run.c makes 200 forward steps (positions
// 0..199) and prints the token each one samples (so up to 200 new tokens), it stops when BOS is sampled, and each token is printed with the previous one
// as context (the space after BOS is dropped, <0xNN> pieces print their byte). Every generator must
// reproduce it: NaiveGenerator (ch03) and CachedGenerator (ch05).
#include "infer/generator.h"
#include "infer/tokenizer.h"
#include "test_util.h"

#include <fstream>
#include <sstream>

using namespace infer;

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

enum class Decoder { Naive, Cached };

// Runs the golden decode on the model at `model_path` with `decoder`; returns the text.
std::string greedy_story(const std::filesystem::path& model_path, int threads, Decoder decoder = Decoder::Naive) {
  const auto dir = test::shared_models_dir() / "stories260K";
  ModelFile file = load_model_file(model_path.string());
  auto tokenizer = load_llama2c_tokenizer((dir / "tok512.bin").string(), file.config.vocab_size);
  auto backend = make_cpu_backend(threads);
  Weights weights(file, WeightFormat::F32, *backend);
  constexpr int kSteps = 200;
  Transformer transformer(weights, *backend, kSteps + 1);
  NaiveGenerator naive(transformer);
  CachedGenerator cached(transformer);
  Generator& generator = decoder == Decoder::Naive ? static_cast<Generator&>(naive) : cached;

  GenerationOptions options;
  options.max_new_tokens = kSteps;
  options.sampler.temperature = 0.0f;
  options.stop_tokens = {tokenizer->bos_id()};  // llama2.c's run loop stops on BOS
  std::string text;
  int previous = tokenizer->bos_id();
  generator.generate({tokenizer->bos_id()}, options, [&](int token) {
    text += tokenizer->decode_token(previous, token);
    previous = token;
    return true;
  });
  return text;
}

}  // namespace

TEST_CASE("golden: stories260K greedy decoding reproduces llama2.c's output (both file formats)") {
  const auto dir = test::shared_models_dir() / "stories260K";
  if (!std::filesystem::exists(dir / "expected_greedy_200.txt"))
    INFER_SKIP("../shared/models/stories260K is absent (it sits beside the repository in CI)");
  const std::string expected = read_text(dir / "expected_greedy_200.txt");
  REQUIRE(expected.size() == 464);

  SUBCASE("legacy header (version 0), 1 thread") { CHECK(greedy_story(dir / "stories260K.bin", 1) == expected); }
  SUBCASE("version 1 header, 2 threads") { CHECK(greedy_story(dir / "stories260K_v1.bin", 2) == expected); }
}

TEST_CASE("golden: stories260K greedy decoding with the KV cache reproduces llama2.c's output") {
  const auto dir = test::shared_models_dir() / "stories260K";
  if (!std::filesystem::exists(dir / "expected_greedy_200.txt"))
    INFER_SKIP("../shared/models/stories260K is absent (it sits beside the repository in CI)");
  const std::string expected = read_text(dir / "expected_greedy_200.txt");
  REQUIRE(expected.size() == 464);

  SUBCASE("legacy header (version 0), 1 thread") {
    CHECK(greedy_story(dir / "stories260K.bin", 1, Decoder::Cached) == expected);
  }
  SUBCASE("version 1 header, 2 threads") { CHECK(greedy_story(dir / "stories260K_v1.bin", 2, Decoder::Cached) == expected); }
}
