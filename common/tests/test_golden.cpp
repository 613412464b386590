// test_golden.cpp: end to end against real model output.
//
// Greedy decoding of stories260K (both llama2.c formats) with its tok512 tokenizer must reproduce
// stories260K/expected_greedy_200.txt (../shared/models in CI) byte for byte, with llama2.c's `run -t 0.0
// -n 200` semantics (golden_util.h spells them out). Every generator must reproduce it:
// NaiveGenerator (ch03) and CachedGenerator (ch05).
#include "golden_util.h"
#include "infer/engine/generator.h"

using namespace infer;

namespace {

enum class Decoder { Naive, Cached };

// The golden run on the model at `model_path` with `decoder` on a CPU backend of `threads`; the text.
std::string greedy_story(const std::filesystem::path& model_path, const std::filesystem::path& tokenizer_path,
                         int threads, Decoder decoder = Decoder::Naive) {
  auto backend = make_cpu_backend(threads);
  return decoder == Decoder::Naive
             ? test::stories260k_greedy_text<NaiveGenerator>(model_path, tokenizer_path, *backend)
             : test::stories260k_greedy_text<CachedGenerator>(model_path, tokenizer_path, *backend);
}

}  // namespace

TEST_CASE("golden: stories260K greedy decoding reproduces llama2.c's output (both file formats)") {
  INFER_GOLDEN_FILES(test::kStories260K);
  INFER_MODEL_FILE(v1_path, test::kStories260KV1);
  const std::string expected = test::read_text(golden_path);
  REQUIRE(expected.size() == test::kGoldenTextBytes);

  SUBCASE("legacy header (version 0), 1 thread") { CHECK(greedy_story(model_path, tokenizer_path, 1) == expected); }
  SUBCASE("version 1 header, 2 threads") { CHECK(greedy_story(v1_path, tokenizer_path, 2) == expected); }
}

TEST_CASE("golden: stories260K greedy decoding with the KV cache reproduces llama2.c's output") {
  INFER_GOLDEN_FILES(test::kStories260K);
  INFER_MODEL_FILE(v1_path, test::kStories260KV1);
  const std::string expected = test::read_text(golden_path);
  REQUIRE(expected.size() == test::kGoldenTextBytes);

  SUBCASE("legacy header (version 0), 1 thread") {
    CHECK(greedy_story(model_path, tokenizer_path, 1, Decoder::Cached) == expected);
  }
  SUBCASE("version 1 header, 2 threads") {
    CHECK(greedy_story(v1_path, tokenizer_path, 2, Decoder::Cached) == expected);
  }
}
