// lab_checks.h: helpers shared by the ch03 lab tests: float64 references and the hints they print.
#pragma once

#include "infer/core/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

namespace lab {

// ---- RoPE ----------------------------------------------------------------------------------------

struct RopeShape {
  int n, n_heads, head_dim, start_pos;
};

// The mistakes the RoPE hints recognise: the reference computed with that mistake made on purpose.
// If a student's output matches one of these (and not the correct answer), the test says which.
enum class RopeMistake {
  None,
  OtherLayout,          // pairs of the other layout
  PositionIsT,          // pos = t (start_pos ignored)
  PositionIsStart,      // pos = start_pos for every token (t ignored)
  ExponentWithoutTwo,   // theta^(-i / head_dim) instead of theta^(-2i / head_dim)
  ExponentOverHalf,     // theta^(-2i / (head_dim/2))
  ReversedRotation,     // rotated by -angle (sign of the sin terms swapped)
  OverwroteA,           // b' computed from the already rotated a'
  OnlyFirstHead,        // heads 1.. left as they were
  ThetaIgnored,         // theta hard-coded to 10000 instead of the model's rope_theta (SmolLM2: 100000)
};

// Every mistake above, for the hints and for the test that shows each one is caught.
inline constexpr RopeMistake kRopeMistakes[] = {
    RopeMistake::OtherLayout,        RopeMistake::PositionIsT,      RopeMistake::PositionIsStart,
    RopeMistake::ExponentWithoutTwo, RopeMistake::ExponentOverHalf, RopeMistake::ReversedRotation,
    RopeMistake::OverwroteA,         RopeMistake::OnlyFirstHead,    RopeMistake::ThetaIgnored};

inline const char* rope_hint(RopeMistake mistake, infer::RopeLayout layout) {
  const bool interleaved = layout == infer::RopeLayout::Interleaved;
  switch (mistake) {
    case RopeMistake::None: return "";
    case RopeMistake::OtherLayout:
      return interleaved ? "you rotated pairs (i, i + head_dim/2), the HalfSplit layout; with RopeLayout::Interleaved "
                           "pair i is (2i, 2i+1): did you apply the Interleaved layout?"
                         : "you rotated pairs (2i, 2i+1), the Interleaved layout; with RopeLayout::HalfSplit "
                           "pair i is (i, i + head_dim/2): did you apply the HalfSplit layout?";
    case RopeMistake::PositionIsT: return "token t must be at position start_pos + t: start_pos is missing";
    case RopeMistake::PositionIsStart: return "token t must be at position start_pos + t: every token got start_pos";
    case RopeMistake::ExponentWithoutTwo:
      return "the frequency of pair i is theta^(-2i / head_dim): your exponent is -i / head_dim (the 2 is missing)";
    case RopeMistake::ExponentOverHalf:
      return "the frequency of pair i is theta^(-2i / head_dim): you divided by head_dim/2 instead of head_dim";
    case RopeMistake::ReversedRotation:
      return "you rotated by -angle: a' = a cos - b sin, b' = a sin + b cos (check the signs of the sin terms)";
    case RopeMistake::OverwroteA:
      return "b' used the new a: read both a and b before writing either";
    case RopeMistake::OnlyFirstHead: return "only head 0 of each token was rotated: loop over all n_heads heads";
    case RopeMistake::ThetaIgnored:
      return "your angles are those of theta = 10000: use the theta argument (the model's rope_theta; SmolLM2 has "
             "100000, Llama 3 500000)";
  }
  return "";
}

// x: (n, n_heads, head_dim) rotated by the textbook formula in float64, with `mistake` made on purpose.
inline std::vector<double> rope_reference(const std::vector<float>& x, const RopeShape& s, double theta,
                                          infer::RopeLayout layout, RopeMistake mistake = RopeMistake::None) {
  std::vector<double> out(x.begin(), x.end());
  if (mistake == RopeMistake::ThetaIgnored) theta = 10000.0;
  const int half = s.head_dim / 2;
  bool interleaved = layout == infer::RopeLayout::Interleaved;
  if (mistake == RopeMistake::OtherLayout) interleaved = !interleaved;
  for (int t = 0; t < s.n; ++t) {
    const int pos = mistake == RopeMistake::PositionIsT       ? t
                    : mistake == RopeMistake::PositionIsStart ? s.start_pos
                                                              : s.start_pos + t;
    const int heads = mistake == RopeMistake::OnlyFirstHead ? 1 : s.n_heads;
    for (int h = 0; h < heads; ++h) {
      double* head = out.data() + (size_t(t) * s.n_heads + h) * s.head_dim;
      for (int i = 0; i < half; ++i) {
        const double exponent = mistake == RopeMistake::ExponentWithoutTwo ? double(i) / s.head_dim
                                : mistake == RopeMistake::ExponentOverHalf ? 2.0 * i / half
                                                                           : 2.0 * i / s.head_dim;
        double angle = pos * std::pow(theta, -exponent);
        if (mistake == RopeMistake::ReversedRotation) angle = -angle;
        double& a = head[interleaved ? 2 * i : i];
        double& b = head[interleaved ? 2 * i + 1 : i + half];
        const double a0 = a, b0 = b;
        a = a0 * std::cos(angle) - b0 * std::sin(angle);
        b = (mistake == RopeMistake::OverwroteA ? a : a0) * std::sin(angle) + b0 * std::cos(angle);
      }
    }
  }
  return out;
}

inline double max_abs_diff(const std::vector<float>& actual, const std::vector<double>& expected) {
  double worst = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) worst = std::max(worst, std::abs(double(actual[i]) - expected[i]));
  return worst;
}

// Tolerance for inputs in [-1, 1]: float32 computes angle = pos * freq with a relative error of a few
// 2^-24 (pow, the product, then cos/sin), i.e. an absolute angle error of about pos * 1.2e-7 rad, which
// moves an output of magnitude <= sqrt(2) by as much. 3e-7 per position leaves a 2x margin; 1e-5 covers
// cos/sin rounding at small positions. A wrong convention moves outputs at positions > 0 by ~0.1 to 1.
inline double rope_tolerance(const RopeShape& s) { return 1e-5 + 3e-7 * double(s.start_pos + s.n); }

}  // namespace lab

// ---- Top-p ---------------------------------------------------------------------------------------

namespace lab {

using Candidates = std::vector<std::pair<float, int>>;

// The nucleus by the definition: sort everything by (probability desc, id asc), take the shortest prefix
// whose float64 running sum reaches top_p. Returns the kept ids in rank order.
inline std::vector<int> nucleus_reference(Candidates candidates, float top_p) {
  std::sort(candidates.begin(), candidates.end(), [](const auto& x, const auto& y) {
    return x.first > y.first || (x.first == y.first && x.second < y.second);
  });
  std::vector<int> kept;
  double mass = 0.0;
  for (const auto& [p, id] : candidates) {
    kept.push_back(id);
    mass += p;
    if (mass >= top_p) break;
  }
  return kept;
}

// How close top_p is to a prefix sum of the ranked probabilities. A student may add the same floats in
// another order (the reference engine adds halves), which moves a sum by ~1e-12 in double; tests only
// use top_p values at least 1e-7 away from every prefix sum, so that the answer is not a rounding tie.
inline double distance_to_a_prefix_sum(Candidates candidates, float top_p) {
  std::sort(candidates.begin(), candidates.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
  double mass = 0.0, nearest = 1e30;
  for (const auto& [p, id] : candidates) {
    mass += p;
    nearest = std::min(nearest, std::abs(mass - double(top_p)));
  }
  return nearest;
}

// softmax(logits) as float probabilities, as the sampler hands them to select_nucleus.
inline Candidates softmax_candidates(const std::vector<float>& logits) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  Candidates out;
  double total = 0.0;
  for (size_t id = 0; id < logits.size(); ++id) {
    out.emplace_back(std::exp(logits[id] - max_logit), int(id));
    total += out.back().first;
  }
  for (auto& [p, id] : out) p = float(p / total);
  return out;
}

}  // namespace lab
