// sampling_filters.h: the candidate filters of the sampler chain (sampler.h), each its own function so
// it can be tested, benchmarked and (in the ch03 lab) rewritten on its own.
//
// A candidate is (value, token id); `value` is a logit before the softmax and a probability after it.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace infer {

// The total order candidates are ranked by: larger value first, ties broken by the lower token id.
// A total order makes sorting and selection give the same answer on every standard library.
inline bool ranks_before(const std::pair<float, int>& x, const std::pair<float, int>& y) {
  return x.first > y.first || (x.first == y.first && x.second < y.second);
}

// Top-p (nucleus): `candidates` hold (probability, id) pairs summing to 1, in any order; top_p is in (0, 1].
// Returns `keep`, the length of the smallest prefix of the candidates in rank order (ranks_before) whose
// mass is >= top_p, and leaves exactly those `keep` candidates at the front, in rank order. The order of
// the rest is unspecified. At least one candidate is always kept (for non-empty input).
size_t select_nucleus(std::vector<std::pair<float, int>>& candidates, float top_p);

}  // namespace infer
