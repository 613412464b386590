// attention_cpu.cpp: causal multi-head attention with grouped KV heads, over a contiguous cache.
//
// For query t (absolute position p_t = start_pos + t) and head h, with kv head g = h / group:
//   score[p] = q_t,h . k_p,g / sqrt(head_dim)        for p in [0, p_t]
//   out_t,h  = sum_p softmax(score)[p] * v_p,g
//
// Versions:
//   v1_naive:   one (t, h) pair per iteration, three passes over the positions (scores, softmax,
//               weighted sum of V). Each query head reads its kv head's K and V rows itself, so with
//               GQA every cached row is read `group` times per step, and it allocates its score
//               buffer on every call.
//   v2_grouped: one (t, kv head) pair per iteration; the `group` query heads that share the kv head
//               are processed together, so each cached K row and V row is read once per step per kv
//               head (the point of GQA: the cache is smaller *and* read fewer times). One pass over
//               the positions with an online softmax (running max and sum per head, rescaling the
//               output when the max grows): K and V rows are read together and no score buffer is
//               needed, so there is no allocation per call.
// cpu::attention (the backend's op, in attention_dispatch_cpu.cpp) runs v2; v1 stays as the readable
// reference the tests use.
#include "infer/cpu/cpu_kernels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace infer::cpu {

// ---- v1: one query head at a time ------------------------------------------------------------------
void attention_v1_naive(const float* q, const float* k_cache, const float* v_cache, float* out, int n,
                        int start_pos, int n_heads, int n_kv_heads, int head_dim, int threads) {
  const int group = n_heads / n_kv_heads;  // query heads per kv head
  const int kv_dim = n_kv_heads * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
#pragma omp parallel num_threads(threads) if (n * n_heads > 1)
  {
    std::vector<float> scores(size_t(start_pos + n));
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int t = 0; t < n; ++t) {
      for (int h = 0; h < n_heads; ++h) {
        const int last = start_pos + t;  // causal: positions [0, last]
        const int g = h / group;
        const float* q_head = q + (size_t(t) * n_heads + h) * head_dim;
        // Scores and their max (subtracted before exp so the softmax cannot overflow).
        float max_score = -INFINITY;
        for (int p = 0; p <= last; ++p) {
          scores[p] = dot_f32(q_head, k_cache + size_t(p) * kv_dim + size_t(g) * head_dim, head_dim) * scale;
          max_score = std::max(max_score, scores[p]);
        }
        float sum = 0.0f;
        for (int p = 0; p <= last; ++p) {
          scores[p] = std::exp(scores[p] - max_score);
          sum += scores[p];
        }
        // Weighted sum of the values.
        float* out_head = out + (size_t(t) * n_heads + h) * head_dim;
        std::fill(out_head, out_head + head_dim, 0.0f);
        for (int p = 0; p <= last; ++p) {
          const float weight = scores[p] / sum;
          const float* v_row = v_cache + size_t(p) * kv_dim + size_t(g) * head_dim;
#pragma omp simd
          for (int i = 0; i < head_dim; ++i) out_head[i] += weight * v_row[i];
        }
      }
    }
  }
}

// ---- v2: the query heads of a group together, one pass, online softmax -----------------------------
void attention_v2_grouped(const float* q, const float* k_cache, const float* v_cache, float* out, int n,
                          int start_pos, int n_heads, int n_kv_heads, int head_dim, int threads) {
  const int group = n_heads / n_kv_heads;
  // The running max/sum live in registers/stack, one per head of the group. Real models have
  // groups of 1-16; anything larger goes through the reference path rather than a heap buffer.
  constexpr int kMaxGroup = 32;
  if (group > kMaxGroup) {
    attention_v1_naive(q, k_cache, v_cache, out, n, start_pos, n_heads, n_kv_heads, head_dim, threads);
    return;
  }
  const int kv_dim = n_kv_heads * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads) if (n * n_kv_heads > 1)
  for (int t = 0; t < n; ++t) {
    for (int g = 0; g < n_kv_heads; ++g) {
      const int last = start_pos + t;                                   // causal: positions [0, last]
      const float* q_group = q + (size_t(t) * n_heads + size_t(g) * group) * head_dim;  // (group, head_dim)
      float* out_group = out + (size_t(t) * n_heads + size_t(g) * group) * head_dim;    // (group, head_dim)
      std::array<float, kMaxGroup> running_max, running_sum;
      running_max.fill(-INFINITY);
      running_sum.fill(0.0f);
      std::fill(out_group, out_group + size_t(group) * head_dim, 0.0f);

      for (int p = 0; p <= last; ++p) {
        const float* k_row = k_cache + size_t(p) * kv_dim + size_t(g) * head_dim;  // read once for the group
        const float* v_row = v_cache + size_t(p) * kv_dim + size_t(g) * head_dim;
        for (int j = 0; j < group; ++j) {
          const float score = dot_f32(q_group + size_t(j) * head_dim, k_row, head_dim) * scale;
          float* o = out_group + size_t(j) * head_dim;
          // Online softmax: out and sum hold sum_p' exp(score_p' - max) (* v_p'); when a larger
          // score arrives, both are rescaled by exp(old max - new max) so they refer to the new max.
          if (score > running_max[j]) {
            const float rescale = std::exp(running_max[j] - score);  // exp(-inf) = 0 on the first position
            running_sum[j] *= rescale;
#pragma omp simd
            for (int i = 0; i < head_dim; ++i) o[i] *= rescale;
            running_max[j] = score;
          }
          const float weight = std::exp(score - running_max[j]);
          running_sum[j] += weight;
#pragma omp simd
          for (int i = 0; i < head_dim; ++i) o[i] += weight * v_row[i];
        }
      }
      for (int j = 0; j < group; ++j) {
        const float inv_sum = 1.0f / running_sum[j];
        float* o = out_group + size_t(j) * head_dim;
#pragma omp simd
        for (int i = 0; i < head_dim; ++i) o[i] *= inv_sum;
      }
    }
  }
}

}  // namespace infer::cpu
