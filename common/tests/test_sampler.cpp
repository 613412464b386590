// test_sampler.cpp: the sampler chain, step by step, on seeded and hand-made inputs.
#include "infer/core/error.h"
#include "infer/engine/sampler.h"
#include "infer/engine/sampling_filters.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

namespace {

using infer::Sampler;
using infer::SamplerConfig;

// Logits whose softmax at temperature 1 is exactly `probs` (up to rounding): l_i = log p_i.
std::vector<float> logits_from_probs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// Draws `n` tokens (fresh copy of the logits each time, no history) and counts each id.
std::map<int, int> draw_counts(Sampler& sampler, const std::vector<float>& logits, int n) {
  std::map<int, int> counts;
  for (int i = 0; i < n; ++i) {
    std::vector<float> row = logits;
    ++counts[sampler.sample(row, {})];
  }
  return counts;
}

std::set<int> ids_of(const std::map<int, int>& counts) {
  std::set<int> ids;
  for (const auto& [id, count] : counts) ids.insert(id);
  return ids;
}

// Softmax(l / T) in double, the distribution the sampler should draw from.
std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p;
  for (float l : logits) p.push_back(std::exp((l - max_logit) / temperature));
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= total;
  return p;
}

// Each count of `n` draws should be Binomial(n, p_i): mean n p_i, sigma sqrt(n p_i (1 - p_i)).
// 5 sigma makes a false failure about 1 in 1.7 million per token (and the seed is fixed anyway).
void check_frequencies(const std::map<int, int>& counts, const std::vector<double>& probs, int n) {
  for (size_t id = 0; id < probs.size(); ++id) {
    const double expected = n * probs[id];
    const double sigma = std::sqrt(n * probs[id] * (1.0 - probs[id]));
    const auto it = counts.find(static_cast<int>(id));
    const double observed = it == counts.end() ? 0.0 : it->second;
    INFO("token " << id << ": observed " << observed << ", expected " << expected << " +- " << sigma);
    CHECK(std::abs(observed - expected) <= 5.0 * sigma + 1e-9);
  }
}

std::string error_message(const SamplerConfig& config) {
  try {
    Sampler sampler(config);
  } catch (const infer::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---- Greedy --------------------------------------------------------------------------------------

TEST_CASE("argmax returns the largest value's index, ties to the lowest index") {
  CHECK(infer::argmax(std::vector<float>{0.5f, -2.0f, 3.0f, 1.0f}) == 2);
  CHECK(infer::argmax(std::vector<float>{1.0f, 7.0f, 7.0f, 7.0f}) == 1);
  CHECK(infer::argmax(std::vector<float>{-1.0f}) == 0);
  CHECK_THROWS_AS(infer::argmax(std::vector<float>{}), infer::Error);
}

TEST_CASE("argmax (two vectorisable passes) == argmax_reference (the plain loop) on random, tied and non-finite input") {
  std::mt19937_64 rng(2026);
  const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f};
  for (size_t n : {size_t(1), size_t(2), size_t(15), size_t(16), size_t(17), size_t(33), size_t(100), size_t(49152)}) {
    for (int trial = 0; trial < 40; ++trial) {
      CAPTURE(n);
      CAPTURE(trial);
      // Few distinct values (many ties) in some trials, continuous ones in others; specials sprinkled in.
      std::uniform_int_distribution<int> small(0, 3);
      std::uniform_real_distribution<float> real(-5.0f, 5.0f);
      std::vector<float> v(n);
      for (float& x : v) x = trial % 2 == 0 ? float(small(rng)) : real(rng);
      const int n_specials = trial % 4;
      std::uniform_int_distribution<size_t> where(0, n - 1);
      std::uniform_int_distribution<int> which(0, 5);
      for (int k = 0; k < n_specials; ++k) v[where(rng)] = specials[which(rng)];
      if (trial == 7) v[0] = NAN;
      if (trial == 9) std::fill(v.begin(), v.end(), NAN);
      if (trial == 11) std::fill(v.begin(), v.end(), -INFINITY);
      CHECK(infer::argmax(v) == infer::argmax_reference(v));
    }
  }
}

TEST_CASE("temperature 0 is greedy: the sampler returns argmax of random logits, never consuming the RNG") {
  Sampler sampler(SamplerConfig{.temperature = 0.0f, .top_k = 3, .top_p = 0.5f});
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto logits = infer::test::random_floats(1000, seed, -5.0f, 5.0f);
    const int expected = infer::argmax(logits);
    CHECK(sampler.sample(logits, {}) == expected);
  }
  std::vector<float> tied = {0.0f, 2.0f, -1.0f, 2.0f};
  CHECK(sampler.sample(tied, {}) == 1);
}

// ---- Temperature ---------------------------------------------------------------------------------

TEST_CASE("temperature sampling draws each token with probability softmax(logits / T)") {
  const std::vector<float> logits = {1.0f, 0.0f, 2.5f, -1.0f, 1.5f, 0.3f};
  const int n = 200000;
  for (float temperature : {0.5f, 1.0f, 2.0f}) {
    INFO("temperature " << temperature);
    Sampler sampler(SamplerConfig{.temperature = temperature, .seed = 1234});
    const auto counts = draw_counts(sampler, logits, n);
    check_frequencies(counts, softmax(logits, temperature), n);
  }
}

// ---- Top-k ---------------------------------------------------------------------------------------

TEST_CASE("top-k never returns a token outside the k largest logits") {
  const auto logits = infer::test::random_floats(500, 7, -3.0f, 3.0f);
  for (int k : {1, 5, 40}) {
    INFO("k = " << k);
    std::vector<int> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int x, int y) { return logits[x] > logits[y]; });
    const std::set<int> top(order.begin(), order.begin() + k);

    // A high temperature flattens the distribution so tokens outside the top k would show up.
    Sampler sampler(SamplerConfig{.temperature = 5.0f, .top_k = k, .seed = 99});
    const auto counts = draw_counts(sampler, logits, 20000);
    for (const auto& [id, count] : counts) CHECK(top.count(id) == 1);
    if (k <= 5) CHECK(ids_of(counts) == top);  // every one of a few kept tokens is drawn
  }
}

TEST_CASE("top-k larger than the vocabulary keeps everything") {
  const std::vector<float> logits = {0.0f, 0.1f, 0.2f};
  Sampler sampler(SamplerConfig{.temperature = 1.0f, .top_k = 10, .seed = 3});
  CHECK(ids_of(draw_counts(sampler, logits, 3000)) == std::set<int>{0, 1, 2});
}

// ---- Top-p and min-p -----------------------------------------------------------------------------

TEST_CASE("top-p keeps the smallest prefix of the sorted distribution with mass >= top_p") {
  // Probabilities in id order, deliberately not sorted: sorted they are 0.5, 0.2, 0.15, 0.1, 0.05.
  const std::vector<double> probs = {0.1, 0.5, 0.05, 0.2, 0.15};
  const auto logits = logits_from_probs(probs);
  const int n = 20000;

  struct Case {
    float top_p;
    std::set<int> kept;
  };
  // Cumulative sorted mass: 0.5 (id 1), 0.7 (+id 3), 0.85 (+id 4), 0.95 (+id 0), 1.0 (+id 2).
  // The cut-offs sit between those sums, away from ties with float rounding.
  for (const Case& c : {Case{0.3f, {1}}, Case{0.6f, {1, 3}}, Case{0.8f, {1, 3, 4}},
                        Case{0.9f, {1, 3, 4, 0}}, Case{0.99f, {1, 3, 4, 0, 2}}}) {
    INFO("top_p = " << c.top_p);
    Sampler sampler(SamplerConfig{.temperature = 1.0f, .top_p = c.top_p, .seed = 5});
    const auto counts = draw_counts(sampler, logits, n);
    CHECK(ids_of(counts) == c.kept);

    // The kept tokens are drawn with their renormalised probabilities.
    double kept_mass = 0.0;
    for (int id : c.kept) kept_mass += probs[id];
    std::vector<double> renormalised(probs.size(), 0.0);
    for (int id : c.kept) renormalised[id] = probs[id] / kept_mass;
    check_frequencies(counts, renormalised, n);
  }
}

// The top-p nucleus by the definition: sort the whole distribution, keep the smallest prefix with
// mass >= top_p. The reference the sampler's selection-based search must agree with.
std::set<int> reference_nucleus(const std::vector<float>& logits, float top_p) {
  const auto probs = softmax(logits, 1.0);
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return probs[x] > probs[y]; });
  std::set<int> kept;
  double mass = 0.0;
  for (int id : order) {
    kept.insert(id);
    mass += probs[id];
    if (mass >= top_p) break;
  }
  return kept;
}

// Logits with `n_likely` tokens at likely_logit + 0.001 * rank (distinct, nearly equal) scattered
// among `n_unlikely` tokens with logits in [-12, -10) (together under 0.1% of the mass).
std::vector<float> two_tier_logits(size_t n_likely, size_t n_unlikely, float likely_logit, uint64_t seed) {
  std::vector<float> logits = infer::test::random_floats(n_likely + n_unlikely, seed, -12.0f, -10.0f);
  std::mt19937_64 rng(seed + 1);
  std::set<int> likely;
  while (likely.size() < n_likely) likely.insert(static_cast<int>(rng() % logits.size()));
  int rank = 0;
  for (int id : likely) logits[id] = likely_logit + 0.001f * static_cast<float>(rank++);
  return logits;
}

TEST_CASE("top-p over a large vocabulary (the selection path) keeps the same set as a full sort") {
  // Each likely token has probability ~1/n_likely, so in 60 n_likely draws every kept one is seen
  // (P(missing one) ~ n_likely e^-60) and so would a wrongly kept one: the observed set must equal
  // the reference exactly. Two shapes drive both branches of the search: a nucleus inside the
  // better half of the vocabulary (20 likely tokens of 1000), and one deeper than a quarter of it
  // (300 likely tokens of 1000; top_p 0.9 keeps ~270).
  struct Case {
    size_t n_likely;
    float top_p;
  };
  for (const Case& c : {Case{20, 0.3f}, Case{20, 0.9f}, Case{300, 0.6f}, Case{300, 0.9f}}) {
    INFO("likely tokens " << c.n_likely << ", top_p " << c.top_p);
    const auto logits = two_tier_logits(c.n_likely, 1000 - c.n_likely, 2.0f, 21 + c.n_likely);
    const auto expected = reference_nucleus(logits, c.top_p);
    REQUIRE(expected.size() < c.n_likely);  // the cut falls among the likely tokens, as designed
    Sampler sampler(SamplerConfig{.temperature = 1.0f, .top_p = c.top_p, .seed = 23});
    CHECK(ids_of(draw_counts(sampler, logits, 60 * static_cast<int>(c.n_likely))) == expected);
  }
}

TEST_CASE("top-p always keeps at least the most likely token") {
  const auto logits = logits_from_probs({0.2, 0.3, 0.5});
  Sampler sampler(SamplerConfig{.temperature = 1.0f, .top_p = 1e-6f, .seed = 8});
  CHECK(ids_of(draw_counts(sampler, logits, 500)) == std::set<int>{2});
}

TEST_CASE("min-p keeps exactly the tokens with p >= min_p * p_max") {
  const std::vector<double> probs = {0.06, 0.4, 0.2, 0.04, 0.3};
  const auto logits = logits_from_probs(probs);
  struct Case {
    float min_p;
    std::set<int> kept;
  };
  // p_max = 0.4: thresholds 0.08 -> {0.4, 0.3, 0.2}; 0.24 -> {0.4, 0.3}; 0.14 -> also {0.4, 0.3, 0.2};
  // 0.012 -> everything; 0.8 (threshold 0.32) -> only p_max.
  for (const Case& c : {Case{0.2f, {1, 2, 4}}, Case{0.6f, {1, 4}}, Case{0.35f, {1, 2, 4}},
                        Case{0.03f, {0, 1, 2, 3, 4}}, Case{0.8f, {1}}}) {
    INFO("min_p = " << c.min_p);
    Sampler sampler(SamplerConfig{.temperature = 1.0f, .min_p = c.min_p, .seed = 11});
    CHECK(ids_of(draw_counts(sampler, logits, 10000)) == c.kept);
  }
}

TEST_CASE("top-k, top-p and min-p compose in the documented order") {
  // Sorted: id 1 (0.5), id 3 (0.2), id 4 (0.15), id 0 (0.1), id 2 (0.05).
  const auto logits = logits_from_probs({0.1, 0.5, 0.05, 0.2, 0.15});
  // top-k 4 drops id 2 and renormalises to 0.526, 0.211, 0.158, 0.105; top-p 0.9 then keeps
  // 0.526 + 0.211 + 0.158 = 0.895 < 0.9, so id 0 too; min-p 0.25 (threshold 0.132) then drops id 0.
  Sampler sampler(SamplerConfig{.temperature = 1.0f, .top_k = 4, .top_p = 0.9f, .min_p = 0.25f, .seed = 2});
  CHECK(ids_of(draw_counts(sampler, logits, 10000)) == std::set<int>{1, 3, 4});
}

// ---- Penalties -----------------------------------------------------------------------------------

TEST_CASE("repetition penalty divides positive logits and multiplies negative ones, once per token") {
  // Greedy so that sample() only applies the penalties (and returns argmax of the result).
  Sampler sampler(SamplerConfig{.temperature = 0.0f, .repetition_penalty = 2.0f});
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  const std::vector<int> history = {0, 1, 1, 3, 3, 3};
  CHECK(sampler.sample(logits, history) == 3);
  CHECK(logits == std::vector<float>{1.0f, -2.0f, 0.5f, 1.5f});
}

TEST_CASE("presence subtracts once per seen token, frequency once per occurrence, after repetition") {
  Sampler sampler(SamplerConfig{.temperature = 0.0f, .repetition_penalty = 2.0f, .presence_penalty = 0.25f,
                                .frequency_penalty = 0.5f});
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  const std::vector<int> history = {0, 1, 1, 3, 3, 3};
  // token 0 (1x): 2 / 2 - (1 * 0.5 + 0.25) = 0.25;  token 1 (2x): -1 * 2 - (2 * 0.5 + 0.25) = -3.25
  // token 2 (0x): unchanged 0.5;                     token 3 (3x): 3 / 2 - (3 * 0.5 + 0.25) = -0.25
  CHECK(sampler.sample(logits, history) == 2);
  CHECK(logits == std::vector<float>{0.25f, -3.25f, 0.5f, -0.25f});
}

TEST_CASE("penalties only look at the last penalty_last_n tokens") {
  Sampler sampler(SamplerConfig{.temperature = 0.0f, .frequency_penalty = 1.0f, .penalty_last_n = 2});
  std::vector<float> logits = {4.0f, 4.0f, 4.0f, 4.0f};
  const std::vector<int> history = {3, 3, 0, 1, 1};  // the window is {1, 1}
  CHECK(sampler.sample(logits, history) == 0);
  CHECK(logits == std::vector<float>{4.0f, 2.0f, 4.0f, 4.0f});

  Sampler off(SamplerConfig{.temperature = 0.0f, .frequency_penalty = 1.0f, .penalty_last_n = 0});
  std::vector<float> untouched = {4.0f, 4.0f};
  off.sample(untouched, std::vector<int>{0, 1});
  CHECK(untouched == std::vector<float>{4.0f, 4.0f});
}

TEST_CASE("a history token outside the vocabulary is an error, not a crash") {
  Sampler sampler(SamplerConfig{.repetition_penalty = 1.1f});
  std::vector<float> logits = {1.0f, 2.0f};
  CHECK_THROWS_WITH_AS(sampler.sample(logits, std::vector<int>{5}), doctest::Contains("history token 5"),
                       infer::Error);
}

TEST_CASE("non-finite logits are an error when sampling, not a silent wrong token") {
  Sampler sampler(SamplerConfig{.temperature = 1.0f});
  std::vector<float> with_nan = {1.0f, NAN, 0.5f};
  CHECK_THROWS_WITH_AS(sampler.sample(with_nan, {}), doctest::Contains("NaN"), infer::Error);
  std::vector<float> all_minus_infinity = {-INFINITY, -INFINITY};
  CHECK_THROWS_AS(sampler.sample(all_minus_infinity, {}), infer::Error);
  std::vector<float> empty;
  CHECK_THROWS_AS(sampler.sample(empty, {}), infer::Error);
}

// ---- Reproducibility -----------------------------------------------------------------------------

TEST_CASE("the same seed gives the same sequence, a different seed a different one") {
  const auto logits = infer::test::random_floats(300, 17, -2.0f, 2.0f);
  auto sequence = [&](uint64_t seed) {
    Sampler sampler(SamplerConfig{.temperature = 1.0f, .top_k = 50, .top_p = 0.95f, .seed = seed});
    std::vector<int> tokens;
    for (int i = 0; i < 100; ++i) {
      std::vector<float> row = logits;
      tokens.push_back(sampler.sample(row, {}));
    }
    return tokens;
  };
  CHECK(sequence(42) == sequence(42));
  CHECK(sequence(42) != sequence(43));
}

// ---- Validation ----------------------------------------------------------------------------------

TEST_CASE("invalid configurations are rejected with the parameter's name") {
  CHECK(error_message(SamplerConfig{.temperature = -0.5f}).find("temperature") != std::string::npos);
  CHECK(error_message(SamplerConfig{.temperature = NAN}).find("temperature") != std::string::npos);
  CHECK(error_message(SamplerConfig{.top_k = -1}).find("top_k") != std::string::npos);
  CHECK(error_message(SamplerConfig{.top_p = 0.0f}).find("top_p") != std::string::npos);
  CHECK(error_message(SamplerConfig{.top_p = 1.5f}).find("top_p") != std::string::npos);
  CHECK(error_message(SamplerConfig{.min_p = -0.1f}).find("min_p") != std::string::npos);
  CHECK(error_message(SamplerConfig{.min_p = 1.1f}).find("min_p") != std::string::npos);
  CHECK(error_message(SamplerConfig{.repetition_penalty = 0.0f}).find("repetition_penalty") != std::string::npos);
  CHECK(error_message(SamplerConfig{.presence_penalty = INFINITY}).find("presence_penalty") != std::string::npos);
  CHECK(error_message(SamplerConfig{.frequency_penalty = NAN}).find("frequency_penalty") != std::string::npos);
  CHECK(error_message(SamplerConfig{.penalty_last_n = -1}).find("penalty_last_n") != std::string::npos);
  CHECK(error_message(SamplerConfig{.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .min_p = 0.05f}).empty());
}

// ---- The filtered distribution (ch08) -----------------------------------------------------------------

namespace {

// The sampler as it was before distribution() / draw() were split out of sample() (a readable copy):
// penalties, greedy, top-k, softmax, top-p, min-p, then a draw scaled by the kept mass.
int reference_sample(const SamplerConfig& config, std::mt19937_64& rng, std::vector<float> logits,
                     const std::vector<int>& history) {
  if (config.penalty_last_n > 0 && (config.repetition_penalty != 1.0f || config.presence_penalty != 0.0f ||
                                    config.frequency_penalty != 0.0f)) {
    const size_t window = std::min(history.size(), size_t(config.penalty_last_n));
    std::map<int, int> counts;
    for (size_t i = history.size() - window; i < history.size(); ++i) ++counts[history[i]];
    for (const auto& [token, count] : counts) {
      float& logit = logits[size_t(token)];
      logit = logit > 0.0f ? logit / config.repetition_penalty : logit * config.repetition_penalty;
      logit -= float(count) * config.frequency_penalty + config.presence_penalty;
    }
  }
  if (config.temperature == 0.0f) return infer::argmax(logits);
  std::vector<std::pair<float, int>> candidates;
  for (size_t id = 0; id < logits.size(); ++id) candidates.emplace_back(logits[id], int(id));
  if (config.top_k > 0 && size_t(config.top_k) < candidates.size()) {
    std::partial_sort(candidates.begin(), candidates.begin() + config.top_k, candidates.end(), infer::ranks_before);
    candidates.resize(size_t(config.top_k));
  }
  float max_logit = -INFINITY;
  for (const auto& c : candidates) max_logit = std::max(max_logit, c.first);
  double total = 0.0;
  for (auto& c : candidates) {
    c.first = std::exp((c.first - max_logit) * (1.0f / config.temperature));
    total += c.first;
  }
  for (auto& c : candidates) c.first = float(c.first / total);
  if (config.top_p < 1.0f) candidates.resize(infer::select_nucleus(candidates, config.top_p));
  if (config.min_p > 0.0f) {
    float p_max = 0.0f;
    for (const auto& c : candidates) p_max = std::max(p_max, c.first);
    std::erase_if(candidates, [&](const auto& c) { return c.first < config.min_p * p_max; });
  }
  double kept = 0.0;
  for (const auto& c : candidates) kept += c.first;
  const double target = double(rng() >> 11) * 0x1.0p-53 * kept;
  double cumulative = 0.0;
  for (const auto& c : candidates) {
    cumulative += c.first;
    if (target < cumulative) return c.second;
  }
  return candidates.back().second;
}

}  // namespace

TEST_CASE("sample() = distribution() + draw(), token for token the sampler before the split, every filter") {
  const int vocab = 1000;
  std::mt19937_64 pick(77);
  for (int trial = 0; trial < 60; ++trial) {
    SamplerConfig config;
    config.temperature = trial % 6 == 0 ? 0.0f : 0.3f + float(trial % 5) * 0.4f;
    config.top_k = trial % 3 == 0 ? 0 : int(pick() % 200) + 1;
    config.top_p = trial % 4 == 0 ? 1.0f : 0.5f + float(pick() % 50) / 100.0f;
    config.min_p = trial % 5 == 0 ? 0.05f : 0.0f;
    config.repetition_penalty = trial % 2 == 0 ? 1.3f : 1.0f;
    config.frequency_penalty = trial % 7 == 0 ? 0.4f : 0.0f;
    config.presence_penalty = trial % 7 == 0 ? 0.2f : 0.0f;
    config.seed = 100 + uint64_t(trial);
    Sampler sampler(config);
    std::mt19937_64 reference_rng(config.seed);
    std::vector<int> history;
    for (int step = 0; step < 20; ++step) {
      const std::vector<float> logits = infer::test::random_floats(size_t(vocab), uint64_t(trial * 100 + step), -4.0f, 4.0f);
      std::vector<float> row = logits;
      const int got = sampler.sample(row, history);
      const int expected = reference_sample(config, reference_rng, logits, history);
      INFO("trial " << trial << ", step " << step);
      REQUIRE(got == expected);
      history.push_back(got);
    }
  }
}

TEST_CASE("distribution() exposes the filtered probabilities that draw() samples from") {
  SamplerConfig config;
  config.temperature = 1.0f;
  config.top_k = 3;
  Sampler sampler(config);
  // softmax over the 3 best of {log .5, log .3, log .1, log .1 - 1e-3}: the 4th is cut by top-k.
  std::vector<float> logits = logits_from_probs({0.5, 0.3, 0.1, 0.0999});
  infer::TokenDistribution dist;
  sampler.distribution(logits, {}, dist);
  CHECK(dist.candidates.size() == 3);
  CHECK(dist.probability(0) == doctest::Approx(0.5 / 0.9));
  CHECK(dist.probability(2) == doctest::Approx(0.1 / 0.9));
  CHECK(dist.probability(3) == 0.0);
  std::vector<float> dense(4);
  dist.to_dense(dense);
  CHECK(dense[1] == doctest::Approx(0.3 / 0.9));
  CHECK(dense[3] == 0.0f);
  // Draws follow it.
  std::map<int, int> counts;
  for (int i = 0; i < 20000; ++i) ++counts[sampler.draw(dist)];
  check_frequencies(counts, {0.5 / 0.9, 0.3 / 0.9, 0.1 / 0.9, 0.0}, 20000);
  // Temperature 0: the point mass on the argmax, drawn without the RNG.
  Sampler greedy(SamplerConfig{});
  std::vector<float> row{0.1f, 2.0f, -1.0f};
  greedy.distribution(row, {}, dist);
  CHECK(dist.greedy);
  CHECK(dist.probability(1) == 1.0);
  CHECK(greedy.draw(dist) == 1);
}
