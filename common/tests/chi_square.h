// chi_square.h: Pearson's chi-square goodness-of-fit test for the sampling tests (ch08).
#pragma once

#include <cmath>
#include <utility>
#include <vector>

namespace infer::test {

// chi-square critical value at significance 0.001 for `df` degrees of freedom (Wilson-Hilferty).
inline double chi_square_critical_001(int df) {
  const double z = 3.0902;  // the standard normal's 0.999 quantile
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

// Pearson's statistic of `counts` (n draws) against `probs`; cells expected below 5 merged. Returns
// (statistic, degrees of freedom).
inline std::pair<double, int> chi_square(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double statistic = 0.0, merged_expected = 0.0, merged_observed = 0.0;
  int cells = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double expected = probs[i] * n;
    if (expected < 5.0) {
      merged_expected += expected;
      merged_observed += counts[i];
      continue;
    }
    statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++cells;
  }
  if (merged_expected > 0.0) {
    statistic += (merged_observed - merged_expected) * (merged_observed - merged_expected) / merged_expected;
    ++cells;
  }
  return {statistic, cells - 1};
}

}  // namespace infer::test
