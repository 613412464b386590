// attention_cpu.cpp: causal multi-head attention with grouped KV heads, over a contiguous cache.
//
// For query t (absolute position p_t = start_pos + t) and head h, with kv head g = h / group:
//   score[p] = q_t,h . k_p,g / sqrt(head_dim)        for p in [0, p_t]
//   out_t,h  = sum_p softmax(score)[p] * v_p,g
// Each (t, h) is independent, so threads split them. The cache is read once per query head: with
// GQA the `group` heads sharing one kv head re-read it from cache, not from memory.
#include "infer/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace infer::cpu {

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
               int n_heads, int n_kv_heads, int head_dim, int threads) {
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

}  // namespace infer::cpu
