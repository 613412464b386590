// sampler.cpp: from a row of logits to the next token.
//
// The chain, in the order sampler.h states it:
//   penalties -> (temperature 0: argmax) -> top-k -> softmax(logits / T) -> top-p -> min-p -> draw.
// The top-p selection lives in sampling_filters.cpp (its own file: the ch03 lab swaps it out).
// Every step is deterministic given the seed: candidates are ordered by a total order (logit, then
// id), and the uniform draw is built from the raw 64-bit output of std::mt19937_64 (whose sequence
// the C++ standard fixes), so the same seed gives the same tokens on every platform.
#include "infer/engine/sampler.h"

#include "infer/core/error.h"
#include "infer/engine/sampling_filters.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace infer {

namespace {

// ---- Helpers -------------------------------------------------------------------------------------

// A uniform double in [0, 1) from the top 53 bits of one 64-bit draw: every value k * 2^-53 is
// equally likely. std::uniform_real_distribution is not used because its algorithm (and so its
// output for a given engine state) is left to the implementation.
double uniform_01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

void validate(const SamplerConfig& config) {
  if (!std::isfinite(config.temperature) || config.temperature < 0.0f)
    fail("sampler: temperature must be >= 0 (0 = greedy), got {}", config.temperature);
  if (config.top_k < 0) fail("sampler: top_k must be >= 0 (0 = off), got {}", config.top_k);
  // top_p = 0 would keep nothing; the smallest useful value keeps only the most likely token.
  if (!(config.top_p > 0.0f && config.top_p <= 1.0f))
    fail("sampler: top_p must be in (0, 1] (1 = off), got {}", config.top_p);
  if (!(config.min_p >= 0.0f && config.min_p <= 1.0f))
    fail("sampler: min_p must be in [0, 1] (0 = off), got {}", config.min_p);
  if (!std::isfinite(config.repetition_penalty) || config.repetition_penalty <= 0.0f)
    fail("sampler: repetition_penalty must be > 0 (1 = off), got {}", config.repetition_penalty);
  if (!std::isfinite(config.presence_penalty))
    fail("sampler: presence_penalty must be finite, got {}", config.presence_penalty);
  if (!std::isfinite(config.frequency_penalty))
    fail("sampler: frequency_penalty must be finite, got {}", config.frequency_penalty);
  if (config.penalty_last_n < 0)
    fail("sampler: penalty_last_n must be >= 0, got {}", config.penalty_last_n);
}

bool penalties_enabled(const SamplerConfig& config) {
  return config.penalty_last_n > 0 && (config.repetition_penalty != 1.0f ||
                                       config.presence_penalty != 0.0f || config.frequency_penalty != 0.0f);
}

// ---- Step 1: penalties ---------------------------------------------------------------------------

// For each distinct token t among the last `penalty_last_n` of history, seen count(t) times:
//   repetition: l_t = l_t / r if l_t > 0, else l_t * r    (r > 1 always makes t less likely)
//   frequency + presence: l_t -= count(t) * f + p          (llama.cpp applies them in this order)
void apply_penalties(std::span<float> logits, std::span<const int> history, const SamplerConfig& config) {
  const size_t window = std::min(history.size(), static_cast<size_t>(config.penalty_last_n));
  std::vector<int> recent(history.end() - static_cast<std::ptrdiff_t>(window), history.end());
  // Sorting groups equal tokens into runs, whose lengths are the counts.
  std::sort(recent.begin(), recent.end());
  for (size_t run_start = 0; run_start < recent.size();) {
    const int token = recent[run_start];
    size_t run_end = run_start;
    while (run_end < recent.size() && recent[run_end] == token) ++run_end;
    const auto count = static_cast<float>(run_end - run_start);
    if (token < 0 || static_cast<size_t>(token) >= logits.size())
      fail("sampler: history token {} is outside the vocabulary (size {})", token, logits.size());

    float& logit = logits[static_cast<size_t>(token)];
    logit = logit > 0.0f ? logit / config.repetition_penalty : logit * config.repetition_penalty;
    logit -= count * config.frequency_penalty + config.presence_penalty;
    run_start = run_end;
  }
}

}  // namespace

// ---- Greedy --------------------------------------------------------------------------------------

// The readable definition: strict '>' keeps the first (lowest) index among equal maxima; a NaN never wins, and a
// NaN at index 0 is never beaten (no comparison with it is true).
int argmax_reference(std::span<const float> values) {
  if (values.empty()) fail("argmax: empty input");
  size_t best = 0;
  for (size_t i = 1; i < values.size(); ++i)
    if (values[i] > values[best]) best = i;
  return static_cast<int>(best);
}

// The same index in two passes the compiler vectorises (a batched decode step takes 64 of these over 49,152
// logits, on one thread): the largest non-NaN value, 16 independent lanes at a time, then the first index
// holding it. Equal to argmax_reference on every input (tested, NaN and infinities included).
int argmax(std::span<const float> values) {
  if (values.empty()) fail("argmax: empty input");
  if (std::isnan(values[0])) return 0;  // the reference's first candidate is never beaten
  constexpr size_t kLanes = 16;
  float lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, -INFINITY);
  const size_t n = values.size(), whole = n - n % kLanes;
  for (size_t i = 0; i < whole; i += kLanes) {
#pragma omp simd
    for (size_t j = 0; j < kLanes; ++j) lane_max[j] = values[i + j] > lane_max[j] ? values[i + j] : lane_max[j];
  }
  float best = -INFINITY;
  for (size_t j = 0; j < kLanes; ++j) best = lane_max[j] > best ? lane_max[j] : best;
  for (size_t i = whole; i < n; ++i) best = values[i] > best ? values[i] : best;
  // best is the largest non-NaN value (-inf when every value is NaN or -inf): its first index, as the reference.
  // Blocks of 16 are tested at once; the first block holding best is then scanned.
  size_t block = 0;
  for (; block < whole; block += kLanes) {
    int hits = 0;
#pragma omp simd reduction(+ : hits)
    for (size_t j = 0; j < kLanes; ++j) hits += values[block + j] == best ? 1 : 0;
    if (hits > 0) break;
  }
  for (size_t i = block; i < n; ++i)
    if (values[i] == best) return static_cast<int>(i);
  return 0;  // unreachable: values[0] is not NaN, so best is one of the values
}

// ---- Sampler -------------------------------------------------------------------------------------

Sampler::Sampler(SamplerConfig config) : config_(config), rng_(config.seed) { validate(config_); }

int Sampler::sample(std::span<float> logits, std::span<const int> history) {
  distribution(logits, history, scratch_);
  return draw(scratch_);
}

void Sampler::distribution(std::span<float> logits, std::span<const int> history, TokenDistribution& out) const {
  if (logits.empty()) fail("sampler: empty logits");
  if (penalties_enabled(config_)) apply_penalties(logits, history, config_);
  std::vector<std::pair<float, int>>& candidates = out.candidates;
  candidates.clear();

  // Step 2: temperature 0 means "always the most likely token": a point mass.
  out.greedy = config_.temperature == 0.0f;
  if (out.greedy) {
    candidates.emplace_back(1.0f, argmax(logits));
    out.mass = 1.0;
    return;
  }

  // Step 3a: top-k. partial_sort leaves the k best, already in order, at the front.
  candidates.reserve(logits.size());
  for (size_t id = 0; id < logits.size(); ++id) candidates.emplace_back(logits[id], static_cast<int>(id));
  if (config_.top_k > 0 && static_cast<size_t>(config_.top_k) < candidates.size()) {
    const auto kth = candidates.begin() + config_.top_k;
    std::partial_sort(candidates.begin(), kth, candidates.end(), ranks_before);
    candidates.erase(kth, candidates.end());
  }

  // Step 3b: softmax(l / T). Subtracting the max logit first keeps exp() in (0, 1]: no overflow,
  // and the result is unchanged because the common factor exp(-max / T) cancels in the ratio.
  float max_logit = -INFINITY;
  for (const auto& [logit, id] : candidates) max_logit = std::max(max_logit, logit);
  if (!std::isfinite(max_logit)) fail("sampler: logits have no finite maximum (got {})", max_logit);
  const float inv_temperature = 1.0f / config_.temperature;
  double total = 0.0;
  for (auto& [value, id] : candidates) {
    value = std::exp((value - max_logit) * inv_temperature);  // unnormalised probability
    total += value;
  }
  // The max term contributes exp(0) = 1, so total >= 1 unless a logit was NaN.
  if (!std::isfinite(total)) fail("sampler: logits contain NaN");
  for (auto& [value, id] : candidates) value = static_cast<float>(value / total);

  // Step 3c: top-p (nucleus): the smallest prefix of the sorted distribution whose mass reaches
  // top_p. The first token is always kept, so a tiny top_p degrades to greedy, never to nothing.
  if (config_.top_p < 1.0f) candidates.resize(select_nucleus(candidates, config_.top_p));

  // Step 3d: min-p: keep p >= min_p * p_max. The token holding p_max always passes.
  if (config_.min_p > 0.0f) {
    float p_max = 0.0f;
    for (const auto& [p, id] : candidates) p_max = std::max(p_max, p);
    const float threshold = config_.min_p * p_max;
    std::erase_if(candidates, [threshold](const auto& candidate) { return candidate.first < threshold; });
  }

  // What the filters kept; draw() and probability() divide by it instead of renormalising each entry.
  out.mass = 0.0;
  for (const auto& [p, id] : candidates) out.mass += p;
}

int Sampler::draw(const TokenDistribution& dist) {
  if (dist.candidates.empty()) fail("sampler: drawing from an empty distribution");
  if (dist.greedy) return dist.candidates.front().second;
  // Step 4: draw. Rather than renormalising every entry, scale the uniform by the kept mass: the
  // token whose cumulative interval [c_(i-1), c_i) contains u * mass is chosen with p_i / mass.
  const double target = uniform_01(rng_) * dist.mass;
  double cumulative = 0.0;
  for (const auto& [p, id] : dist.candidates) {
    cumulative += p;
    if (target < cumulative) return id;
  }
  // Only reachable through rounding when target lands at the very top: the last kept token.
  return dist.candidates.back().second;
}

double Sampler::uniform() { return uniform_01(rng_); }

// ---- TokenDistribution ---------------------------------------------------------------------------

double TokenDistribution::probability(int id) const {
  for (const auto& [p, candidate] : candidates)
    if (candidate == id) return double(p) / mass;
  return 0.0;
}

void TokenDistribution::to_dense(std::span<float> probs) const {
  std::fill(probs.begin(), probs.end(), 0.0f);
  for (const auto& [p, id] : candidates) {
    if (id < 0 || size_t(id) >= probs.size())
      fail("sampler: token {} is outside the vocabulary of {}", id, probs.size());
    probs[size_t(id)] = float(double(p) / mass);
  }
}

}  // namespace infer
