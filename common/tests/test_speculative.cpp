// test_speculative.cpp: speculative decoding (ch08) changes the speed, never the output.
//
//   greedy:   the tokens equal CachedGenerator's, token for token, for every draft kind, gamma 1..8, several
//             prompts, adaptive gamma on and off, and stories260K's golden text
//   sampling: a chi-square test on a small synthetic model: the speculative output follows the target's
//             filtered distribution at temperature 1 (plain, top-k, top-p), and a wrong acceptance rule
//             fails the same test
//   pieces:   the acceptance rules, the residual distribution, the controller's switches, draft errors
#include "golden_util.h"
#include "infer/core/error.h"
#include "infer/engine/draft.h"
#include "infer/engine/generator.h"
#include "infer/engine/speculative.h"
#include "infer/formats/synthetic.h"
#include "infer/tokenizer/tokenizer.h"
#include "chi_square.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <tuple>

using namespace infer;
using test::greedy_options;
using test::chi_square;
using test::chi_square_critical_001;

namespace {

// A target and its drafts on one backend: the target in f32, a self-draft in f16, a different model
// with the same vocabulary (another seed, one layer), prompt lookup.
struct Setup {
  std::unique_ptr<Backend> backend = make_cpu_backend(1);  // one thread: tiny models, no fork/join overhead
  ModelFile target_file, other_file;
  std::unique_ptr<Weights> target_weights, self_weights, other_weights;
  std::unique_ptr<Transformer> target, self_model, other_model, early_exit;

  Setup(ModelFile target_file_, ModelFile other_file_, int max_tokens)
      : target_file(std::move(target_file_)), other_file(std::move(other_file_)) {
    target_weights = std::make_unique<Weights>(target_file, WeightFormat::F32, *backend);
    self_weights = std::make_unique<Weights>(target_file, WeightFormat::F16, *backend);
    other_weights = std::make_unique<Weights>(other_file, WeightFormat::F32, *backend);
    target = std::make_unique<Transformer>(*target_weights, *backend, max_tokens);
    self_model = std::make_unique<Transformer>(*self_weights, *backend, max_tokens);
    other_model = std::make_unique<Transformer>(*other_weights, *backend, max_tokens);
    // Early exit: the target's own weights, its first half of the layers, its final norm and classifier.
    early_exit = std::make_unique<Transformer>(*target_weights, *backend, max_tokens);
    early_exit->set_layer_limit(std::max(1, target_file.config.n_layers / 2));
  }
  // Every draft kind, each with a contiguous cache of `capacity` positions (or paged `storage`, which the
  // draft model of another shape cannot share: it keeps a contiguous cache).
  std::vector<std::unique_ptr<Draft>> drafts(int capacity, KVStorage storage = {}) {
    std::vector<std::unique_ptr<Draft>> all;
    all.push_back(std::make_unique<ModelDraft>("self-draft f16", *self_model, capacity, storage));
    all.push_back(std::make_unique<ModelDraft>("self-draft f16, the target's prompt K/V", *self_model, capacity, storage,
                                               ModelDraft::Prefill::target_prompt_kv));
    all.push_back(std::make_unique<ModelDraft>("early exit", *early_exit, capacity, storage));
    all.push_back(std::make_unique<ModelDraft>("draft model", *other_model, capacity));
    all.push_back(std::make_unique<NgramDraft>());
    return all;
  }
};

ModelFile synthetic_file(ModelConfig config, uint64_t seed, float logit_scale = 1.0f) {
  SyntheticModel model = make_synthetic_model(config, seed);
  // A larger classifier makes the next-token distributions peaked, as a trained model's are.
  if (logit_scale != 1.0f)
    for (auto& [name, values] : model.tensors)
      if (name == "output.weight")
        for (float& v : values) v *= logit_scale;
  return model_file_from_synthetic(std::move(model));
}

ModelConfig one_layer(ModelConfig config) {
  config.n_layers = 1;
  return config;
}

SpeculativeOptions fixed_gamma(int gamma) {
  SpeculativeOptions options;
  options.gamma = gamma;
  options.adaptive = false;
  options.fallback = false;
  return options;
}

}  // namespace

// ---- the rules ------------------------------------------------------------------------------------

TEST_CASE("speculative: greedy acceptance keeps the longest prefix that agrees with the target") {
  CHECK(accept_greedy(std::vector<int>{5, 6, 7}, std::vector<int>{5, 6, 7, 8}) == 3);
  CHECK(accept_greedy(std::vector<int>{5, 6, 7}, std::vector<int>{5, 9, 7, 8}) == 1);
  CHECK(accept_greedy(std::vector<int>{5, 6, 7}, std::vector<int>{4, 6, 7, 8}) == 0);
  CHECK(accept_greedy(std::vector<int>{}, std::vector<int>{3}) == 0);
  CHECK_THROWS_AS(accept_greedy(std::vector<int>{1, 2}, std::vector<int>{1, 2}), Error);
}

TEST_CASE("speculative: a guess is accepted with probability min(1, p / q)") {
  CHECK(accept_draft_token(0.5, 0.25, 0.999));   // p > q: always
  CHECK(accept_draft_token(0.2, 0.4, 0.49));     // p / q = 0.5
  CHECK_FALSE(accept_draft_token(0.2, 0.4, 0.5));
  CHECK_FALSE(accept_draft_token(0.0, 0.4, 0.0));  // the target never picks it: never
}

TEST_CASE("speculative: the residual draws from normalize(max(0, p - q))") {
  const std::vector<float> p{0.5f, 0.3f, 0.2f, 0.0f}, q{0.1f, 0.6f, 0.2f, 0.1f};
  // max(0, p - q) = {0.4, 0, 0, 0}: only token 0 can come out.
  for (double u : {0.0, 0.3, 0.999}) CHECK(sample_residual(p, q, u) == 0);
  const std::vector<float> p2{0.4f, 0.4f, 0.2f}, q2{0.0f, 0.2f, 0.8f};
  // residual {0.4, 0.2, 0}, total 0.6: token 0 for u < 2/3, token 1 after.
  CHECK(sample_residual(p2, q2, 0.6) == 0);
  CHECK(sample_residual(p2, q2, 0.7) == 1);
  // p == q: no residual mass, falls back to p.
  CHECK(sample_residual(p2, p2, 0.7) == 1);
  CHECK(sample_residual(p2, p2, 0.9) == 2);
  CHECK_THROWS_AS(sample_residual(p2, p, 0.5), Error);
}

TEST_CASE("speculative: the Leviathan prediction") {
  // a = 0: one token per round; every guess is wasted.
  CHECK(expected_tokens_per_round(0.0, 4) == doctest::Approx(1.0));
  CHECK(expected_tokens_per_round(1.0, 4) == doctest::Approx(5.0));
  CHECK(expected_tokens_per_round(0.5, 2) == doctest::Approx(1.75));
  // a = 0.8, gamma = 4, c = 0.1: (1 - 0.8^5) / 0.2 / 1.4 = 2.3616
  CHECK(predicted_speedup(0.8, 4, 0.1) == doctest::Approx(3.3616 / 1.4));
}

TEST_CASE("speculative: with prior costs the controller chooses gamma from the first round") {
  SpeculativeOptions options;
  options.gamma = 4;
  options.acceptance_prior = 0.5;
  SpeculativeStats stats;
  // Verification as expensive as a compute-bound pass (V(n) = n) and a guess costing half a pass: with a = 0.5
  // no gamma pays, so the best predicted is the smallest, 1 (not the warm-up's 4).
  options.pass_cost = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  options.draft_cost = 0.5;
  GammaController priced(options);
  CHECK(priced.next_gamma(8, 0, stats) == 0);  // the plain step measuring the one-token pass
  priced.record(1, 0, 0, false, 0.0, 10.0);
  CHECK(priced.pass_ms(5) == doctest::Approx(50.0));          // the prior curve scaled to the measured pass
  CHECK(priced.draft_token_ms() == doctest::Approx(5.0));
  CHECK(priced.next_gamma(8, 1, stats) == 1);
  // Free verification and free guesses: the largest gamma at once.
  options.pass_cost.assign(9, 1.0);
  options.draft_cost = 0.0;
  GammaController free_guesses(options);
  free_guesses.next_gamma(8, 0, stats);
  free_guesses.record(1, 0, 0, false, 0.0, 10.0);
  CHECK(free_guesses.next_gamma(8, 1, stats) == 8);
  // Without priors: the warm-up round at options.gamma.
  GammaController blind(SpeculativeOptions{});
  blind.next_gamma(8, 0, stats);
  blind.record(1, 0, 0, false, 0.0, 10.0);
  CHECK(blind.next_gamma(8, 1, stats) == SpeculativeOptions{}.gamma);
  options.pass_cost = {1, 0};
  CHECK_THROWS_WITH_AS(GammaController{options}, doctest::Contains("pass_cost[1] must be > 0"), Error);
}

TEST_CASE("speculative: the controller raises gamma with acceptance, switches off when it stops paying, and back") {
  SpeculativeOptions options;
  options.probe_every = 4;
  GammaController controller(options);
  SpeculativeStats stats;
  CHECK(controller.next_gamma(8, 0, stats) == 0);  // first: a plain step to measure the one-token pass
  // Passes cost 10 ms + 1 ms per extra token; a guess costs 2 ms.
  auto round = [&](int gamma, int accepted, bool rejected) {
    controller.record(gamma + 1, gamma, accepted, rejected, 2.0 * gamma, 10.0 + gamma);
  };
  controller.record(1, 0, 0, false, 0.0, 10.0);
  for (int i = 0; i < 20; ++i) {
    const int gamma = controller.next_gamma(8, i, stats);
    REQUIRE(gamma >= 1);
    round(gamma, gamma, false);  // every guess accepted
    ++stats.rounds;
  }
  CHECK(controller.next_gamma(8, 20, stats) >= 6);
  CHECK(stats.switches.empty());
  // Now every guess is rejected: the controller turns speculation off and logs it.
  int plain = 0, probes = 0;
  for (int i = 0; i < 60; ++i) {
    const int gamma = controller.next_gamma(8, 20 + i, stats);
    if (gamma == 0) {
      ++plain;
      controller.record(1, 0, 0, false, 0.0, 10.0);
    } else {
      if (!stats.switches.empty()) ++probes;
      round(gamma, 0, true);
    }
  }
  REQUIRE(stats.switches.size() == 1);
  CHECK_FALSE(stats.switches[0].on);
  CHECK(stats.switches[0].predicted_gain < options.min_gain);
  CHECK(plain > 30);  // mostly plain steps
  // Each failed probe doubles the wait (4, 8, 16, 32): at most 4 probes in the ~55 steps after the switch
  // (one every 4 would be ~13).
  CHECK(probes >= 2);
  CHECK(probes <= 4);
  // Acceptance comes back (seen through the probes): speculation switches on again.
  for (int i = 0; i < 60 && stats.switches.size() < 2; ++i) {
    const int gamma = controller.next_gamma(8, 80 + i, stats);
    if (gamma == 0) controller.record(1, 0, 0, false, 0.0, 10.0);
    else round(gamma, gamma, false);
  }
  REQUIRE(stats.switches.size() == 2);
  CHECK(stats.switches[1].on);
}

// ---- drafts ---------------------------------------------------------------------------------------

TEST_CASE("speculative: prompt lookup proposes the continuation of the most recent earlier n-gram") {
  NgramDraft draft(3, 1);
  Sampler sampler(SamplerConfig{});
  DraftProposal out;
  // ... 7 8 9 4 5 ... 7 8 9 -> the suffix "7 8 9" occurred at 0: propose 4 5 6 (gamma 3).
  draft.propose(std::vector<int>{7, 8, 9, 4, 5, 6, 1, 7, 8, 9}, 3, sampler, out);
  CHECK(out.tokens == std::vector<int>{4, 5, 6});
  CHECK(out.q.empty());
  // The most recent occurrence wins: "2" is followed by 3 at first, by 9 later.
  draft.propose(std::vector<int>{2, 3, 1, 2, 9, 5, 2}, 2, sampler, out);
  CHECK(out.tokens == std::vector<int>{9, 5});
  // Runs off the end of the sequence: fewer than gamma.
  draft.propose(std::vector<int>{4, 4}, 5, sampler, out);
  CHECK(out.tokens == std::vector<int>{4});
  // No recurring suffix: nothing.
  draft.propose(std::vector<int>{1, 2, 3}, 4, sampler, out);
  CHECK(out.tokens.empty());
  CHECK_THROWS_AS(NgramDraft(1, 2), Error);
}

TEST_CASE("speculative: a draft model must share the target's vocabulary") {
  const ModelConfig target = synthetic_preset("tiny");
  ModelConfig draft = target;
  const auto target_tokenizer = make_tokenizer(synthetic_tokenizer(target.vocab_size));
  CHECK_NOTHROW(check_draft_compatible(target, draft, target_tokenizer.get(), target_tokenizer.get()));
  draft.vocab_size = 280;
  const auto draft_tokenizer = make_tokenizer(synthetic_tokenizer(draft.vocab_size));
  try {
    check_draft_compatible(target, draft, target_tokenizer.get(), draft_tokenizer.get());
    FAIL("a draft with another vocabulary was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("280") != std::string::npos);
    CHECK(std::string(e.what()).find("300") != std::string::npos);
  }
  // Same size, different pieces: found and named.
  TokenizerData data = synthetic_tokenizer(target.vocab_size);
  std::swap(data.tokens[120], data.tokens[121]);
  const auto swapped = make_tokenizer(data);
  CHECK_THROWS_WITH_AS(check_draft_compatible(target, target, target_tokenizer.get(), swapped.get()),
                       doctest::Contains("token 120"), Error);
}

// ---- greedy: token for token the plain decoder's -----------------------------------------------------

TEST_CASE("speculative: greedy output equals plain greedy decoding for every draft, gamma 1..8, several prompts") {
  const ModelConfig config = synthetic_preset("tiny");
  constexpr int kNew = 40;
  // Random-weight models repeat themselves under greedy decoding, so prompt lookup and the f16 self-draft
  // are accepted often and the draft model (another random model) rarely: both paths are exercised.
  const std::vector<std::vector<int>> prompts = {{1}, {1, 17, 42, 99, 42, 17}, {5, 6, 7, 5, 6, 7, 5, 6}};
  Setup setup(synthetic_file(config, 11), synthetic_file(one_layer(config), 12), 64);
  auto drafts = setup.drafts(64 + 16);
  for (const auto& prompt : prompts) {
    const std::vector<int> expected = CachedGenerator(*setup.target).generate(prompt, greedy_options(kNew)).tokens;
    REQUIRE(expected.size() == size_t(kNew));
    for (auto& draft : drafts) {
      for (int gamma = 1; gamma <= 8; ++gamma) {
        SpeculativeGenerator generator(*setup.target, *draft, fixed_gamma(gamma));
        const GenerationResult got = generator.generate(prompt, greedy_options(kNew));
        INFO(draft->name() << ", gamma " << gamma << ", prompt of " << prompt.size());
        CHECK(got.tokens == expected);
        const SpeculativeStats& stats = generator.stats();
        CHECK(stats.accepted <= stats.drafted);
        CHECK(got.token_ms.size() == got.tokens.size());
      }
      // Adaptive gamma with the fallback: the same tokens.
      SpeculativeGenerator adaptive(*setup.target, *draft, SpeculativeOptions{});
      INFO(draft->name() << ", adaptive");
      CHECK(adaptive.generate(prompt, greedy_options(kNew)).tokens == expected);
    }
  }
}

TEST_CASE("speculative: greedy with stop tokens, penalties and max_tokens stops where plain decoding stops") {
  const ModelConfig config = synthetic_preset("tiny");
  Setup setup(synthetic_file(config, 21), synthetic_file(one_layer(config), 22), 64);
  auto drafts = setup.drafts(80);
  const std::vector<int> prompt{1, 8, 9, 8, 9};
  GenerationOptions options = greedy_options(30);
  options.sampler.repetition_penalty = 1.3f;
  options.sampler.frequency_penalty = 0.2f;
  const std::vector<int> plain = CachedGenerator(*setup.target).generate(prompt, options).tokens;
  REQUIRE(plain.size() == 30);
  options.stop_tokens = {plain[17]};  // stops at the first occurrence of this token
  const GenerationResult stopped = CachedGenerator(*setup.target).generate(prompt, options);
  REQUIRE(stopped.stopped_by_token);
  for (auto& draft : drafts) {
    for (int gamma : {1, 3, 8}) {
      SpeculativeGenerator generator(*setup.target, *draft, fixed_gamma(gamma));
      options.stop_tokens.clear();
      INFO(draft->name() << ", gamma " << gamma);
      CHECK(generator.generate(prompt, options).tokens == plain);
      options.stop_tokens = {plain[17]};
      const GenerationResult got = generator.generate(prompt, options);
      CHECK(got.tokens == stopped.tokens);
      CHECK(got.stopped_by_token);
      options.max_new_tokens = 7;
      options.stop_tokens.clear();
      CHECK(generator.generate(prompt, options).tokens == std::vector<int>(plain.begin(), plain.begin() + 7));
      options.max_new_tokens = 30;
    }
  }
}

TEST_CASE("speculative: stories260K greedy through every draft reproduces llama2.c's golden text") {
  INFER_GOLDEN_FILES(test::kStories260K);
  const std::string expected = test::read_text(golden_path, test::kGoldenTextBytes);
  ModelFile file = load_model_file(model_path.string());
  const auto tokenizer = load_llama2c_tokenizer(tokenizer_path.string(), file.config.vocab_size);
  const int bos = tokenizer->bos_id();
  // The draft model: a random model with stories260K's vocabulary (rarely right: the rejection path).
  Setup setup(std::move(file), synthetic_file(one_layer(synthetic_preset("stories260k")), 5), 260);
  auto drafts = setup.drafts(260);
  for (auto& draft : drafts) {
    for (int gamma : {1, 4, 8}) {
      SpeculativeGenerator generator(*setup.target, *draft, fixed_gamma(gamma));
      const GenerationResult result = generator.generate({bos}, greedy_options(test::kGoldenSteps, {bos}));
      INFO(draft->name() << ", gamma " << gamma);
      CHECK(test::decode_as_printed(*tokenizer, bos, result.tokens) == expected);
    }
    SpeculativeGenerator adaptive(*setup.target, *draft);
    const GenerationResult result = adaptive.generate({bos}, greedy_options(test::kGoldenSteps, {bos}));
    CHECK(test::decode_as_printed(*tokenizer, bos, result.tokens) == expected);
  }
}

// ---- the paged cache: rollback gives every block back ------------------------------------------------------

TEST_CASE("speculative: paged runner equals the contiguous one and truncate() gives blocks back at once") {
  const ModelConfig config = synthetic_preset("tiny");
  Setup setup(synthetic_file(config, 41), synthetic_file(one_layer(config), 42), 16);
  PagedKVCache cache(*setup.backend, config, 8, 4);
  BlockManager pool(8, 4, /*prefix_caching=*/false);
  const int vocab = config.vocab_size;
  const std::vector<int> tokens{1, 5, 9, 13, 17, 21, 25, 29, 33, 37};
  std::vector<float> paged_logits(size_t(vocab) * 10), contiguous_logits(size_t(vocab) * 10);
  {
    PagedSequenceRunner paged(*setup.target, cache, pool);
    ContiguousSequenceRunner contiguous(*setup.target, 16);
    paged.extend(std::span(tokens).first(7), paged_logits.data(), true);
    contiguous.extend(std::span(tokens).first(7), contiguous_logits.data(), true);
    CHECK(paged_logits == contiguous_logits);  // bit for bit: the same pass over another layout
    CHECK(paged.blocks().size() == 2);
    CHECK(pool.num_free() == 6);
    // Roll back 4 positions (7 -> 3): block 1 is empty and goes back; then rerun other tokens there.
    paged.truncate(3);
    contiguous.truncate(3);
    CHECK(paged.blocks().size() == 1);
    CHECK(pool.num_free() == 7);
    paged.extend(std::span(tokens).subspan(5, 5), paged_logits.data(), true);
    contiguous.extend(std::span(tokens).subspan(5, 5), contiguous_logits.data(), true);
    CHECK(std::equal(paged_logits.begin(), paged_logits.begin() + 5 * vocab, contiguous_logits.begin()));
    CHECK(paged.length() == 8);
    CHECK(paged.tokens() == std::vector<int>{1, 5, 9, 21, 25, 29, 33, 37});
    CHECK_THROWS_AS(paged.truncate(9), Error);
  }
  CHECK(pool.num_free() == 8);  // the destructor gave back the rest
  CHECK(pool.num_sequences() == 0);
  pool.check_invariants();
  BlockManager other_shape(8, 2, false);
  CHECK_THROWS_AS(PagedSequenceRunner(*setup.target, cache, other_shape), Error);
}

TEST_CASE("speculative: with a paged cache, output equals plain decoding and the pool is full after every run") {
  const ModelConfig config = synthetic_preset("tiny");
  Setup setup(synthetic_file(config, 51), synthetic_file(one_layer(config), 52), 64);
  const std::vector<int> prompt{1, 17, 42, 99, 42, 17};
  constexpr int kNew = 40;
  const std::vector<int> expected = CachedGenerator(*setup.target).generate(prompt, greedy_options(kNew)).tokens;
  for (int block_size : {1, 4, 16}) {
    // Enough blocks for the target and one draft at once: (prompt + new + gamma) positions each.
    const int blocks = 2 * ((int(prompt.size()) + kNew + 9 + block_size - 1) / block_size + 1);
    PagedKVCache cache(*setup.backend, config, blocks, block_size);
    BlockManager pool(blocks, block_size, /*prefix_caching=*/false);
    const KVStorage storage{&cache, &pool};
    auto drafts = setup.drafts(64 + 16, storage);
    for (auto& draft : drafts) {
      for (int gamma : {1, 3, 8}) {
        SpeculativeGenerator generator(*setup.target, *draft, fixed_gamma(gamma), storage);
        INFO(draft->name() << ", gamma " << gamma << ", block size " << block_size);
        CHECK(generator.generate(prompt, greedy_options(kNew)).tokens == expected);
        CHECK(pool.num_free() == blocks);
        pool.check_invariants();
      }
      SpeculativeGenerator adaptive(*setup.target, *draft, SpeculativeOptions{}, storage);
      CHECK(adaptive.generate(prompt, greedy_options(kNew)).tokens == expected);
      CHECK(pool.num_free() == blocks);
    }
    // A pool too small for the run: a clear error, and still no block leaked.
    BlockManager tiny_pool(blocks, block_size, false);
    PagedKVCache tiny_cache(*setup.backend, config, blocks, block_size);
    tiny_pool.allocate(/*seq=*/1, {}, (blocks - 2) * block_size);  // another sequence holds all but 2 blocks
    ModelDraft draft("self-draft f16", *setup.self_model, 0, {&tiny_cache, &tiny_pool});
    SpeculativeGenerator generator(*setup.target, draft, fixed_gamma(4), {&tiny_cache, &tiny_pool});
    CHECK_THROWS_WITH_AS(generator.generate(prompt, greedy_options(kNew)), doctest::Contains("free"), Error);
    CHECK(tiny_pool.num_free() == 2);
  }
}

// ---- sampling: exactly the target's distribution -------------------------------------------------------
//
// On a small synthetic model (micro: vocabulary 279, one layer; the classifier scaled so that the
// distributions are peaked like a trained model's) with a different random model as the draft, N
// speculative generations (gamma + 2 tokens: the first is drawn from the prefill's last row, then one round
// of gamma guesses) are compared with the target's exact distribution of the round's first two positions:
// p(y2) = sum over y1 of p(y1) p(y2 | y1) and p(y3) = sum over y1, y2 of p(y1) p(y2 | y1) p(y3 | y1, y2),
// computed by running the target on every y1 and y2. Pearson's chi-square per position, cells with an
// expected count below 5 merged into one; the critical value at significance level 0.001
// (Wilson-Hilferty). The seeds are fixed, so the outcome is reproducible; with the rule right, a failure
// would have had probability 0.001 per test. gamma 1 makes position 3 the bonus token whenever the guess
// was accepted; gamma 2 makes it a second guess.

namespace {

// The target's filtered distribution after `context` (dense, from a full forward pass).
std::vector<double> target_distribution(Transformer& model, const std::vector<int>& context, const SamplerConfig& config) {
  const int vocab = model.config().vocab_size;
  KVCache cache(model.backend(), model.config(), int(context.size()));
  std::vector<float> logits(size_t(vocab), 0.0f);
  std::vector<float> dense(size_t(vocab), 0.0f);
  model.forward(context, 0, cache, logits.data());
  Sampler sampler(config);
  TokenDistribution dist;
  sampler.distribution(logits, context, dist);
  dist.to_dense(dense);
  return std::vector<double>(dense.begin(), dense.end());
}

struct ChiSquareOutcome {
  double statistic[2];
  double critical[2];
  bool passes() const { return statistic[0] < critical[0] && statistic[1] < critical[1]; }
};

ChiSquareOutcome speculative_sampling_chi_square(const SamplerConfig& sampler, int gamma, int n,
                                                 bool (*rule)(double, double, double)) {
  const ModelConfig config = synthetic_preset("micro");
  Setup setup(synthetic_file(config, 31, 2.0f), synthetic_file(config, 32, 2.0f), 8);
  ModelDraft draft("draft model", *setup.other_model, 8);
  const std::vector<int> prompt{1, 2};
  const int vocab = config.vocab_size;

  // The first token is drawn from the prefill's last row, as plain decoding does; the first round then
  // guesses tokens 2.. . Exact marginals of tokens 2 and 3 (sums over the tokens before them):
  // p2(y2) = sum_y1 p(y1) p(y2 | y1), p3(y3) = sum_y1,y2 p(y1) p(y2 | y1) p(y3 | y1, y2).
  const std::vector<double> p1 = target_distribution(*setup.target, prompt, sampler);
  std::vector<double> p2(size_t(vocab), 0.0), p3(size_t(vocab), 0.0);
  KVCache cache(setup.target->backend(), config, 4);
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::vector<float> dense(static_cast<size_t>(vocab));
  Sampler filters(sampler);
  TokenDistribution dist;
  // The distribution after `context`, whose last `run` tokens are run at positions [size - run, size).
  auto next = [&](const std::vector<int>& context, int run) {
    setup.target->forward(std::span<const int>(context).last(size_t(run)), int(context.size()) - run, cache, logits.data());
    filters.distribution(logits, context, dist);
    dist.to_dense(dense);
    return std::vector<double>(dense.begin(), dense.end());
  };
  for (int y1 = 0; y1 < vocab; ++y1) {
    if (p1[size_t(y1)] == 0.0) continue;
    std::vector<int> context{1, 2, y1};
    const std::vector<double> after1 = next(context, 3);
    for (int y2 = 0; y2 < vocab; ++y2) {
      const double p12 = p1[size_t(y1)] * after1[size_t(y2)];
      if (p12 == 0.0) continue;
      p2[size_t(y2)] += p12;
      context.resize(3);
      context.push_back(y2);
      const std::vector<double> after2 = next(context, 1);  // position 3 rewritten for every y2
      for (int y3 = 0; y3 < vocab; ++y3) p3[size_t(y3)] += p12 * after2[size_t(y3)];
    }
  }

  SpeculativeOptions options = fixed_gamma(gamma);
  options.accept_rule = rule;
  SpeculativeGenerator generator(*setup.target, draft, options);
  GenerationOptions generation;
  generation.max_new_tokens = gamma + 2;  // the first token, then a round that may run all gamma guesses
  generation.sampler = sampler;
  std::vector<int> counts2(size_t(vocab), 0), counts3(size_t(vocab), 0);
  for (int i = 0; i < n; ++i) {
    generation.sampler.seed = sampler.seed + uint64_t(i);
    const std::vector<int> tokens = generator.generate(prompt, generation).tokens;
    REQUIRE(tokens.size() == size_t(gamma) + 2);
    ++counts2[size_t(tokens[1])];
    ++counts3[size_t(tokens[2])];
  }
  ChiSquareOutcome outcome{};
  const std::vector<double>* probs[2] = {&p2, &p3};
  const std::vector<int>* counts[2] = {&counts2, &counts3};
  for (int position = 0; position < 2; ++position) {
    const auto [statistic, df] = chi_square(*counts[position], *probs[position], n);
    outcome.statistic[position] = statistic;
    outcome.critical[position] = chi_square_critical_001(df);
  }
  return outcome;
}

bool trust_the_draft(double /*p*/, double q, double /*u*/) { return q > 0.0; }  // wrong: accepts every guess
bool ignore_q(double p, double /*q*/, double u) { return u < p; }               // wrong: min(1, p) for min(1, p/q)

}  // namespace

TEST_CASE("speculative: sampling reproduces the target's distribution (chi-square, significance 0.001)") {
  constexpr int kSamples = 3000;
  SamplerConfig temperature_1;
  temperature_1.temperature = 1.0f;
  temperature_1.seed = 1000;
  SamplerConfig top_k = temperature_1;
  top_k.top_k = 12;
  SamplerConfig top_p = temperature_1;
  top_p.top_p = 0.8f;
  // gamma 1 and 2 at temperature 1; the filters with gamma 2 (a second guess, then the bonus).
  for (const auto& [name, sampler, gamma] : {std::tuple{"temperature 1", temperature_1, 1},
                                             std::tuple{"temperature 1", temperature_1, 2},
                                             std::tuple{"top-k 12", top_k, 2}, std::tuple{"top-p 0.8", top_p, 2}}) {
    {
      const ChiSquareOutcome outcome = speculative_sampling_chi_square(sampler, gamma, kSamples, accept_draft_token);
      INFO(std::string(name) << ", gamma " << gamma << ": chi-square " << outcome.statistic[0] << " / " << outcome.statistic[1]
                << " against critical " << outcome.critical[0] << " / " << outcome.critical[1]);
      CHECK(outcome.passes());
    }
  }
}

TEST_CASE("speculative: a wrong acceptance rule fails the same chi-square test") {
  constexpr int kSamples = 3000;
  SamplerConfig sampler;
  sampler.temperature = 1.0f;
  sampler.seed = 1000;
  for (auto rule : {trust_the_draft, ignore_q}) {
    const ChiSquareOutcome outcome = speculative_sampling_chi_square(sampler, 1, kSamples, rule);
    INFO("chi-square " << outcome.statistic[0] << " / " << outcome.statistic[1] << " against critical "
                       << outcome.critical[0] << " / " << outcome.critical[1]);
    CHECK_FALSE(outcome.passes());
  }
}

TEST_CASE("speculative: an early-exit draft copies its layers' K/V from the target: the same cache and guesses as its own prefill") {
  const ModelConfig config = synthetic_preset("tiny");
  Setup setup(synthetic_file(config, 61), synthetic_file(one_layer(config), 62), 32);
  const int k = setup.early_exit->layers_run();
  REQUIRE(k < config.n_layers);
  const std::vector<int> prompt{1, 17, 42, 99, 42, 17, 5, 8, 13, 21, 34, 55, 89, 3};  // 13 prefilled positions
  const int length = int(prompt.size()) - 1;
  const size_t kv_dim = size_t(config.kv_dim());
  std::vector<float> scratch(size_t(config.vocab_size));
  // Rows [0, positions) (default: the prompt's) of layers [0, layers) of a runner's cache, in position order.
  auto rows = [&](const SequenceRunner& runner, int layers, int positions = -1) {
    if (positions < 0) positions = length;
    std::vector<float> out;
    for (int l = 0; l < layers; ++l)
      for (int p = 0; p < positions; ++p)
        for (const float* pool : {runner.kv_cache().k(l), runner.kv_cache().v(l)}) {
          const float* row = pool + size_t(runner.slot(p)) * kv_dim;
          out.insert(out.end(), row, row + kv_dim);
        }
    return out;
  };
  Sampler greedy(SamplerConfig{});
  for (int block_size : {0, 1, 4}) {  // 0: contiguous caches
    INFO("block size " << block_size);
    const int blocks = block_size == 0 ? 0 : 5 * ((int(prompt.size()) + 16) / block_size + 1);  // 5 runners
    std::unique_ptr<PagedKVCache> cache;
    std::unique_ptr<BlockManager> pool;
    KVStorage storage;
    if (block_size > 0) {
      cache = std::make_unique<PagedKVCache>(*setup.backend, config, blocks, block_size);
      pool = std::make_unique<BlockManager>(blocks, block_size, /*prefix_caching=*/false);
      storage = {cache.get(), pool.get()};
    }
    auto target = make_sequence_runner(*setup.target, 32, storage);
    target->sync(prompt, 1, scratch.data());
    ModelDraft copied("early exit", *setup.early_exit, 32, storage), computed("early exit", *setup.early_exit, 32, storage);
    copied.begin(prompt, *target);
    computed.begin(prompt);
    REQUIRE(copied.runner().tokens() == computed.runner().tokens());
    CHECK(rows(copied.runner(), k) == rows(computed.runner(), k));  // bit for bit
    DraftProposal a, b;
    copied.propose(prompt, 4, greedy, a);
    computed.propose(prompt, 4, greedy, b);
    CHECK(a.tokens == b.tokens);
    CHECK(copied.passes() == computed.passes());
    // Plain steps while speculation is off: the target moves on 6 tokens, the drafts do not. The early exit
    // catches up by copying those rows from the target (exact), the other one runs them: same rows, same guesses.
    std::vector<int> longer = prompt;
    for (int token : {7, 77, 7, 70, 17, 71}) longer.push_back(token);
    target->sync(longer, 1, scratch.data());
    REQUIRE(target->length() == int(longer.size()) - 1);
    copied.propose(longer, 3, greedy, a);
    computed.propose(longer, 3, greedy, b);
    CHECK(a.tokens == b.tokens);
    CHECK(rows(copied.runner(), k, int(longer.size()) - 1) == rows(computed.runner(), k, int(longer.size()) - 1));
    // A draft over other weights (the f16 self-draft) computes its own rows by default; with
    // Prefill::target_prompt_kv it takes the target's rows of every layer instead.
    ModelDraft self("self-draft f16", *setup.self_model, 32, storage);
    self.begin(prompt, *target);
    CHECK(self.runner().length() == length);
    CHECK(rows(self.runner(), config.n_layers) != rows(*target, config.n_layers));
    ModelDraft borrowing("self-draft f16", *setup.self_model, 32, storage, ModelDraft::Prefill::target_prompt_kv);
    borrowing.begin(prompt, *target);
    CHECK(borrowing.runner().tokens() == self.runner().tokens());
    CHECK(rows(borrowing.runner(), config.n_layers) == rows(*target, config.n_layers));
    copied.finish();
    computed.finish();
    self.finish();
    borrowing.finish();
    target->truncate(0);
    if (pool) CHECK(pool->num_free() == blocks);
  }
}
