// sampling_filters.cpp: top-p (nucleus) selection, step 3c of the sampler chain (sampler.cpp).
//
// Readers meet it in the ch03 lab (ch03_gpu_basics/lab): with -DLAB=ch03 this file is replaced by the
// student's top_p_student.cpp, so keep it to the one function sampling_filters.h declares.
#include "infer/engine/sampling_filters.h"

#include <algorithm>
#include <cstddef>

namespace infer {

// Returns how many of the best-ranked candidates (probability, id) top-p keeps: the smallest `keep`
// whose sorted prefix has mass >= top_p. Leaves those `keep` candidates at the front, in rank order.
//
// Sorting a whole vocabulary (~50k entries) would cost milliseconds per token, and the nucleus can
// hold thousands of tokens when the model is unsure. So this is a binary search by selection:
// nth_element splits the undecided range [lo, hi) at its middle rank in O(hi - lo); the mass of the
// better half says which half holds the cut. The range halves each round (O(n) in all); only the
// last small range and the kept prefix are sorted.
size_t select_nucleus(std::vector<std::pair<float, int>>& candidates, float top_p) {
  constexpr size_t kSortBelow = 256;  // ranges this small are simply sorted
  const auto at = [&](size_t index) { return candidates.begin() + static_cast<std::ptrdiff_t>(index); };
  // Invariant: candidates [0, lo) rank above all of [lo, n) and hold mass_above < top_p; the cut,
  // the index of the last kept token, lies in [lo, hi).
  size_t lo = 0, hi = candidates.size();
  double mass_above = 0.0;
  while (hi - lo > kSortBelow) {
    const size_t mid = lo + (hi - lo) / 2;
    std::nth_element(at(lo), at(mid), at(hi), ranks_before);
    double mass_better_half = 0.0;
    for (size_t i = lo; i < mid; ++i) mass_better_half += candidates[i].first;
    if (mass_above + mass_better_half >= top_p) {
      hi = mid;  // the better half alone reaches top_p: the cut is inside it
    } else {
      mass_above += mass_better_half;
      lo = mid;
    }
  }
  // Sort the kept prefix (so the draw walks the same order on every standard library) and the
  // final small range, then walk the range to the first token that brings the mass to top_p.
  std::sort(at(0), at(lo), ranks_before);
  std::sort(at(lo), at(hi), ranks_before);
  size_t keep = lo;
  double mass = mass_above;
  while (keep < hi) {
    mass += candidates[keep].first;
    ++keep;
    if (mass >= top_p) break;
  }
  return keep;
}

}  // namespace infer
