// test_greedy.cpp: ch08 lab, exercise 1: accept_greedy, and greedy speculative decoding end to end.
#include "infer/core/error.h"
#include "infer/engine/draft.h"
#include "infer/engine/generator.h"
#include "infer/engine/speculative.h"
#include "infer/formats/synthetic.h"
#include "test_util.h"

#include <random>

using namespace infer;

TEST_CASE("greedy: accept_greedy keeps the longest agreeing prefix") {
  CHECK(accept_greedy(std::vector<int>{5, 6, 7}, std::vector<int>{5, 6, 7, 8}) == 3);
  CHECK(accept_greedy(std::vector<int>{5, 6, 7}, std::vector<int>{5, 9, 7, 8}) == 1);
  INFO("a later agreement after a disagreement does not count: the guesses after a wrong one were made on a wrong prefix");
  CHECK(accept_greedy(std::vector<int>{5, 6, 7}, std::vector<int>{4, 6, 7, 8}) == 0);
  CHECK(accept_greedy(std::vector<int>{}, std::vector<int>{3}) == 0);
  // Seeded random cases against a plain loop.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int k = int(rng() % 9);
    std::vector<int> draft(static_cast<size_t>(k));
    std::vector<int> target(static_cast<size_t>(k) + 1);
    for (int& t : target) t = int(rng() % 3);
    for (int i = 0; i < k; ++i) draft[size_t(i)] = rng() % 4 == 0 ? int(rng() % 3) : target[size_t(i)];
    int expected = 0;
    while (expected < k && draft[size_t(expected)] == target[size_t(expected)]) ++expected;
    REQUIRE(accept_greedy(draft, target) == expected);
  }
  INFO("target_argmax must have one entry more than the draft (the bonus token)");
  CHECK_THROWS_AS(accept_greedy(std::vector<int>{1, 2}, std::vector<int>{1, 2}), Error);
}

TEST_CASE("greedy: speculative decoding with your rule gives plain decoding's tokens") {
  const ModelConfig config = synthetic_preset("tiny");
  ModelFile file = model_file_from_synthetic(make_synthetic_model(config, 3));
  auto backend = make_cpu_backend(1);
  Weights weights(file, WeightFormat::F32, *backend);
  Weights draft_weights(file, WeightFormat::F16, *backend);
  Transformer target(weights, *backend, 64), draft_model(draft_weights, *backend, 64);
  GenerationOptions options;
  options.max_new_tokens = 40;
  const std::vector<int> prompt{1, 17, 42, 99, 42, 17};
  const std::vector<int> expected = CachedGenerator(target).generate(prompt, options).tokens;
  ModelDraft self_draft("self-draft f16", draft_model, 64);
  NgramDraft lookup;
  for (Draft* draft : std::initializer_list<Draft*>{&self_draft, &lookup}) {
    for (int gamma : {1, 4, 8}) {
      SpeculativeOptions speculative;
      speculative.gamma = gamma;
      speculative.adaptive = false;
      speculative.fallback = false;
      SpeculativeGenerator generator(target, *draft, speculative);
      INFO(draft->name() << ", gamma " << gamma);
      CHECK(generator.generate(prompt, options).tokens == expected);
      // A rule that accepted nothing would give the right tokens too, but no speedup: the f16 self-draft
      // agrees with the target almost always, so most guesses must be kept.
      if (draft == &self_draft) CHECK(generator.stats().accepted * 2 > generator.stats().drafted);
    }
  }
}
