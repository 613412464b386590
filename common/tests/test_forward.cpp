// test_forward.cpp: the forward pass against a float64 reference written plainly (reference_model.h).
//
// Random models of several shapes (GQA, head_dim not a multiple of 8, hidden_dim odd-sized, both
// RoPE layouts, tied and separate classifier) are built in memory; the engine's fp32 logits must
// match the reference's within a stated bound, all tokens in one pass and token by token.
#include "infer/model/backend.h"
#include "infer/core/error.h"
#include "infer/model/kv_cache.h"
#include "infer/model/transformer.h"
#include "reference_model.h"
#include "test_util.h"

#include <cmath>
#include <map>

using namespace infer;
using namespace infer::test;  // RandomModel, reference_logits, shape, max_relative_error

TEST_CASE("forward pass matches a float64 reference on random models of several shapes") {
  const std::vector<ModelConfig> shapes = {
      // (the RoPE bases: 10000 (llama2.c), 100000 (SmolLM2), 500000 (Llama 3); a RoPE that ignores the
      // model's theta fails the three shapes whose theta is not 10000)
      shape(64, 2, 4, 4, 16, 96, 50, RopeLayout::Interleaved, true, 10000.0f),    // plain multi-head attention
      shape(48, 3, 6, 2, 8, 100, 61, RopeLayout::Interleaved, false, 100000.0f),  // GQA 3:1, separate classifier
      shape(36, 2, 3, 1, 12, 70, 33, RopeLayout::HalfSplit, true, 500000.0f),     // MQA, dims not multiples of 8
      shape(40, 2, 4, 2, 10, 77, 45, RopeLayout::HalfSplit, false, 100000.0f),    // head_dim 10, odd hidden_dim
  };
  auto backend = make_cpu_backend(2);
  uint64_t seed = 1000;
  for (const ModelConfig& config : shapes) {
    CAPTURE(config.dim);
    CAPTURE(config.n_kv_heads);
    CAPTURE(config.rope_theta);
    RandomModel model = make_random_model(config, ++seed);
    Weights weights(model.file, WeightFormat::F32, *backend);
    const std::vector<int> tokens = {1, 7, 3, 30, 12, 0, 29, 5, 17, 2, 31};
    const auto reference = reference_logits(model, tokens);
    const int n = int(tokens.size());

    // All tokens in one pass (the prefill / naive-decoder path: GEMM).
    Transformer transformer(weights, *backend, n);
    KVCache cache(*backend, config, n);
    std::vector<float> last(config.vocab_size), all(size_t(n) * config.vocab_size);
    transformer.forward(tokens, 0, cache, last.data(), all.data());
    // fp32 sums of at most a few hundred terms, 2-3 layers deep: measured <= 7e-7 relative to the
    // largest logit. 1e-5 leaves room for a different summation order, float expf/powf and thread
    // counts, while any indexing or layout bug gives errors of order 1.
    double worst = 0.0;
    for (int t = 0; t < n; ++t) worst = std::max(worst, max_relative_error(all.data() + size_t(t) * config.vocab_size, reference[t]));
    MESSAGE("one pass, dim " << config.dim << ": max relative logit error " << worst);
    CHECK(worst < 1e-5);
    CHECK(max_relative_error(last.data(), reference.back()) < 1e-5);

    // Token by token through the cache (the decode path: GEMV + attention over cached positions).
    KVCache step_cache(*backend, config, n);
    double worst_step = 0.0;
    for (int t = 0; t < n; ++t) {
      transformer.forward(std::span<const int>(&tokens[t], 1), t, step_cache, last.data());
      worst_step = std::max(worst_step, max_relative_error(last.data(), reference[t]));
    }
    MESSAGE("token by token, dim " << config.dim << ": max relative logit error " << worst_step);
    CHECK(worst_step < 1e-5);
  }
}

TEST_CASE("half-precision weights match the reference computed with the same rounded weights") {
  ModelConfig config = shape(64, 2, 8, 4, 8, 96, 70, RopeLayout::Interleaved, false);
  RandomModel model = make_random_model(config, 77);
  // Round the reference's weights exactly as the engine stores them.
  for (auto& [name, values] : model.weights)
    if (model.file.tensor(name).shape.size() == 2)
      for (double& v : values) v = fp16_to_fp32(fp32_to_fp16(float(v)));
  auto backend = make_cpu_backend(2);
  Weights weights(model.file, WeightFormat::F16, *backend);
  const std::vector<int> tokens = {3, 9, 27, 1, 64, 33};
  const auto reference = reference_logits(model, tokens);
  Transformer transformer(weights, *backend, int(tokens.size()));
  KVCache cache(*backend, config, int(tokens.size()));
  std::vector<float> last(config.vocab_size), all(tokens.size() * config.vocab_size);
  transformer.forward(tokens, 0, cache, last.data(), all.data());
  double worst = 0.0;
  for (size_t t = 0; t < tokens.size(); ++t) worst = std::max(worst, max_relative_error(all.data() + t * config.vocab_size, reference[t]));
  MESSAGE("f16 weights: max relative logit error " << worst);
  CHECK(worst < 1e-5);  // same bound as fp32: the weights are identical, only fp32 arithmetic differs
}

TEST_CASE("forward refuses passes that do not fit") {
  ModelConfig config = shape(32, 1, 4, 2, 8, 40, 20, RopeLayout::Interleaved, true);
  RandomModel model = make_random_model(config, 5);
  auto backend = make_cpu_backend(1);
  Weights weights(model.file, WeightFormat::F32, *backend);
  Transformer transformer(weights, *backend, 4);
  KVCache cache(*backend, config, 6);
  std::vector<float> logits(config.vocab_size);
  const std::vector<int> five = {1, 2, 3, 4, 5};
  CHECK_THROWS_AS(transformer.forward(five, 0, cache, logits.data()), Error);  // more than max_tokens
  const std::vector<int> two = {1, 2};
  CHECK_THROWS_AS(transformer.forward(two, 5, cache, logits.data()), Error);   // past the cache
  const std::vector<int> bad = {1, 99};
  CHECK_THROWS_AS(transformer.forward(bad, 0, cache, logits.data()), Error);   // token outside the vocabulary
}
