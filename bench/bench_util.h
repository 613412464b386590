// bench_util.h: what the benchmark files share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace infer::bench {

// n floats uniform in [-1, 1) from a fixed seed: every run times the same values.
inline std::vector<float> random_values(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(n);
  for (auto& x : values) x = dist(rng);
  return values;
}

}  // namespace infer::bench
