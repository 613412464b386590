// sampler.h: turns a row of logits into the next token.
//
// Order of operations (the same as llama.cpp's default chain, minus the exotic samplers):
//   1. penalties over the recent tokens: repetition (divide positive logits / multiply negative ones
//      by `repetition_penalty`), presence (subtract once if seen), frequency (subtract per occurrence)
//   2. temperature == 0 -> greedy argmax (ties go to the lowest id)
//   3. top-k, then softmax(logits / temperature), then top-p (nucleus) and min-p filters
//   4. draw from the renormalised distribution with the seeded RNG
// Steps 1-3 are distribution() (no randomness), step 4 is draw(); sample() is the two in a row.
// Speculative decoding (ch08) needs steps 1-3 alone: it compares the target's and the draft's
// filtered distributions, p(x) and q(x), token by token.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace infer {

struct SamplerConfig {
  float temperature = 0.0f;         // 0 = greedy
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // 1 = off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;          // how many recent tokens the penalties look at
  uint64_t seed = 42;
};

// The filtered next-token distribution: what survives penalties, temperature, top-k, top-p and
// min-p. `candidates` hold (probability, id) in the order draw() walks them; the probabilities are
// the softmax's before the filters cut it, so they sum to `mass` (<= 1), and token id is drawn with
// probability p / mass. Temperature 0 is the point mass {(1, argmax)}.
struct TokenDistribution {
  std::vector<std::pair<float, int>> candidates;
  double mass = 0.0;
  bool greedy = false;  // temperature 0: one candidate, drawn without consuming the RNG

  // Probability of `id` after renormalisation (0 if filtered out). Linear in the candidates.
  double probability(int id) const;
  // Every probability after renormalisation, into `probs` (vocab_size floats; filtered tokens get 0).
  void to_dense(std::span<float> probs) const;
};

class Sampler {
 public:
  explicit Sampler(SamplerConfig config);
  // `logits` is modified in place. `history` holds the tokens so far (prompt + generated).
  int sample(std::span<float> logits, std::span<const int> history);
  // Steps 1-3 only: the distribution sample() would draw from, into `out` (its storage is reused).
  // `logits` is modified in place (penalties). Consumes no randomness.
  void distribution(std::span<float> logits, std::span<const int> history, TokenDistribution& out) const;
  // Step 4: one draw from `dist` (one uniform from the RNG, none when dist.greedy).
  int draw(const TokenDistribution& dist);
  // A uniform double in [0, 1) from the same seeded stream (speculative acceptance tests use it).
  double uniform();
  const SamplerConfig& config() const { return config_; }

 private:
  SamplerConfig config_;
  std::mt19937_64 rng_;
  TokenDistribution scratch_;  // sample()'s distribution, reused between calls
};

// Index of the largest value; ties go to the lowest index; NaNs never win (unless at index 0, which nothing
// beats). argmax is the vectorisable version of argmax_reference's loop, equal on every input.
int argmax(std::span<const float> values);
int argmax_reference(std::span<const float> values);

}  // namespace infer
