// speculative_verify.cpp: the verification rules of speculative decoding (speculative.h, step 3).
//
// Readers meet them in the ch08 lab (ch08_speculative/lab): with -DLAB=ch08 this file is replaced by the
// student's verify_student.cpp, so keep it to the three functions speculative.h declares for it.
#include "infer/core/error.h"
#include "infer/engine/speculative.h"

#include <algorithm>

namespace infer {

int accept_greedy(std::span<const int> draft, std::span<const int> target_argmax) {
  if (target_argmax.size() != draft.size() + 1)
    fail("accept_greedy: {} guesses need {} target rows, got {}", draft.size(), draft.size() + 1, target_argmax.size());
  int accepted = 0;
  while (size_t(accepted) < draft.size() && draft[size_t(accepted)] == target_argmax[size_t(accepted)]) ++accepted;
  return accepted;
}

bool accept_draft_token(double p_x, double q_x, double u) {
  // u < min(1, p/q), written without the division: q(x) > 0 for any token the draft drew.
  return u * q_x < p_x;
}

int sample_residual(std::span<const float> p, std::span<const float> q, double u) {
  if (p.size() != q.size() || p.empty()) fail("sample_residual: p has {} entries, q {}", p.size(), q.size());
  double total = 0.0;
  for (size_t i = 0; i < p.size(); ++i) total += std::max(0.0, double(p[i]) - double(q[i]));
  const bool residual = total > 0.0;
  if (!residual) {
    total = 0.0;
    for (float x : p) total += x;
  }
  // Walk the cumulative mass to u * total, as Sampler::draw does.
  const double target = u * total;
  double cumulative = 0.0;
  int last = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    const double mass = residual ? std::max(0.0, double(p[i]) - double(q[i])) : double(p[i]);
    if (mass <= 0.0) continue;
    cumulative += mass;
    last = int(i);
    if (target < cumulative) return int(i);
  }
  if (last < 0) fail("sample_residual: the target distribution is empty");
  return last;  // rounding at the very top
}

}  // namespace infer
