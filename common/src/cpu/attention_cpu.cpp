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
//   v3_tiled:   what the backend runs since ch06 (cpu::attention and cpu::paged_attention). Positions go
//               in tiles of 16: the tile's K rows are transposed once (AVX-512 16 x 16 register transposes)
//               and shared by the group's query heads and by up to 16 consecutive queries of a sequence
//               (a prefill block), so 8 (query, head) scores run as independent 16-lane FMA chains; exp is
//               a vectorised polynomial (exp_lane); the weighted V sum keeps 64 dimensions x the group's
//               heads (of one query, or of two consecutive queries: 6 pairs) in registers while the tile's
//               rows stream by. The context is split in chunks of 512
//               positions, each chunk's (max, sum, weighted V) merged in chunk order (log-sum-exp): a
//               long decode row spreads over the threads as (query block, kv head, chunk) items. Every
//               query's arithmetic depends only on its own position (tiles and chunks are absolute
//               positions), so it gives the same bits alone, batched, in any block layout, with any
//               thread count (tested). The next tile's rows are prefetched (a decode row's cache comes from
//               memory). Measured (bench_batch.cpp, SmolLM2's heads, blocks of 16 in shuffled order; AMD EPYC,
//               1 thread, CPU time, machine loaded by other builds): one decode row over 2,048 positions
//               131 us (v2 through the block table: 587 us), over 8,192: 0.90 ms (4.9 ms); a 2,048-token
//               prompt 49 ms (423 ms), a 128-token one 0.18 ms (1.29 ms).
//               What limits a long decode row in the engine is the cache layout, not this code. The
//               benchmark's rows sit partly in the L3; in the engine every layer's K/V comes from memory
//               (the 538 MB of weights in between evict it), and an item (chunk, kv head g) reads 256 of
//               every 768 bytes (head g of each position). Timed inside the engine (SmolLM2, f32, 2 threads,
//               2,048 cached positions): ~100-110 us per layer against 12.7 us at 32 positions (estimated: the
//               timer's 6,030 calls took 1.245 s, the 30 prefill calls ~0.6 s of it), the K/V streamed at
//               ~30 GB/s while the weights' GEMV streams 45-65. A plain read of that pattern reaches the same
//               (2 threads, 1 GiB: 30.3 GB/s, 48.6 sequential in the same run), and the same bytes laid out
//               head-major per 16-position block (4 KiB of one head, then the next block) 53.6. Software
//               prefetch changes nothing here: none, 1 tile ahead (this code), 2 tiles, 4 tiles into L2, or
//               whole rows of the next tile all measured within the noise (tools/long_context, alternated).
//               Nor did items of whole chunks (every kv head of a tile in turn, so each tile's rows are read
//               in full, head by head): 75-78 against 79-85 tok/s at 2,048, slower. A head-major pool layout
//               is the likely fix, shown so far only by the plain read above; it touches the store, every
//               paged kernel and the ch05 lab's store, so it is left for later.
// v1 stays as the readable reference the tests use; v2 as ch05's step.
//
// Paged versions (ch06): the same maths over a ragged batch, each sequence's positions found through its
// block table (position i of sequence s is in slot table[i / block_size] * block_size + i % block_size):
//   paged_v1_naive:   v1 with the table lookup; the reference the paged tests use.
//   paged_v2_grouped: v2's arithmetic, the very same code (attend_group_v2 below) with the table lookup, so
//                     a query gives the same bits in a contiguous cache or in any paged layout. Threads over
//                     (token, kv head) pairs of the whole batch.
//   paged_v3_tiled:   v3 through the block table (one template, attention_v3_core, for both layouts).
//
// int8 pool (ch07, KVDType::int8: int8 rows, one float scale per (position, kv head) for K and for V):
//   paged_v4_int8:    v3's core reading an Int8Store instead of an F32Store (the f32 path compiles to what it
//                     was). Each position's int8 K and V rows (head_dim bytes each) are read in place and
//                     converted to fp32 in registers (16 lanes at a time: sign-extend, convert; exact) by the
//                     tile's K transpose and by the weighted V sum, so no fp32 copy of the cache, not even of a
//                     tile, is written; the score lane of a position is multiplied once by k_scale /
//                     sqrt(head_dim) (instead of 1 / sqrt(head_dim)), and, after the softmax sum, its weight once
//                     by v_scale, so out = sum p_i * v_scale_i * v_int8_i. Same tiles, chunks and merge order
//                     as v3: the same bits alone or batched, in any block layout, with any thread count (tested).
//                     It reads 2 * (head_dim + 4) bytes per position and kv head instead of 2 * head_dim * 4
//                     (SmolLM2: 136 vs 512 bytes). Below head_dim 16 (stories260K: 8) the plain loops run.
//                     Measured (bench_batch.cpp, SmolLM2's heads, blocks of 16 shuffled; AMD EPYC, 1 thread, CPU
//                     time, machine loaded by other builds): one decode row over 2,048 positions 99 us (v3 on the
//                     f32 rows: 108 us), over 8,192: 403 us (486 us); a 512-token prompt 2.73 ms (2.61 ms: the
//                     conversions cost where the rows are in cache). A first version that converted each tile's
//                     rows into an fp32 scratch before the transpose was 20-25% slower than v3.
#include "infer/cpu/cpu_kernels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12's unpack/shuffle intrinsics start from _mm512_undefined_ps() and trip -Wmaybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

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

// ---- v3: tiles of 16 positions, query blocks, context split in chunks (the CPU backend's kernel) ---------
namespace {

constexpr int kTile = 16;        // positions per tile: a tile's scores are one 16-lane vector
constexpr int kChunk = 512;      // positions per split of the context (a multiple of kTile)
constexpr int kQueryBlock = 16;  // consecutive queries of a sequence that share a transposed K tile

// exp(x) for one lane, in plain float arithmetic (range reduction x = n ln2 + r, |r| <= ln2 / 2, then a
// degree-6 polynomial for exp(r) and 2^n put into the exponent; ~2 ulp), so the compiler vectorises the
// loops that call it and every lane rounds the same way in a vector or alone. exp(x) = 0 below -87.3
// (where float would be denormal) and for x = -inf.
inline float exp_lane(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;        // ln 2 = kLn2Hi + kLn2Lo, kLn2Hi exact in few bits
  constexpr float kLn2Lo = -2.12194440e-4f;
  const bool underflow = !(x > -87.3f);         // also true for NaN and -inf
  x = std::min(x, 88.3f);
  x = std::max(x, -87.3f);
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(-n, kLn2Hi, x);
  r = std::fma(-n, kLn2Lo, r);
  // exp(r) ~ 1 + r + r^2/2! + ... + r^6/6! (Horner, fused)
  float p = 1.0f / 720.0f;
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  // 2^n as a float: n + 127 in the exponent field.
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? 0.0f : p * scale;
}

// A query's running softmax state for one head over the positions seen so far: max score m, sum of
// exp(score - m), and sum of exp(score - m) * v (head_dim floats, stored after the two).
struct Partial {
  float* data;
  float& max() { return data[0]; }
  float& sum() { return data[1]; }
  float* out() { return data + 2; }
};

// out = merged (a, b): both rescaled to the larger max. Always in the order a = chunks so far, b = the next.
inline void merge_partials(Partial a, Partial b, int head_dim) {
  const float m = std::max(a.max(), b.max());
  const float fa = exp_lane(a.max() - m), fb = exp_lane(b.max() - m);
  a.sum() = std::fma(b.sum(), fb, a.sum() * fa);
  float* ao = a.out();
  const float* bo = b.out();
#pragma omp simd
  for (int d = 0; d < head_dim; ++d) ao[d] = std::fma(bo[d], fb, ao[d] * fa);
  a.max() = m;
}

// A batch as the v3 core reads it: per token its position and sequence; per (sequence, position) the
// offset of its K (and V) row in the layer's storage.
template <typename RowOffset>
struct RaggedRows {
  int n_tokens;
  int n_sequences;
  const int* query_start;  // (n_sequences + 1)
  const int* positions;    // (n_tokens)
  RowOffset row;           // row(s, p): float offset of sequence s's position p
};

// ---- v3's tile arithmetic. Each function has an AVX-512 path and a plain one written to round alike (the
// same operations in the same order per lane); this machine builds and tests the AVX-512 one. Within either,
// a query's bits never depend on the rest of the batch.
constexpr int kValueHeads = 6;  // (query, head) pairs whose weighted V sums run together: 6 x 64 dims in 24 registers

// scores[p * kTile + i] = sum over d, in order, of q(p)[d] * kt[d * kTile + i] (fused), p < pairs: one
// (query, head) pair per 16-lane row. The pairs' queries come transposed, q(p)[d] = qt[d * stride + p] (packed
// once per chunk), so the P broadcasts of a d read one short run at fixed offsets from one pointer. Up to
// kPairsAtOnce pairs share each load of kt and run as independent FMA chains (one chain is latency-bound:
// 4 cycles per d). Reading the queries through P separate pointers instead (the first version) left GCC
// 8 pointers to juggle between vector and integer registers: 35% of attend_chunk_v3's samples in a
// 2,048-token prefill were that loop.
constexpr int kPairsAtOnce = 8;
#if defined(__AVX512F__)
template <int P>
inline void tile_scores_avx512(const float* qt, int stride, const float* kt, int head_dim, float* scores) {
  __m512 acc[P];
  for (int p = 0; p < P; ++p) acc[p] = _mm512_setzero_ps();
  for (int d = 0; d < head_dim; ++d, qt += stride) {
    const __m512 k_lanes = _mm512_loadu_ps(kt + size_t(d) * kTile);
    for (int p = 0; p < P; ++p) acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(qt[p]), k_lanes, acc[p]);
  }
  for (int p = 0; p < P; ++p) _mm512_storeu_ps(scores + p * kTile, acc[p]);
}
#endif
inline void tile_scores(const float* qt, int stride, int pairs, const float* kt, int head_dim, float* scores) {
#if defined(__AVX512F__)
  switch (pairs) {  // the count as a constant, so the accumulators stay in registers
    case 1: tile_scores_avx512<1>(qt, stride, kt, head_dim, scores); return;
    case 2: tile_scores_avx512<2>(qt, stride, kt, head_dim, scores); return;
    case 3: tile_scores_avx512<3>(qt, stride, kt, head_dim, scores); return;
    case 4: tile_scores_avx512<4>(qt, stride, kt, head_dim, scores); return;
    case 5: tile_scores_avx512<5>(qt, stride, kt, head_dim, scores); return;
    case 6: tile_scores_avx512<6>(qt, stride, kt, head_dim, scores); return;
    case 7: tile_scores_avx512<7>(qt, stride, kt, head_dim, scores); return;
    case 8: tile_scores_avx512<8>(qt, stride, kt, head_dim, scores); return;
    default: break;
  }
#endif
  for (int p = 0; p < pairs; ++p) {
    float* lanes = scores + p * kTile;
    for (int i = 0; i < kTile; ++i) lanes[i] = 0.0f;
    for (int d = 0; d < head_dim; ++d) {
      const float qd = qt[size_t(d) * stride + p];
      const float* kd = kt + size_t(d) * kTile;
#pragma omp simd
      for (int i = 0; i < kTile; ++i) lanes[i] = std::fma(qd, kd[i], lanes[i]);
    }
  }
}

// Max and sum of the first `count` lanes; the sum as a fixed tree (lane i + lane i + 8, then + 4, + 2, + 1,
// the lanes past count taken as +0, which adds nothing), so its rounding does not depend on the vector width.
inline float tile_max(const float* lanes, int count) {
  float m = -INFINITY;
  for (int i = 0; i < count; ++i) m = std::max(m, lanes[i]);
  return m;
}
inline float tile_sum(const float* lanes, int count) {
  float s[kTile];
  for (int i = 0; i < kTile; ++i) s[i] = i < count ? lanes[i] : 0.0f;
  for (int width = kTile / 2; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) s[i] += s[i + width];
  return s[0];
}

#if defined(__AVX512F__)
// exp_lane on 16 lanes: the same operations in the same order, so the same bits.
inline __m512 exp_lanes_avx512(__m512 x) {
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_NGT_UQ);  // !(x > -87.3)
  x = _mm512_min_ps(x, _mm512_set1_ps(88.3f));
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mul_ps(~underflow, p, _mm512_castsi512_ps(bits));
}
#endif

// One tile of a query head's online softmax: lanes (16 scores, the first `count` real) become
// exp(score - new max) (lanes past count: 0), and the head's running max and sum move to the new max.
// Returns the factor exp(old max - new max) that rescales what was summed before (0 on the first tile).
inline float softmax_tile(float* lanes, int count, float& running_max, float& running_sum) {
#if defined(__AVX512F__)
  const __mmask16 seen = __mmask16((1u << count) - 1u);
  const __m512 scores = _mm512_loadu_ps(lanes);
  const float new_max = std::max(running_max, _mm512_mask_reduce_max_ps(seen, scores));  // max: any order
  const __m512 e = _mm512_maskz_mov_ps(seen, exp_lanes_avx512(_mm512_sub_ps(scores, _mm512_set1_ps(new_max))));
  _mm512_storeu_ps(lanes, e);
  // tile_sum's tree: i + (i + 8), then + 4, + 2, + 1.
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(e), _mm512_extractf32x8_ps(e, 1));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  const float sum = _mm_cvtss_f32(s1);
#else
  const float new_max = std::max(running_max, tile_max(lanes, count));
#pragma omp simd
  for (int i = 0; i < kTile; ++i) lanes[i] = i < count ? exp_lane(lanes[i] - new_max) : 0.0f;
  const float sum = tile_sum(lanes, count);
#endif
  // exp_lane(0) is exactly 1, so an unchanged max skips the exp without changing a bit.
  const float rescale = new_max == running_max ? 1.0f : exp_lane(running_max - new_max);
  running_sum = std::fma(running_sum, rescale, sum);
  running_max = new_max;
  return rescale;
}

// o_h = o_h * rescale[h], then o_h += weights[h * kTile + i] * v_rows[i] (fused) for i = 0 .. count - 1 in
// order, h < heads <= kValueHeads (heads of one query or of consecutive queries seeing as many positions):
// each V row is read once for all of them. AVX-512: 64 dimensions x the heads in registers while the
// positions stream by (independent chains, no store per position).
#if defined(__AVX512F__)
// 16 consecutive values of a row as fp32 lanes: f32 rows are loaded, int8 rows (v4) converted (exact).
inline __m512 load_lanes(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load_lanes(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <int H, typename T>
inline void tile_values_avx512(float* const* o_heads, const float* weights, const float* rescale,
                               const T* const* v_rows, int count, int d0) {
  __m512 acc[H][4];
  for (int h = 0; h < H; ++h)
    for (int b = 0; b < 4; ++b) acc[h][b] = _mm512_mul_ps(_mm512_loadu_ps(o_heads[h] + d0 + 16 * b), _mm512_set1_ps(rescale[h]));
  for (int i = 0; i < count; ++i) {
    __m512 v[4];
    for (int b = 0; b < 4; ++b) v[b] = load_lanes(v_rows[i] + d0 + 16 * b);
    for (int h = 0; h < H; ++h) {
      const __m512 w = _mm512_set1_ps(weights[h * kTile + i]);
      for (int b = 0; b < 4; ++b) acc[h][b] = _mm512_fmadd_ps(w, v[b], acc[h][b]);
    }
  }
  for (int h = 0; h < H; ++h)
    for (int b = 0; b < 4; ++b) _mm512_storeu_ps(o_heads[h] + d0 + 16 * b, acc[h][b]);
}
#endif
// T: float (v3), or int8_t (v4: the rows' int8 values, their scales already in the weights).
template <typename T>
inline void tile_weighted_values(float* const* o_heads, const float* weights, const float* rescale, int heads,
                                 const T* const* v_rows, int count, int head_dim) {
  int d0 = 0;
#if defined(__AVX512F__)
  for (; d0 + 64 <= head_dim; d0 += 64) {
    switch (heads) {  // heads <= kValueHeads
      case 1: tile_values_avx512<1>(o_heads, weights, rescale, v_rows, count, d0); break;
      case 2: tile_values_avx512<2>(o_heads, weights, rescale, v_rows, count, d0); break;
      case 3: tile_values_avx512<3>(o_heads, weights, rescale, v_rows, count, d0); break;
      case 4: tile_values_avx512<4>(o_heads, weights, rescale, v_rows, count, d0); break;
      case 5: tile_values_avx512<5>(o_heads, weights, rescale, v_rows, count, d0); break;
      default: tile_values_avx512<6>(o_heads, weights, rescale, v_rows, count, d0); break;
    }
  }
#endif
  for (int h = 0; h < heads; ++h) {
    float* o = o_heads[h];
    for (int d = d0; d < head_dim; ++d) o[d] *= rescale[h];
    for (int i = 0; i < count; ++i) {
      const float w = weights[h * kTile + i];
      const T* v_row = v_rows[i];
#pragma omp simd
      for (int d = d0; d < head_dim; ++d) o[d] = std::fma(w, float(v_row[d]), o[d]);
    }
  }
}

// The per-thread workspace of v3 (and v4).
struct V3Scratch {
  std::vector<float> k_tile;     // (head_dim, kTile): the tile's K rows transposed
  std::vector<float> scores;     // (kQueryBlock * group, kTile): every (query, head) pair's lanes
  std::vector<float> q_packed;    // (head_dim, kQueryBlock * group): the block's (query, head) pairs transposed
  std::vector<float> chunk;      // (kQueryBlock * group, head_dim + 2): this chunk's partials
  std::vector<float> zeros;      // (head_dim): stands in for the rows past a partial tile's end
  std::vector<const float*> k_rows, v_rows;
  // v4 (int8 pool) only: the tile's int8 rows, and per row the factor of its score (k_scale / sqrt(head_dim))
  // and of its softmax weight (v_scale); zeros8 and factors 0 past a partial tile's end.
  std::vector<const int8_t*> k_rows8, v_rows8;
  std::vector<int8_t> zeros8;
  std::array<float, kTile> score_factor{}, weight_factor{};
  V3Scratch(int head_dim, int group)
      : k_tile(size_t(head_dim) * kTile), scores(size_t(kQueryBlock) * group * kTile),
        q_packed(size_t(head_dim) * kQueryBlock * group), chunk(size_t(kQueryBlock) * group * (head_dim + 2)),
        zeros(size_t(head_dim), 0.0f), k_rows(kTile), v_rows(kTile), k_rows8(kTile), v_rows8(kTile),
        zeros8(size_t(head_dim), 0) {}
};

// Where v3's core reads a layer's rows. element offset o = row(s, p) + g * head_dim is the first of the
// head_dim values of (position p, kv head g); for the int8 pool its scale is at o / head_dim.
//   F32Store:  the rows are used in place (v3).
//   Int8Store: the int8 rows are read in place, converted to fp32 in registers by the tile's transpose and
//              weighted V sum (load_lanes), and their scales kept per lane (v4).
struct F32Store {
  static constexpr bool kScaled = false;
  const float* k;
  const float* v;
  void prefetch(size_t offset, int head_dim) const {
    for (int d = 0; d < head_dim; d += 16) {
      __builtin_prefetch(k + offset + d);
      __builtin_prefetch(v + offset + d);
    }
  }
  void load(int i, size_t offset, int, float, V3Scratch& scratch) const {
    scratch.k_rows[size_t(i)] = k + offset;
    scratch.v_rows[size_t(i)] = v + offset;
  }
};

struct Int8Store {
  static constexpr bool kScaled = true;
  const int8_t* k;
  const int8_t* v;
  const float* k_scale;
  const float* v_scale;
  void prefetch(size_t offset, int head_dim) const {
    for (int d = 0; d < head_dim; d += 64) {
      __builtin_prefetch(k + offset + d);
      __builtin_prefetch(v + offset + d);
    }
  }
  // Tile row i <- position row at `offset`, its scales kept for its lane.
  void load(int i, size_t offset, int head_dim, float score_scale, V3Scratch& scratch) const {
    scratch.k_rows8[size_t(i)] = k + offset;
    scratch.v_rows8[size_t(i)] = v + offset;
    const size_t row = offset / size_t(head_dim);
    scratch.score_factor[size_t(i)] = k_scale[row] * score_scale;
    scratch.weight_factor[size_t(i)] = v_scale[row];
  }
};

// kt[d * kTile + i] = rows[i][d] for d in [0, head_dim): a tile's K rows transposed, so that the scores
// of the tile's 16 positions are one vector per dimension. Data movement only (exact): AVX-512 does 16 x 16
// blocks in registers (unpack 32-bit, unpack 64-bit, then two 128-bit lane shuffles), the rest is a loop.
template <typename T>
inline void transpose_tile(const T* const* rows, int head_dim, float* kt) {
  int d0 = 0;
#if defined(__AVX512F__)
  for (; d0 + 16 <= head_dim; d0 += 16) {
    __m512 r[16], t[16], u[16];
    for (int i = 0; i < 16; ++i) r[i] = load_lanes(rows[i] + d0);
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // row i, i+1 interleaved: elements 0, 1 | 4, 5 | ...
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  // elements 2, 3 | 6, 7 | ...
    }
    for (int i = 0; i < 16; i += 4) {
      for (int h = 0; h < 2; ++h) {
        const __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + 2 + h]);
        u[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));      // rows i..i+3 of element 2h (+4k)
        u[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));  // rows i..i+3 of element 2h+1 (+4k)
      }
    }
    // u[4m + e] holds rows 4m..4m+3 of elements e, e + 4, e + 8, e + 12 (one per 128-bit lane).
    for (int e = 0; e < 4; ++e) {
      const __m512 low01 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88);     // elements e, e+8 of rows 0..7
      const __m512 low23 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88); // elements e, e+8 of rows 8..15
      const __m512 high01 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xdd);    // elements e+4, e+12 of rows 0..7
      const __m512 high23 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xdd);
      _mm512_storeu_ps(kt + size_t(d0 + e) * kTile, _mm512_shuffle_f32x4(low01, low23, 0x88));
      _mm512_storeu_ps(kt + size_t(d0 + e + 8) * kTile, _mm512_shuffle_f32x4(low01, low23, 0xdd));
      _mm512_storeu_ps(kt + size_t(d0 + e + 4) * kTile, _mm512_shuffle_f32x4(high01, high23, 0x88));
      _mm512_storeu_ps(kt + size_t(d0 + e + 12) * kTile, _mm512_shuffle_f32x4(high01, high23, 0xdd));
    }
  }
#endif
  for (int i = 0; i < kTile; ++i)
    for (int d = d0; d < head_dim; ++d) kt[size_t(d) * kTile + i] = rows[i][d];
}

// One chunk [chunk_begin, chunk_end) of the context for the queries [t0, t1) of sequence s (consecutive
// positions) and kv head g: writes each (query, head of the group) partial to `partials`
// ((t1 - t0) * group entries of head_dim + 2 floats). A query sees the chunk's positions <= its own
// position; one that sees none keeps max -inf, sum 0, out 0. The arithmetic of a query does not
// depend on the other queries of the block: each score is the same fused dot product over head_dim in
// order, and its softmax and V sums run over its own positions only.
// Store: F32Store (v3) or Int8Store (v4, whose per-row scales multiply each score and each softmax weight once).
template <typename Store, typename Rows>
void attend_chunk_v3(const float* q, const Store& store, const Rows& rows, int s, int t0,
                     int t1, int g, int chunk_begin, int chunk_end, int n_heads, int group, int head_dim,
                     float scale, V3Scratch& scratch, float* partials) {
  const int entry = head_dim + 2;
  for (int i = 0; i < (t1 - t0) * group; ++i) {
    Partial p{partials + size_t(i) * entry};
    p.max() = -INFINITY;
    p.sum() = 0.0f;
    std::fill(p.out(), p.out() + head_dim, 0.0f);
  }
  // The block's (query, head) pairs transposed: pair (t - t0) * group + j at q_packed[d * block_pairs + pair].
  const int block_pairs = (t1 - t0) * group;
  float* qt = scratch.q_packed.data();
  for (int t = t0; t < t1; ++t)
    for (int j = 0; j < group; ++j) {
      const float* qh = q + (size_t(t) * n_heads + size_t(g) * group + j) * head_dim;
      const int pair = (t - t0) * group + j;
      for (int d = 0; d < head_dim; ++d) qt[size_t(d) * block_pairs + pair] = qh[d];
    }
  const int last_of_block = rows.positions[t1 - 1];  // the block's queries are in increasing position order
  const int end = std::min(chunk_end, last_of_block + 1);
  float* kt = scratch.k_tile.data();
  float* scores = scratch.scores.data();
  for (int tile = chunk_begin; tile < end; tile += kTile) {
    const int rows_here = std::min(kTile, end - tile);
    // Ask for the next tile's K and V rows now: a decode row's cache comes from memory, and the loads
    // then overlap this tile's arithmetic instead of stalling the next transpose (no effect on results).
    for (int i = 0; i < kTile && tile + kTile + i < end; ++i)
      store.prefetch(rows.row(s, tile + kTile + i) + size_t(g) * head_dim, head_dim);
    // ---- the tile's K rows, transposed: kt[d * kTile + i] = K[tile + i][d] (zeros past the rows) -------
    for (int i = 0; i < kTile; ++i) {
      if (i < rows_here) {
        store.load(i, rows.row(s, tile + i) + size_t(g) * head_dim, head_dim, scale, scratch);
      } else {
        scratch.k_rows[i] = scratch.zeros.data();
        if constexpr (Store::kScaled) {
          scratch.k_rows8[size_t(i)] = scratch.zeros8.data();
          scratch.score_factor[size_t(i)] = scratch.weight_factor[size_t(i)] = 0.0f;
        }
      }
    }
    if constexpr (Store::kScaled)
      transpose_tile(scratch.k_rows8.data(), head_dim, kt);
    else
      transpose_tile(scratch.k_rows.data(), head_dim, kt);
    // ---- scores of every (query, head) pair of the block that sees the tile, kPairsAtOnce at a time ----
    // The queries that see the tile are the block's last ones (positions increase): pairs [first, block_pairs).
    int first_query = t0;
    while (rows.positions[first_query] < tile) ++first_query;  // those before end before this tile
    const int first = (first_query - t0) * group;
    const int pairs = block_pairs - first;
    for (int p = 0; p < pairs; p += kPairsAtOnce)
      tile_scores(qt + first + p, block_pairs, std::min(kPairsAtOnce, pairs - p), kt, head_dim,
                  scores + size_t(p) * kTile);
    // ---- per query: online softmax over tiles; then the weighted V rows, for up to kValueHeads heads at a
    // time (the group's heads, and the next query's when it sees as many of the tile's positions): each V
    // row is loaded once for all of them.
    float* o_heads[kValueHeads];
    float rescale[kValueHeads];
    const float* first_weights = nullptr;
    int pending = 0, pending_count = 0;
    auto flush = [&] {
      if (pending == 0) return;
      if constexpr (Store::kScaled)
        tile_weighted_values(o_heads, first_weights, rescale, pending, scratch.v_rows8.data(), pending_count, head_dim);
      else
        tile_weighted_values(o_heads, first_weights, rescale, pending, scratch.v_rows.data(), pending_count, head_dim);
      pending = 0;
    };
    int pair = 0;
    for (int t = t0; t < t1; ++t) {
      const int count = std::min(rows_here, rows.positions[t] - tile + 1);  // positions of the tile it sees
      if (count <= 0) continue;
      for (int j = 0; j < group; ++j) {
        Partial state{partials + (size_t(t - t0) * group + j) * entry};
        float* lanes = scores + size_t(pair + j) * kTile;
        if constexpr (Store::kScaled) {
#pragma omp simd
          for (int i = 0; i < kTile; ++i) lanes[i] *= scratch.score_factor[size_t(i)];  // k_scale / sqrt(head_dim)
        } else {
#pragma omp simd
          for (int i = 0; i < kTile; ++i) lanes[i] *= scale;
        }
        const float r = softmax_tile(lanes, count, state.max(), state.sum());
        if constexpr (Store::kScaled) {
          // The softmax sum is taken; each weight now carries its V row's scale for the weighted sum.
#pragma omp simd
          for (int i = 0; i < kTile; ++i) lanes[i] *= scratch.weight_factor[size_t(i)];
        }
        if (pending == kValueHeads || (pending > 0 && count != pending_count)) flush();
        if (pending == 0) {
          first_weights = lanes;  // the pending heads' weight rows are consecutive in `scores`
          pending_count = count;
        }
        o_heads[pending] = state.out();
        rescale[pending] = r;
        ++pending;
      }
      pair += group;
    }
    flush();
  }
}

// The chunks a query at `position` is split into: [c * kChunk, (c + 1) * kChunk) for c < chunks_for.
inline int chunks_for(int position) { return position / kChunk + 1; }

// v3 over any row layout. Work items are (query block, kv head) when there are enough of them to keep the
// threads busy, each walking its chunks in order; otherwise (a few long decode rows) (query block, kv head,
// chunk), so one long context spreads over the threads. The chunk partials are merged in chunk order in
// both cases, so the choice never changes a bit of the result.
template <typename Store, typename Rows>
void attention_v3_core(const float* q, const Store& store, float* out, const Rows& rows,
                       int n_heads, int n_kv_heads, int head_dim, int threads) {
  const int group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int entry = head_dim + 2;
  // Query blocks: up to kQueryBlock consecutive tokens of one sequence.
  struct QueryBlock { int s, t0, t1; };
  std::vector<QueryBlock> blocks;
  for (int s = 0; s < rows.n_sequences; ++s)
    for (int t = rows.query_start[s]; t < rows.query_start[s + 1]; t += kQueryBlock)
      blocks.push_back({s, t, std::min(t + kQueryBlock, rows.query_start[s + 1])});
  const int n_blocks = int(blocks.size());
  const int units = n_blocks * n_kv_heads;

  // Normalises a query's merged partials into out.
  auto finish = [&](int t, int g, int j, Partial merged) {
    float* o = out + (size_t(t) * n_heads + size_t(g) * group + j) * head_dim;
    const float inv_sum = 1.0f / merged.sum();
    const float* acc = merged.out();
#pragma omp simd
    for (int d = 0; d < head_dim; ++d) o[d] = acc[d] * inv_sum;
  };

  if (units >= 4 * threads) {
    // ---- (query block, kv head) per item, chunks in order inside -----------------------------------
#pragma omp parallel num_threads(threads) if (units > 1)
    {
      V3Scratch scratch(head_dim, group);
      std::vector<float> merged(size_t(kQueryBlock) * group * entry);
#pragma omp for schedule(dynamic, 1)
      for (int unit = 0; unit < units; ++unit) {
        const QueryBlock& b = blocks[size_t(unit / n_kv_heads)];
        const int g = unit % n_kv_heads;
        const int n_chunks = chunks_for(rows.positions[b.t1 - 1]);
        for (int c = 0; c < n_chunks; ++c) {
          float* target = c == 0 ? merged.data() : scratch.chunk.data();
          attend_chunk_v3(q, store, rows, b.s, b.t0, b.t1, g, c * kChunk, (c + 1) * kChunk, n_heads, group,
                          head_dim, scale, scratch, target);
          if (c == 0) continue;
          for (int t = b.t0; t < b.t1; ++t) {
            if (c >= chunks_for(rows.positions[t])) continue;  // the query ends before this chunk
            for (int j = 0; j < group; ++j) {
              const size_t i = (size_t(t - b.t0) * group + j) * entry;
              merge_partials(Partial{merged.data() + i}, Partial{scratch.chunk.data() + i}, head_dim);
            }
          }
        }
        for (int t = b.t0; t < b.t1; ++t)
          for (int j = 0; j < group; ++j)
            finish(t, g, j, Partial{merged.data() + (size_t(t - b.t0) * group + j) * entry});
      }
    }
    return;
  }

  // ---- (query block, kv head, chunk) per item, partials kept, then merged in chunk order --------------
  std::vector<int> first_chunk(size_t(n_blocks) + 1, 0);  // items of block b: [first_chunk[b], first_chunk[b + 1])
  for (int b = 0; b < n_blocks; ++b) first_chunk[size_t(b) + 1] = first_chunk[size_t(b)] + chunks_for(rows.positions[blocks[size_t(b)].t1 - 1]);
  const int chunk_items = first_chunk.back();
  const size_t item_floats = size_t(kQueryBlock) * group * entry;
  std::vector<float> partials(size_t(chunk_items) * n_kv_heads * item_floats);
#pragma omp parallel num_threads(threads) if (chunk_items * n_kv_heads > 1)
  {
    V3Scratch scratch(head_dim, group);
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < chunk_items * n_kv_heads; ++item) {
      const int chunk_item = item / n_kv_heads, g = item % n_kv_heads;
      const int b = int(std::upper_bound(first_chunk.begin(), first_chunk.end(), chunk_item) - first_chunk.begin()) - 1;
      const int c = chunk_item - first_chunk[size_t(b)];
      const QueryBlock& block = blocks[size_t(b)];
      attend_chunk_v3(q, store, rows, block.s, block.t0, block.t1, g, c * kChunk, (c + 1) * kChunk, n_heads,
                      group, head_dim, scale, scratch, partials.data() + size_t(item) * item_floats);
    }
  }
  for (int b = 0; b < n_blocks; ++b) {
    const QueryBlock& block = blocks[size_t(b)];
    for (int g = 0; g < n_kv_heads; ++g) {
      float* first = partials.data() + (size_t(first_chunk[size_t(b)]) * n_kv_heads + g) * item_floats;
      for (int t = block.t0; t < block.t1; ++t)
        for (int j = 0; j < group; ++j) {
          const size_t i = (size_t(t - block.t0) * group + j) * entry;
          for (int c = 1; c < chunks_for(rows.positions[t]); ++c)
            merge_partials(Partial{first + i},
                           Partial{partials.data() + (size_t(first_chunk[size_t(b)] + c) * n_kv_heads + g) * item_floats + i},
                           head_dim);
          finish(t, g, j, Partial{first + i});
        }
    }
  }
}

}  // namespace

void attention_v3_tiled(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                        int n_heads, int n_kv_heads, int head_dim, int threads) {
  if (n <= 0) return;
  const int kv_dim = n_kv_heads * head_dim;
  std::vector<int> positions(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) positions[size_t(t)] = start_pos + t;
  const int query_start[2] = {0, n};
  auto row = [kv_dim](int, int p) { return size_t(p) * size_t(kv_dim); };
  const RaggedRows<decltype(row)> rows{n, 1, query_start, positions.data(), row};
  attention_v3_core(q, F32Store{k_cache, v_cache}, out, rows, n_heads, n_kv_heads, head_dim, threads);
}

void paged_attention_v3_tiled(const float* q, const float* k_pool, const float* v_pool, float* out,
                              const BatchView& batch, int n_heads, int n_kv_heads, int head_dim, int threads) {
  if (batch.n_tokens <= 0) return;
  const int kv_dim = n_kv_heads * head_dim;
  auto row = [&batch, kv_dim](int s, int p) { return slot_row(batch, s, p, kv_dim); };
  const RaggedRows<decltype(row)> rows{batch.n_tokens, batch.n_sequences, batch.query_start, batch.positions, row};
  attention_v3_core(q, F32Store{k_pool, v_pool}, out, rows, n_heads, n_kv_heads, head_dim, threads);
}

void paged_attention_v4_int8(const float* q, const Int8KVLayer& pool, float* out, const BatchView& batch, int n_heads,
                             int n_kv_heads, int head_dim, int threads) {
  if (batch.n_tokens <= 0) return;
  const int kv_dim = n_kv_heads * head_dim;
  auto row = [&batch, kv_dim](int s, int p) { return slot_row(batch, s, p, kv_dim); };
  const RaggedRows<decltype(row)> rows{batch.n_tokens, batch.n_sequences, batch.query_start, batch.positions, row};
  attention_v3_core(q, Int8Store{pool.k, pool.v, pool.k_scale, pool.v_scale}, out, rows, n_heads, n_kv_heads, head_dim,
                    threads);
}

void paged_attention(const float* q, const float* k_pool, const float* v_pool, float* out, const BatchView& batch,
                     int n_heads, int n_kv_heads, int head_dim, int threads) {
  paged_attention_v3_tiled(q, k_pool, v_pool, out, batch, n_heads, n_kv_heads, head_dim, threads);
}

}  // namespace infer::cpu
