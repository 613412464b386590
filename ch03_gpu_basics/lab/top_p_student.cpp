// top_p_student.cpp: ch03 lab, exercise 2: top-p (nucleus) sampling.
//
// Built only with -DLAB=ch03 (scripts/lab.sh ch03), where it replaces common/src/engine/sampling_filters.cpp.
// The sampler (common/src/engine/sampler.cpp) calls your function whenever top_p < 1, after the softmax.
// Run `scripts/lab.sh ch03` to grade it; read ch03_gpu_basics/lab/README.md first.
//
// ---- What top-p does -------------------------------------------------------------------------------
// Sampling from the full distribution sometimes picks one of the thousands of very unlikely tokens, and
// one bad token derails a whole sentence. Top-p keeps only the "nucleus": the most likely tokens that
// together hold at least top_p of the probability mass, and the sampler draws among those.
//
// ---- The contract (implement exactly this; sampling_filters.h states it too) ----------------------
// `candidates` holds (probability, token id) pairs, in any order; the probabilities sum to 1.
// Rank them by ranks_before (declared in infer/sampling_filters.h): higher probability first, and on equal
// probabilities the LOWER token id first. Then find the smallest `keep` such that
//     p[0] + p[1] + ... + p[keep - 1] >= top_p        (p in rank order; accumulate in double)
// Return keep, and leave exactly those `keep` best candidates at the front of the vector, in rank order.
// What you leave after them does not matter (the sampler truncates the vector to `keep`).
// Example: probabilities 0.5, 0.3, 0.15, 0.05 with top_p = 0.7 -> keep 2 (0.5 + 0.3 = 0.8 >= 0.7).
// The most likely token is always kept, however small top_p is.
//
// ---- Practicalities --------------------------------------------------------------------------------
//  - std::sort(candidates.begin(), candidates.end(), ranks_before), then a running sum, is a correct
//    solution. (The reference, common/src/engine/sampling_filters.cpp, avoids sorting a 49k-token vocabulary
//    with a selection-based binary search; try that once the simple version passes.)
//  - Stop at the FIRST prefix that reaches top_p: ">=", not ">".
#include "infer/engine/sampling_filters.h"

#include <algorithm>

namespace infer {

size_t select_nucleus(std::vector<std::pair<float, int>>& candidates, float top_p) {
  // TODO(student): rank the candidates, find the nucleus, return its size (see above).
  // As written, every candidate is kept (top-p has no effect): the lab tests fail until you implement it.
  return candidates.size();
}

}  // namespace infer
