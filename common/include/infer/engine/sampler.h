// sampler.h: turns a row of logits into the next token.
//
// Order of operations (the same as llama.cpp's default chain, minus the exotic samplers):
//   1. penalties over the recent tokens: repetition (divide positive logits / multiply negative ones
//      by `repetition_penalty`), presence (subtract once if seen), frequency (subtract per occurrence)
//   2. temperature == 0 -> greedy argmax (ties go to the lowest id)
//   3. top-k, then softmax(logits / temperature), then top-p (nucleus) and min-p filters
//   4. draw from the renormalised distribution with the seeded RNG
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

class Sampler {
 public:
  explicit Sampler(SamplerConfig config);
  // `logits` is modified in place. `history` holds the tokens so far (prompt + generated).
  int sample(std::span<float> logits, std::span<const int> history);
  const SamplerConfig& config() const { return config_; }

 private:
  SamplerConfig config_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int>> candidates_;  // scratch, reused between calls
};

// Index of the largest value; ties go to the lowest index.
int argmax(std::span<const float> values);

}  // namespace infer
