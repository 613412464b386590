// lab_checks.h: helpers shared by the ch05 lab tests: the float64 attention reference, the known mistakes
// behind the hints, and the tolerance with its reason.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace lab {

// ---- Cached attention ----------------------------------------------------------------------------

struct AttentionShape {
  int n, start_pos, n_heads, n_kv_heads, head_dim;
  int positions() const { return start_pos + n; }  // cache rows the pass reads: [0, start_pos + n)
  int kv_dim() const { return n_kv_heads * head_dim; }
  int group() const { return n_heads / n_kv_heads; }
};

// The mistakes the attention hints recognise: the reference computed with that mistake made on purpose.
// If a student's output matches one of these (and not the correct answer), the test says which.
enum class AttentionMistake {
  None,
  NotCausal,         // every query sees all start_pos + n positions
  StartPosIgnored,   // query t sees [0, t] instead of [0, start_pos + t]
  OnlyNewPositions,  // query t sees [start_pos, start_pos + t]: the cached positions are skipped
  KvHeadModulo,      // query head h reads kv head h % n_kv_heads instead of h / group
  NoScale,           // scores not divided by sqrt(head_dim)
  ScaleByHeadDim,    // scores divided by head_dim instead of sqrt(head_dim)
  KeysAndValuesSwapped,
};

// Every mistake above, for the hints and for the test that shows each one is caught.
inline constexpr AttentionMistake kAttentionMistakes[] = {
    AttentionMistake::NotCausal, AttentionMistake::StartPosIgnored, AttentionMistake::OnlyNewPositions,
    AttentionMistake::KvHeadModulo, AttentionMistake::NoScale, AttentionMistake::ScaleByHeadDim,
    AttentionMistake::KeysAndValuesSwapped};

inline const char* attention_hint(AttentionMistake mistake) {
  switch (mistake) {
    case AttentionMistake::None: return "";
    case AttentionMistake::NotCausal:
      return "every query attended to all start_pos + n positions: query t may only see positions "
             "[0, start_pos + t] (causal), not the later tokens of the same pass";
    case AttentionMistake::StartPosIgnored:
      return "query t saw positions [0, t]: it sits at position start_pos + t and must see [0, start_pos + t]";
    case AttentionMistake::OnlyNewPositions:
      return "query t saw only the new positions [start_pos, start_pos + t]: the cached ones, [0, start_pos), "
             "are the whole point of the cache";
    case AttentionMistake::KvHeadModulo:
      return "query head h must read kv head h / (n_heads / n_kv_heads) (consecutive query heads share a kv "
             "head); you used h % n_kv_heads";
    case AttentionMistake::NoScale: return "the scores must be divided by sqrt(head_dim); yours were not scaled";
    case AttentionMistake::ScaleByHeadDim: return "the scores are divided by sqrt(head_dim), not by head_dim";
    case AttentionMistake::KeysAndValuesSwapped:
      return "scores come from the keys (q . k) and the output is a weighted sum of the values: K and V are "
             "swapped";
  }
  return "";
}

// out (n, n_heads, head_dim) for q (n, n_heads, head_dim) and caches (>= positions, n_kv_heads, head_dim),
// by the definition in double, with `mistake` made on purpose.
inline std::vector<double> attention_reference(const std::vector<float>& q, const std::vector<float>& k_cache,
                                               const std::vector<float>& v_cache, const AttentionShape& s,
                                               AttentionMistake mistake = AttentionMistake::None) {
  const bool swapped = mistake == AttentionMistake::KeysAndValuesSwapped;
  const std::vector<float>& keys = swapped ? v_cache : k_cache;
  const std::vector<float>& values = swapped ? k_cache : v_cache;
  const double scale = mistake == AttentionMistake::NoScale          ? 1.0
                       : mistake == AttentionMistake::ScaleByHeadDim ? 1.0 / s.head_dim
                                                                     : 1.0 / std::sqrt(double(s.head_dim));
  std::vector<double> out(size_t(s.n) * s.n_heads * s.head_dim, 0.0);
  for (int t = 0; t < s.n; ++t) {
    int first = 0, last = s.start_pos + t;  // the positions query t sees: [first, last]
    if (mistake == AttentionMistake::NotCausal) last = s.positions() - 1;
    if (mistake == AttentionMistake::StartPosIgnored) last = t;
    if (mistake == AttentionMistake::OnlyNewPositions) first = s.start_pos;
    for (int h = 0; h < s.n_heads; ++h) {
      const int g = mistake == AttentionMistake::KvHeadModulo ? h % s.n_kv_heads : h / s.group();
      const float* q_head = q.data() + (size_t(t) * s.n_heads + h) * s.head_dim;
      std::vector<double> weights;
      double max_score = -INFINITY;
      for (int p = first; p <= last; ++p) {
        double dot = 0.0;
        for (int i = 0; i < s.head_dim; ++i) dot += double(q_head[i]) * keys[size_t(p) * s.kv_dim() + size_t(g) * s.head_dim + i];
        weights.push_back(dot * scale);
        max_score = std::max(max_score, weights.back());
      }
      double sum = 0.0;
      for (double& w : weights) sum += (w = std::exp(w - max_score));
      double* o = out.data() + (size_t(t) * s.n_heads + h) * s.head_dim;
      for (int p = first; p <= last; ++p)
        for (int i = 0; i < s.head_dim; ++i)
          o[i] += weights[size_t(p - first)] / sum * values[size_t(p) * s.kv_dim() + size_t(g) * s.head_dim + i];
    }
  }
  return out;
}

// Largest |actual - expected|; a NaN anywhere counts as infinitely wrong.
inline double max_abs_diff(const std::vector<float>& actual, const std::vector<double>& expected) {
  double worst = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double diff = std::abs(double(actual[i]) - expected[i]);
    worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
    if (std::isinf(worst)) break;
  }
  return worst;
}

// Tolerance on outputs for values in [-1, 1]: each output is a convex combination of cached values. fp32
// scores (head_dim-term dot products) and exp carry ~1e-6 relative error, and up to ~1000 softmax weights
// sum them: 2e-5 absolute is ~20x what a correct fp32 loop gives (the engine's own two versions agree with
// the float64 reference to ~1e-6 on these shapes), while a wrong position, head or scale moves outputs by
// 0.01 to 1.
constexpr double kAttentionTolerance = 2e-5;

}  // namespace lab
