// test_attention_cpu.cpp: the CPU attention kernels against each other and a float64 reference.
//
// v2_grouped (the query heads of a GQA group together, online softmax) must agree with v1_naive
// (one head at a time, three-pass softmax) and with a plain double-precision reference written here,
// on seeded random inputs over shapes that include head_dim not a multiple of 8/16, groups of 1 (MHA),
// 3 and 4, decode (n = 1 at a start position) and prefill (n > 1, causal).
#include "infer/cpu/cpu_kernels.h"
#include "test_util.h"

#include <cmath>

using namespace infer;

namespace {

struct Shape {
  int n, start_pos, n_heads, n_kv_heads, head_dim;
};

// out (n, n_heads, head_dim), the maths of attention_cpu.cpp's header in double.
std::vector<double> reference_attention(const std::vector<float>& q, const std::vector<float>& k,
                                        const std::vector<float>& v, const Shape& s) {
  const int group = s.n_heads / s.n_kv_heads, kv_dim = s.n_kv_heads * s.head_dim;
  std::vector<double> out(size_t(s.n) * s.n_heads * s.head_dim, 0.0);
  for (int t = 0; t < s.n; ++t)
    for (int h = 0; h < s.n_heads; ++h) {
      const int last = s.start_pos + t, g = h / group;
      std::vector<double> scores(size_t(last) + 1);
      double max_score = -INFINITY;
      for (int p = 0; p <= last; ++p) {
        double dot = 0.0;
        for (int i = 0; i < s.head_dim; ++i)
          dot += double(q[(size_t(t) * s.n_heads + h) * s.head_dim + i]) * k[size_t(p) * kv_dim + g * s.head_dim + i];
        scores[p] = dot / std::sqrt(double(s.head_dim));
        max_score = std::max(max_score, scores[p]);
      }
      double sum = 0.0;
      for (double& x : scores) sum += (x = std::exp(x - max_score));
      for (int p = 0; p <= last; ++p)
        for (int i = 0; i < s.head_dim; ++i)
          out[(size_t(t) * s.n_heads + h) * s.head_dim + i] += scores[p] / sum * v[size_t(p) * kv_dim + g * s.head_dim + i];
    }
  return out;
}

}  // namespace

TEST_CASE("cpu attention: v2_grouped and v1_naive match a float64 reference") {
  const Shape shapes[] = {
      {1, 0, 4, 2, 16},     // decode at position 0: one key
      {1, 37, 9, 3, 64},    // SmolLM2's heads, decode
      {1, 200, 8, 4, 8},    // stories260K's heads, long context
      {1, 129, 6, 2, 10},   // group 3, head_dim 10
      {1, 63, 4, 4, 24},    // multi-head (group 1)
      {1, 300, 32, 4, 64},  // TinyLlama's heads (group 8)
      {7, 0, 6, 2, 10},     // prefill from 0
      {5, 11, 8, 2, 17},    // a chunk after cached positions, head_dim 17
      {19, 3, 9, 3, 64},
  };
  for (const Shape& s : shapes) {
    CAPTURE(s.n);
    CAPTURE(s.start_pos);
    CAPTURE(s.n_heads);
    CAPTURE(s.n_kv_heads);
    CAPTURE(s.head_dim);
    const int positions = s.start_pos + s.n, kv_dim = s.n_kv_heads * s.head_dim;
    const uint64_t seed = uint64_t(s.n * 1000003 + s.start_pos * 101 + s.head_dim);
    // Queries scaled so scores span several units (a peaked softmax exercises the max-rescaling).
    const auto q = test::random_floats(size_t(s.n) * s.n_heads * s.head_dim, seed, -2.0f, 2.0f);
    const auto k = test::random_floats(size_t(positions) * kv_dim, seed + 1);
    const auto v = test::random_floats(size_t(positions) * kv_dim, seed + 2);
    const auto expected = reference_attention(q, k, v, s);

    std::vector<float> out_v1(expected.size(), -7.0f), out_v2(expected.size(), 7.0f);
    cpu::attention_v1_naive(q.data(), k.data(), v.data(), out_v1.data(), s.n, s.start_pos, s.n_heads, s.n_kv_heads,
                            s.head_dim, 2);
    cpu::attention_v2_grouped(q.data(), k.data(), v.data(), out_v2.data(), s.n, s.start_pos, s.n_heads,
                              s.n_kv_heads, s.head_dim, 2);
    // Tolerance: outputs are convex combinations of values in [-1, 1]; fp32 scores (head_dim-term
    // dots, |q.k| <~ 2*head_dim) and exp carry ~1e-6 relative error, and the softmax weights of up to
    // 301 positions sum them: 2e-5 absolute is ~20x that and far below a wrong position's effect.
    double worst_v1 = 0.0, worst_v2 = 0.0, worst_v1_v2 = 0.0;
    for (size_t i = 0; i < expected.size(); ++i) {
      worst_v1 = std::max(worst_v1, std::abs(out_v1[i] - expected[i]));
      worst_v2 = std::max(worst_v2, std::abs(out_v2[i] - expected[i]));
      worst_v1_v2 = std::max(worst_v1_v2, double(std::abs(out_v1[i] - out_v2[i])));
    }
    CHECK(worst_v1 <= 2e-5);
    CHECK(worst_v2 <= 2e-5);
    CHECK(worst_v1_v2 <= 2e-5);
  }
}

TEST_CASE("cpu attention: v2_grouped is independent of the thread count and of n") {
  // The decode step (n = 1 at position p) must compute exactly what row t = p of a prefill computes:
  // that is what makes the KV-cache decoder's greedy tokens identical to the naive decoder's.
  const Shape s{13, 0, 9, 3, 64};
  const int kv_dim = s.n_kv_heads * s.head_dim;
  const auto q = test::random_floats(size_t(s.n) * s.n_heads * s.head_dim, 5, -2.0f, 2.0f);
  const auto k = test::random_floats(size_t(s.n) * kv_dim, 6);
  const auto v = test::random_floats(size_t(s.n) * kv_dim, 7);
  std::vector<float> all(q.size()), one(size_t(s.n_heads) * s.head_dim);
  cpu::attention_v2_grouped(q.data(), k.data(), v.data(), all.data(), s.n, 0, s.n_heads, s.n_kv_heads, s.head_dim, 2);
  for (int t = 0; t < s.n; ++t) {
    CAPTURE(t);
    const float* q_t = q.data() + size_t(t) * s.n_heads * s.head_dim;
    cpu::attention_v2_grouped(q_t, k.data(), v.data(), one.data(), 1, t, s.n_heads, s.n_kv_heads, s.head_dim, 1);
    CHECK(std::equal(one.begin(), one.end(), all.begin() + std::ptrdiff_t(t) * s.n_heads * s.head_dim));
  }
}
