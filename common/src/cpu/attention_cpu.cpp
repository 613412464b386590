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
//
// Paged versions (ch06): the same maths over a ragged batch, each sequence's positions found through its
// block table (position i of sequence s is in slot table[i / block_size] * block_size + i % block_size):
//   paged_v1_naive:   v1 with the table lookup; the reference the paged tests use.
//   paged_v2_grouped: v2's arithmetic, the very same code (attend_group_v2 below) with the table lookup, so
//                     a query gives the same bits in a contiguous cache, in any paged layout and whatever
//                     else is in the batch. Threads over (token, kv head) pairs of the whole batch.
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
namespace {

// The running max/sum live in registers/stack, one per head of the group. Real models have groups of
// 1-16; anything larger goes through the reference path rather than a heap buffer.
constexpr int kMaxGroup = 32;

// One query token's `group` heads that share kv head rows, against positions [0, last]. `row(p)` points
// at position p's K row for this kv head and `row(p) + v_offset` at its V row (the same slot of the V
// store). Shared by the contiguous and the paged v2, so both give the same bits.
template <typename RowAt>
inline void attend_group_v2(const float* q_group, float* out_group, int last, int group, int head_dim, float scale,
                            const RowAt& row, ptrdiff_t v_offset) {
  std::array<float, kMaxGroup> running_max, running_sum;
  running_max.fill(-INFINITY);
  running_sum.fill(0.0f);
  std::fill(out_group, out_group + size_t(group) * head_dim, 0.0f);

  for (int p = 0; p <= last; ++p) {
    const float* k_row = row(p);  // read once for the group
    const float* v_row = k_row + v_offset;
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

// The sequence that owns token t: query_start[s] <= t < query_start[s + 1].
inline int sequence_of(const BatchView& batch, int t) {
  const int* end = batch.query_start + batch.n_sequences + 1;
  return int(std::upper_bound(batch.query_start, end, t) - batch.query_start) - 1;
}

// Offset (in floats) of position i's row in a layer's pool, for sequence s's block table.
inline size_t slot_row(const BatchView& batch, int s, int i, int kv_dim) {
  const int block = batch.block_tables[size_t(s) * batch.max_blocks + size_t(i / batch.block_size)];
  return (size_t(block) * batch.block_size + size_t(i % batch.block_size)) * size_t(kv_dim);
}

}  // namespace

void attention_v2_grouped(const float* q, const float* k_cache, const float* v_cache, float* out, int n,
                          int start_pos, int n_heads, int n_kv_heads, int head_dim, int threads) {
  const int group = n_heads / n_kv_heads;
  if (group > kMaxGroup) {
    attention_v1_naive(q, k_cache, v_cache, out, n, start_pos, n_heads, n_kv_heads, head_dim, threads);
    return;
  }
  const int kv_dim = n_kv_heads * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const ptrdiff_t v_offset = v_cache - k_cache;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads) if (n * n_kv_heads > 1)
  for (int t = 0; t < n; ++t) {
    for (int g = 0; g < n_kv_heads; ++g) {
      const float* q_group = q + (size_t(t) * n_heads + size_t(g) * group) * head_dim;  // (group, head_dim)
      float* out_group = out + (size_t(t) * n_heads + size_t(g) * group) * head_dim;    // (group, head_dim)
      const float* k_head = k_cache + size_t(g) * head_dim;
      attend_group_v2(q_group, out_group, start_pos + t, group, head_dim, scale,
                      [&](int p) { return k_head + size_t(p) * kv_dim; }, v_offset);
    }
  }
}

// ---- paged v1: the reference, one query head at a time through the block table ----------------------
void paged_attention_v1_naive(const float* q, const float* k_pool, const float* v_pool, float* out,
                              const BatchView& batch, int n_heads, int n_kv_heads, int head_dim, int threads) {
  const int group = n_heads / n_kv_heads;
  const int kv_dim = n_kv_heads * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int n = batch.n_tokens;
#pragma omp parallel num_threads(threads) if (n * n_heads > 1)
  {
    std::vector<float> scores;
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int t = 0; t < n; ++t) {
      for (int h = 0; h < n_heads; ++h) {
        const int s = sequence_of(batch, t);
        const int last = batch.positions[t];  // causal: positions [0, last] of its own sequence
        const int g = h / group;
        scores.resize(size_t(last) + 1);
        const float* q_head = q + (size_t(t) * n_heads + h) * head_dim;
        float max_score = -INFINITY;
        for (int p = 0; p <= last; ++p) {
          scores[p] = dot_f32(q_head, k_pool + slot_row(batch, s, p, kv_dim) + size_t(g) * head_dim, head_dim) * scale;
          max_score = std::max(max_score, scores[p]);
        }
        float sum = 0.0f;
        for (int p = 0; p <= last; ++p) {
          scores[p] = std::exp(scores[p] - max_score);
          sum += scores[p];
        }
        float* out_head = out + (size_t(t) * n_heads + h) * head_dim;
        std::fill(out_head, out_head + head_dim, 0.0f);
        for (int p = 0; p <= last; ++p) {
          const float weight = scores[p] / sum;
          const float* v_row = v_pool + slot_row(batch, s, p, kv_dim) + size_t(g) * head_dim;
#pragma omp simd
          for (int i = 0; i < head_dim; ++i) out_head[i] += weight * v_row[i];
        }
      }
    }
  }
}

// ---- paged v2: v2's arithmetic through the block table --------------------------------------------
void paged_attention_v2_grouped(const float* q, const float* k_pool, const float* v_pool, float* out,
                                const BatchView& batch, int n_heads, int n_kv_heads, int head_dim, int threads) {
  const int group = n_heads / n_kv_heads;
  if (group > kMaxGroup) {
    paged_attention_v1_naive(q, k_pool, v_pool, out, batch, n_heads, n_kv_heads, head_dim, threads);
    return;
  }
  const int kv_dim = n_kv_heads * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const ptrdiff_t v_offset = v_pool - k_pool;
  const int n = batch.n_tokens;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads) if (n * n_kv_heads > 1)
  for (int t = 0; t < n; ++t) {
    for (int g = 0; g < n_kv_heads; ++g) {
      const int s = sequence_of(batch, t);
      const float* q_group = q + (size_t(t) * n_heads + size_t(g) * group) * head_dim;
      float* out_group = out + (size_t(t) * n_heads + size_t(g) * group) * head_dim;
      const float* k_head = k_pool + size_t(g) * head_dim;
      attend_group_v2(q_group, out_group, batch.positions[t], group, head_dim, scale,
                      [&](int p) { return k_head + slot_row(batch, s, p, kv_dim); }, v_offset);
    }
  }
}

void paged_attention(const float* q, const float* k_pool, const float* v_pool, float* out, const BatchView& batch,
                     int n_heads, int n_kv_heads, int head_dim, int threads) {
  paged_attention_v2_grouped(q, k_pool, v_pool, out, batch, n_heads, n_kv_heads, head_dim, threads);
}

}  // namespace infer::cpu
