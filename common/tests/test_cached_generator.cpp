// test_cached_generator.cpp: the KV-cache decoder gives the naive decoder's tokens and logits.
//
// The cache changes what is recomputed, never the result: greedy tokens must be identical to
// NaiveGenerator's on synthetic models (GQA shapes, both RoPE layouts, odd head_dim), on the real
// stories260K and on SmolLM2 when it has been fetched; and the logits of each cached decode step
// must equal, bit for bit, the logits a full forward pass over the whole sequence gives at that position.
// (The stories260K golden text for both generators is in test_golden.cpp.)
#include "golden_util.h"
#include "infer/core/error.h"
#include "infer/engine/generator.h"
#include "infer/formats/synthetic.h"
#include "infer/tokenizer/tokenizer.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>

using namespace infer;
using test::greedy_options;  // greedy, no stop tokens: both decoders generate exactly max_new tokens

namespace {

// A GQA shape that is not a preset: group of 3, head_dim 10 (not a multiple of 8 or 16), the neox
// RoPE layout, a hidden size that is not a multiple of 16.
ModelConfig odd_gqa_config() {
  ModelConfig config = synthetic_preset("tiny");
  config.dim = 60;
  config.n_heads = 6;
  config.n_kv_heads = 2;
  config.head_dim = 10;
  config.hidden_dim = 100;
  config.n_layers = 3;
  config.rope_layout = RopeLayout::HalfSplit;
  config.validate("odd_gqa_config");
  return config;
}

void check_same_tokens(const ModelConfig& config, uint64_t seed, const std::vector<int>& prompt, int max_new,
                       int threads) {
  ModelFile file = model_file_from_synthetic(make_synthetic_model(config, seed));
  auto backend = make_cpu_backend(threads);
  Weights weights(file, WeightFormat::F32, *backend);
  Transformer transformer(weights, *backend, int(prompt.size()) + max_new);
  NaiveGenerator naive(transformer);
  CachedGenerator cached(transformer);
  const GenerationResult expected = naive.generate(prompt, greedy_options(max_new));
  const GenerationResult got = cached.generate(prompt, greedy_options(max_new));
  REQUIRE(expected.tokens.size() == size_t(max_new));
  CHECK(got.tokens == expected.tokens);
  CHECK(got.prompt_tokens == int(prompt.size()));
  // Bookkeeping: one timestamp and one cumulative byte count per token, prefill + decode = total.
  CHECK(got.token_ms.size() == got.tokens.size());
  CHECK(got.token_bytes.size() == got.tokens.size());
  CHECK(got.token_bytes.back() == got.bytes_moved);
  CHECK(got.prefill_ms == got.first_token_ms);
  CHECK(got.decode_ms == doctest::Approx(got.total_ms - got.prefill_ms));
  // The cached decoder reads the weights once per token; the naive one once per token too, but its
  // K/V traffic grows quadratically: with more than a couple of tokens it moves more bytes.
  CHECK(got.bytes_moved < expected.bytes_moved);
}

}  // namespace

TEST_CASE("cached generator: same greedy tokens as the naive generator on synthetic models") {
  SUBCASE("tiny (GQA 4/2, head_dim 16), one-token prompt, 1 thread") {
    check_same_tokens(synthetic_preset("tiny"), 7, {1}, 40, 1);
  }
  SUBCASE("tiny, multi-token prompt, 2 threads") { check_same_tokens(synthetic_preset("tiny"), 8, {1, 17, 42, 99, 3}, 33, 2); }
  SUBCASE("GQA group 3, head_dim 10, HalfSplit RoPE, 2 threads") {
    check_same_tokens(odd_gqa_config(), 9, {5, 6, 7}, 37, 2);
  }
  SUBCASE("stories260k shape (GQA 8/4, head_dim 8)") {
    check_same_tokens(synthetic_preset("stories260k"), 10, {1, 200, 300}, 29, 2);
  }
}

namespace {

// The logits of a prefill of `prompt_length` tokens followed by one-token decode steps through a KV cache,
// against the logits of one forward pass over the whole sequence at every position: on the CPU they must be
// bit for bit equal. The CPU kernels are the same code whatever the number of new tokens (the GEMV of a
// decode step is the GEMM's dot product for one row; attention reads the same cached rows in the same
// order; threads split rows, never a sum), so any difference is a bug: a wrong position, a stale or
// misplaced cache row, or a path that sums in another order. (A GPU backend may use other kernels per
// shape; the CUDA tests bound that separately.)
void check_cached_logits_equal_full_pass(const ModelFile& file, const std::vector<int>& sequence, int prompt_length,
                                         int threads) {
  const ModelConfig& config = file.config;
  auto backend = make_cpu_backend(threads);
  Weights weights(file, WeightFormat::F32, *backend);
  const int n = int(sequence.size());
  Transformer transformer(weights, *backend, n);
  const size_t vocab = size_t(config.vocab_size);

  // Reference: one pass over the whole sequence, the logits of every position.
  KVCache full_cache(*backend, config, n);
  std::vector<float> all_logits(size_t(n) * vocab), last(vocab);
  transformer.forward(sequence, 0, full_cache, last.data(), all_logits.data());

  // Cached: prefill the prompt, then one token per step.
  KVCache cache(*backend, config, n);
  std::vector<float> logits(vocab);
  transformer.forward(std::span<const int>(sequence.data(), prompt_length), 0, cache, logits.data());
  int identical_positions = 0;
  for (int position = prompt_length - 1; position < n; ++position) {
    if (position >= prompt_length)
      transformer.forward(std::span<const int>(sequence.data() + position, 1), position, cache, logits.data());
    const float* expected = all_logits.data() + size_t(position) * vocab;
    size_t differing = 0, first = vocab;
    for (size_t i = 0; i < vocab; ++i)
      if (logits[i] != expected[i]) {  // exact: not even one ulp
        if (differing++ == 0) first = i;
      }
    if (differing == 0) {
      ++identical_positions;
    } else {
      FAIL_CHECK("position " << position << ": " << differing << " of " << vocab << " logits differ from the full pass"
                             << ", first at token " << first << ": " << logits[first] << " vs " << expected[first]);
    }
  }
  MESSAGE(identical_positions << " of " << n - prompt_length + 1 << " positions bit-identical (" << threads
                              << " threads)");
}

}  // namespace

TEST_CASE("cached generator: decode-step logits equal a full forward pass bit for bit (synthetic GQA model)") {
  ModelFile file = model_file_from_synthetic(make_synthetic_model(odd_gqa_config(), 11));
  const std::vector<int> sequence = {1, 40, 41, 250, 7, 7, 123, 64, 5, 299, 0, 18};
  check_cached_logits_equal_full_pass(file, sequence, /*prompt_length=*/4, /*threads=*/2);
  check_cached_logits_equal_full_pass(file, sequence, /*prompt_length=*/1, /*threads=*/1);
}

TEST_CASE("cached generator: decode-step logits equal a full forward pass bit for bit (stories260K)") {
  INFER_MODEL_FILE(path, test::kStories260K);
  const ModelFile file = load_model_file(path.string());
  // BOS, "Once upon a time" in tok512 ids, then the start of llama2.c's greedy story; 40 positions.
  std::vector<int> sequence = {1, 403, 407, 261, 378};
  for (int i = 0; sequence.size() < 40; ++i) sequence.push_back(int((i * 97 + 31) % file.config.vocab_size));
  check_cached_logits_equal_full_pass(file, sequence, /*prompt_length=*/5, /*threads=*/2);
  check_cached_logits_equal_full_pass(file, sequence, /*prompt_length=*/1, /*threads=*/1);
}

TEST_CASE("cached generator: errors and edge cases") {
  ModelFile file = model_file_from_synthetic(make_synthetic_model(synthetic_preset("tiny"), 12));
  auto backend = make_cpu_backend(1);
  Weights weights(file, WeightFormat::F32, *backend);
  Transformer transformer(weights, *backend, 4);
  CachedGenerator cached(transformer);
  CHECK_THROWS_AS(cached.generate({}, greedy_options(3)), Error);                          // empty prompt
  CHECK_THROWS_AS(cached.generate({1, 2, 3, 4, 5}, greedy_options(3)), Error);             // prompt longer than one pass
  CHECK_THROWS_AS(cached.generate({1}, greedy_options(file.config.max_seq_len)), Error);  // past the context
  CHECK(cached.generate({1}, greedy_options(0)).tokens.empty());
  // The decode steps run n = 1, so a 4-token transformer still generates far beyond 4 tokens.
  CHECK(cached.generate({1, 2}, greedy_options(50)).tokens.size() == 50);
  // Stop tokens end generation, the stop token is not emitted; a callback returning false stops it.
  GenerationOptions options = greedy_options(50);
  const std::vector<int> free_run = cached.generate({1, 2}, options).tokens;
  options.stop_tokens = {free_run[5]};
  const GenerationResult stopped = cached.generate({1, 2}, options);
  CHECK(stopped.stopped_by_token);
  CHECK(std::find(stopped.tokens.begin(), stopped.tokens.end(), free_run[5]) == stopped.tokens.end());
  int seen = 0;
  const GenerationResult early = cached.generate({1, 2}, greedy_options(50), [&](int) { return ++seen < 3; });
  CHECK(early.tokens.size() == 3);
}

TEST_CASE("cached generator: same tokens as the naive generator on stories260K") {
  INFER_MODEL_FILE(path, test::kStories260K);
  ModelFile file = load_model_file(path.string());
  auto backend = make_cpu_backend(2);
  Weights weights(file, WeightFormat::F32, *backend);
  const std::vector<int> prompt = {1, 403, 407, 261};  // BOS and three tok512 ids
  Transformer transformer(weights, *backend, int(prompt.size()) + 120);
  const auto expected = NaiveGenerator(transformer).generate(prompt, greedy_options(120));
  const auto got = CachedGenerator(transformer).generate(prompt, greedy_options(120));
  CHECK(got.tokens == expected.tokens);
}

TEST_CASE("cached generator: same tokens as the naive generator on SmolLM2-135M") {
  INFER_MODEL_FILE(path, test::kSmolLM2);
  ModelFile file = load_model_file(path.string());
  auto backend = make_cpu_backend(2);
  Weights weights(file, WeightFormat::F32, *backend);
  REQUIRE(file.tokenizer.has_value());
  // The naive decoder is slow on a 135M model, so a short run: 8 steps already exercise the cache
  // at 8 positions past the prompt.
  const std::vector<int> prompt = make_tokenizer(*file.tokenizer)->encode("The capital of France is", false);
  REQUIRE(prompt.size() >= 2);
  Transformer transformer(weights, *backend, int(prompt.size()) + 8);
  const auto expected = NaiveGenerator(transformer).generate(prompt, greedy_options(8));
  const auto got = CachedGenerator(transformer).generate(prompt, greedy_options(8));
  CHECK(got.tokens == expected.tokens);
}
