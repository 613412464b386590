// matmul_cpu.cpp: y = x . W^T on the CPU, the kernel that dominates every forward pass.
//
// Versions (one path each, chosen by n):
//   GEMV  (n == 1): decode. Each weight row is read once and dotted with x; threads split the rows.
//                   Arithmetic intensity is 2 FLOPs per weight, so this is bound by memory bandwidth.
//     f32:                 rows straight from memory with dot_f32 (16 lanes, the same arithmetic as GEMM's
//                          dot, so the decode step and a full pass give bit-identical logits).
//     f16 v1_scratch:      converts 4 rows at a time into a per-thread buffer allocated on every call,
//                          then dot_f32: an allocation per matmul and a store/reload of each weight.
//     f16 v2_fused:        converts 16 weights at a time inside the dot (registers / L1), no buffer and
//                          no allocation; same lanes and order as dot_f32, so the same results as v1.
//     matmul_many:         the GEMVs of matrices that read one input (Q, K, V; gate, up) in one parallel
//                          loop over all their rows: each row dot_f32's (dot_f16_f32's) bits, 3 (2) fork/join
//                          barriers fewer per layer. For n > 1 the same for v3 below
//                          (gemm_packed_prefetch_many): x packed once, the row tiles of all the matrices in
//                          one loop, each output the tile's bits as in a call per matrix. ch06's Part 1
//                          (64 requests, f32, 2 threads, three alternated pairs of runs): continuous
//                          batching 507-513 -> 518-522 tok/s (+1-2%, together with the backend's parallel RoPE
//                          of a decode batch; the packing was ~4% of its samples).
//   GEMM  (n > 1):  prefill, batched decode and the naive decoder. A block of weight rows (16 in v1/v2,
//                   4 in v3) is converted to fp32 (if it is not) into a per-thread scratch that stays
//                   in L1/L2, then used by every token (v3: of a token block):
//                   the weights are read from memory once per pass however many tokens there are.
//     v1_dot:              one dot_f32 per (token, row): every FMA needs two loads (a weight and an x
//                          value), so the loads, not the FMA units, set the speed.
//     v2_register_blocked: a micro-kernel computes a tile of 4 tokens x 4 rows at once, 16 accumulator
//                          vectors in registers: per 16 columns it loads 4 x and 4 weight vectors for
//                          16 FMAs (half a load per FMA instead of two). Every (token, row) keeps
//                          dot_f32's 16 lanes, horizontal-sum order and fma tail, so the result is the
//                          GEMV's and v1's bit for bit (the KV-cache decoder's tokens stay the naive
//                          decoder's); a full tile's 16 horizontal sums are done at once after a
//                          16 x 16 register transpose, in the same order. f32 rows are used in place
//                          (v1 copies them). AVX-512 intrinsics where the compiler targets AVX-512,
//                          else the same tiles in plain C++ (the same bits, tested). 2-4x v1's
//                          GFLOP/s on SmolLM2's shapes (bench_decode.cpp, BM_gemm), but only ~50% of
//                          the FMA peak (~140 of 280 GFLOP/s per core): GCC folds each x load into
//                          every FMA that uses it (vfmadd231ps zmm, zmm, [mem]), so the inner loop
//                          issues 20 loads per 16 FMAs instead of 8, from 8 separate row streams.
//     v3_packed_prefetch:  what matmul runs for row-major matrices (f16, bf16; f32 with --weight-layout rows
//                          or without AVX-512). The same per-output arithmetic as v2 (same bits, tested
//                          against v2 and the GEMV, intrinsics and portable) with:
//                          - 6 tokens x 4 rows per tile (24 accumulators + 4 weight vectors + 1 x
//                            vector = 29 of the 32 zmm registers), and the x vector forced into a
//                            register (an empty asm), so 10 loads per 24 FMAs;
//                          - x packed once per call in the order the tile reads it ([tile][column/16]
//                            [token][16]): one sequential stream per tile; tokens split in blocks whose
//                            packed x stays in L2 (<= 384 KiB: 168 tokens at 576 columns, 60 at 1536);
//                          - weights streamed 4 rows at a time, the rows 4 tiles ahead prefetched
//                            into L2 while the current ones meet the block's first token tile;
//                          - where they fit in L1 with a token tile (576 columns), two row tiles meet
//                            each token tile in turn (kRowGroup), halving the packed x read from L2.
//                          In L1 (one tile over and over, K = 576, 1 thread) v2's 4x4 tile ran ~200
//                          GFLOP/s and the 6x4 tile ~235-250 of 280 (4x6, 8x3, 5x5, 7x4: 210-250).
//                          The whole GEMM, 1 thread, 1536 x 576, n = 60, loaded 2-core EPYC (Zen 5,
//                          other builds running, best of 30 alternated runs): W cached 150 -> 200
//                          GFLOP/s (v2 -> 6x4 tiles, x in a register); W from memory 135 -> 155 ->
//                          181 (+ packed x, + the prefetch). Blocking the rows by 8, 16 or 32, or the
//                          columns in chunks (accumulators kept between chunks), changed nothing
//                          measurable once the tile stopped folding its loads.
//                          bench_kernels, 1 thread, v2 and v3 interleaved in one run (loaded machine,
//                          GFLOP/s from CPU time, 33 GB/s read bandwidth in that run): BM_matmul_batch
//                          (1536 x 576, W from memory) n = 16 / 64 / 256: 97 / 87 / 93 -> 143 / 175 /
//                          184; BM_gemm 1536 x 576 n = 64: 96 -> 186; 49152 x 576 n = 64: 108 -> 165.
//
//     v4 (matmul_panels_cpu.cpp): the next step needs another layout. f32 matrices stored in 16-row panels
//                          (the CPU backend's default f32 layout on AVX-512) turn the dot around: one x value
//                          broadcast to 16 rows per FMA, 3 panels x 8 tokens of outputs in registers, no
//                          horizontal sums; its own order (one fma chain per output), the same for every n.
//                          Same run, 2 threads, 1536 x 576: n = 64 324 -> 390 GFLOP/s, n = 256 330 -> 429.
//
// Every lane step of every dot here is lane_fma (fused where the target has FMA), so no kernel's
// result depends on whether the compiler chose to contract a * b + c.
#include "infer/cpu/cpu_kernels.h"
#include "infer/cpu/gemm_blocking.h"
#include "infer/cpu/quant_kernels.h"
#include "infer/core/error.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
// GCC 12's _mm512_cvtph_ps starts from _mm512_undefined_ps() and trips -Wmaybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace infer::cpu {

// ---- dot product ---------------------------------------------------------------------------------
float dot_f32(const float* a, const float* b, int n) {
  // 16 independent partial sums: the compiler turns the inner loop into one (or two) vector FMAs
  // per iteration, and the separate chains hide FMA latency.
  constexpr int kLanes = 16;
  float partial[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) partial[j] = lane_fma(a[i + j], b[i + j], partial[j]);
  }
  float sum = 0.0f;
  for (int j = 0; j < kLanes; ++j) sum += partial[j];
  // An explicit fma in the tail, so every dot (f32 or fused f16) rounds the same way whatever the
  // compiler's contraction choices: GEMV and GEMM then agree bit for bit.
  for (; i < n; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}

// sum_i fp32(w[i]) * x[i] for fp16 weights: dot_f32's lanes and order, the conversion fused in.
float dot_f16_f32(const uint16_t* w, const float* x, int n) {
  constexpr int kLanes = 16;
  float partial[kLanes] = {};
  float converted[kLanes];
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    f16_to_f32_row(w + i, converted, kLanes);  // one vcvtph2ps with AVX-512
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) partial[j] = lane_fma(converted[j], x[i + j], partial[j]);
  }
  float sum = 0.0f;
  for (int j = 0; j < kLanes; ++j) sum += partial[j];
  for (; i < n; ++i) sum = std::fma(fp16_to_fp32(w[i]), x[i], sum);
  return sum;
}

// ---- half-precision rows -------------------------------------------------------------------------
void f16_to_f32_row(const uint16_t* src, float* dst, int n) {
  int i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

void bf16_to_f32_row(const uint16_t* src, float* dst, int n) {
  // bf16 is the top half of an fp32: a shift, which the compiler vectorises.
#pragma omp simd
  for (int i = 0; i < n; ++i) {
    const uint32_t bits = uint32_t(src[i]) << 16;
    std::memcpy(&dst[i], &bits, 4);
  }
}

namespace {

// Converts `count` consecutive weight rows starting at `row` to fp32 (rows of W.cols floats).
void rows_to_f32(const Matrix& weight, int row, int count, float* dst) {
  const size_t n = size_t(count) * weight.cols;
  const size_t first = size_t(row) * weight.cols;
  switch (weight.dtype) {
    case DType::F32:
      std::memcpy(dst, static_cast<const float*>(weight.data) + first, n * sizeof(float));
      return;
    case DType::F16:
      f16_to_f32_row(static_cast<const uint16_t*>(weight.data) + first, dst, int(n));
      return;
    case DType::BF16:
      bf16_to_f32_row(static_cast<const uint16_t*>(weight.data) + first, dst, int(n));
      return;
    default:  // block formats without an integer kernel (the K formats): dequantized row by row
      dequantize_row(weight.dtype, static_cast<const uint8_t*>(weight.data) + size_t(row) * dtype_row_bytes(weight.dtype, weight.cols),
                     dst, int64_t(n));
  }
}

}  // namespace

// ---- GEMV (n == 1) -------------------------------------------------------------------------------
// Half-precision weights, v1: convert a few rows at a time into a small per-thread buffer (L1),
// so the memory traffic stays 2 bytes per weight.
void gemv_v1_scratch(const Matrix& weight, const float* x, float* y, int threads) {
  const int rows = weight.rows, cols = weight.cols;
  constexpr int kRows = 4;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> scratch(size_t(kRows) * cols);
#pragma omp for schedule(static)
    for (int r0 = 0; r0 < rows; r0 += kRows) {
      const int count = std::min(kRows, rows - r0);
      rows_to_f32(weight, r0, count, scratch.data());
      for (int i = 0; i < count; ++i) y[r0 + i] = dot_f32(scratch.data() + size_t(i) * cols, x, cols);
    }
  }
}

// v2: f32 rows straight from memory; f16 rows converted inside the dot (dot_f16_f32); BF16 via v1.
void gemv_v2_fused(const Matrix& weight, const float* x, float* y, int threads) {
  const int rows = weight.rows, cols = weight.cols;
  if (weight.dtype == DType::F32) {
    const auto* w = static_cast<const float*>(weight.data);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < rows; ++r) y[r] = dot_f32(w + size_t(r) * cols, x, cols);
  } else if (weight.dtype == DType::F16) {
    const auto* w = static_cast<const uint16_t*>(weight.data);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < rows; ++r) y[r] = dot_f16_f32(w + size_t(r) * cols, x, cols);
  } else {
    gemv_v1_scratch(weight, x, y, threads);
  }
}

// ---- GEMM (n > 1), v1_dot ----------------------------------------------------------------------
// A block of kRowBlock rows converted to fp32 once, then one dot_f32 per (token, row).
void gemm_v1_dot(const Matrix& weight, const float* x, float* y, int n, int threads) {
  constexpr int kRowBlock = 16;
  const int rows = weight.rows, cols = weight.cols;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> block(size_t(kRowBlock) * cols);  // (kRowBlock, cols) fp32 weights
#pragma omp for schedule(static)
    for (int r0 = 0; r0 < rows; r0 += kRowBlock) {
      const int count = std::min(kRowBlock, rows - r0);
      rows_to_f32(weight, r0, count, block.data());
      for (int t = 0; t < n; ++t) {
        const float* xt = x + size_t(t) * cols;
        float* yt = y + size_t(t) * rows + r0;
        for (int i = 0; i < count; ++i) yt[i] = dot_f32(block.data() + size_t(i) * cols, xt, cols);
      }
    }
  }
}

// ---- GEMM (n > 1), v2_register_blocked -----------------------------------------------------------
namespace {

constexpr int kLanes = 16;      // dot_f32's partial sums: one zmm register, or two ymm
constexpr int kTileTokens = 4;  // a tile is kTileTokens x kTileRows outputs: 16 accumulators + 4 + 4
constexpr int kTileRows = 4;    //   loaded vectors fit the 32 zmm registers with room to spare

// Finishes one output of a tile as dot_f32 does: the 16 lane sums added in order starting from 0,
// then the columns past the last multiple of 16 with fma. w, x: the row and the token, from column 0.
inline float finish_dot(const float* lanes, const float* w, const float* x, int tail_start, int cols) {
  float sum = 0.0f;
  for (int j = 0; j < kLanes; ++j) sum += lanes[j];
  for (int i = tail_start; i < cols; ++i) sum = std::fma(w[i], x[i], sum);
  return sum;
}

// y[t * y_stride + r] = dot(w row r, x row t) for t < T, r < R. w: (R, cols) rows, x: (T, cols) tokens,
// both with row stride `cols`. Plain C++: the same lanes and order as the intrinsics below.
template <int T, int R>
void tile_portable(const float* w, const float* x, float* y, int y_stride, int cols) {
  float acc[T][R][kLanes] = {};
  int i = 0;
  for (; i + kLanes <= cols; i += kLanes) {
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) {
        const float* wr = w + size_t(r) * cols + i;
        const float* xt = x + size_t(t) * cols + i;
#pragma omp simd
        for (int j = 0; j < kLanes; ++j) acc[t][r][j] = lane_fma(wr[j], xt[j], acc[t][r][j]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r)
      y[size_t(t) * y_stride + r] = finish_dot(acc[t][r], w + size_t(r) * cols, x + size_t(t) * cols, i, cols);
}

#if defined(__AVX512F__)
// sums[o] = ((0 + acc[o][0]) + acc[o][1]) + ... + acc[o][15] for 16 accumulators: dot_f32's
// horizontal sum, in dot_f32's order, for 16 outputs at once. A 16 x 16 transpose (64 shuffles) turns
// lane j of every accumulator into one vector, then 16 vector adds replace 256 scalar loads and adds.
inline void lane_sums_16(const __m512* acc, float* sums) {
  // Within 128-bit lanes: u[4g + m], lane k = (acc[4g..4g+3])[4k + m].
  __m512 u[kLanes];
  for (int g = 0; g < 4; ++g) {
    const __m512 lo01 = _mm512_unpacklo_ps(acc[4 * g], acc[4 * g + 1]);  // a0 b0 a1 b1 per 128-bit lane
    const __m512 hi01 = _mm512_unpackhi_ps(acc[4 * g], acc[4 * g + 1]);  // a2 b2 a3 b3
    const __m512 lo23 = _mm512_unpacklo_ps(acc[4 * g + 2], acc[4 * g + 3]);
    const __m512 hi23 = _mm512_unpackhi_ps(acc[4 * g + 2], acc[4 * g + 3]);
    u[4 * g + 0] = _mm512_shuffle_ps(lo01, lo23, 0x44);  // a0 b0 c0 d0
    u[4 * g + 1] = _mm512_shuffle_ps(lo01, lo23, 0xEE);  // a1 b1 c1 d1
    u[4 * g + 2] = _mm512_shuffle_ps(hi01, hi23, 0x44);  // a2 b2 c2 d2
    u[4 * g + 3] = _mm512_shuffle_ps(hi01, hi23, 0xEE);  // a3 b3 c3 d3
  }
  // Across 128-bit lanes: column[4k + m] = (u[m].lane k, u[4 + m].lane k, u[8 + m].lane k, u[12 + m].lane k).
  __m512 column[kLanes];
  for (int m = 0; m < 4; ++m) {
    const __m512 even01 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88);  // lanes 0, 2 of each
    const __m512 odd01 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);   // lanes 1, 3 of each
    const __m512 even23 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
    const __m512 odd23 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
    column[0 + m] = _mm512_shuffle_f32x4(even01, even23, 0x88);
    column[8 + m] = _mm512_shuffle_f32x4(even01, even23, 0xDD);
    column[4 + m] = _mm512_shuffle_f32x4(odd01, odd23, 0x88);
    column[12 + m] = _mm512_shuffle_f32x4(odd01, odd23, 0xDD);
  }
  __m512 sum = _mm512_setzero_ps();
  for (int j = 0; j < kLanes; ++j) sum = _mm512_add_ps(sum, column[j]);
  _mm512_store_ps(sums, sum);
}

// The same tile with the 16 lanes of each (token, row) in one zmm register: T*R accumulators, R
// weight vectors and one x vector live at a time; the loops over t and r are unrolled at compile time.
template <int T, int R>
void tile_avx512(const float* w, const float* x, float* y, int y_stride, int cols) {
  __m512 acc[T][R];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  int i = 0;
  for (; i + kLanes <= cols; i += kLanes) {
    __m512 wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_ps(w + size_t(r) * cols + i);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + size_t(t) * cols + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  if constexpr (T * R == kLanes) {
    // A full tile: the 16 horizontal sums at once, in vector registers (see lane_sums_16).
    alignas(64) float sums[kLanes];
    lane_sums_16(&acc[0][0], sums);
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) {
        float sum = sums[t * R + r];
        const float* wr = w + size_t(r) * cols;
        const float* xt = x + size_t(t) * cols;
        for (int k = i; k < cols; ++k) sum = std::fma(wr[k], xt[k], sum);  // dot_f32's tail
        y[size_t(t) * y_stride + r] = sum;
      }
    }
  } else {
    alignas(64) float lanes[kLanes];
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) {
        _mm512_store_ps(lanes, acc[t][r]);
        y[size_t(t) * y_stride + r] = finish_dot(lanes, w + size_t(r) * cols, x + size_t(t) * cols, i, cols);
      }
    }
  }
}
#endif

using TileKernel = void (*)(const float*, const float*, float*, int, int);

template <bool kIntrinsics, int T, int R>
void tile(const float* w, const float* x, float* y, int y_stride, int cols) {
#if defined(__AVX512F__)
  if constexpr (kIntrinsics) {
    tile_avx512<T, R>(w, x, y, y_stride, cols);
    return;
  }
#endif
  tile_portable<T, R>(w, x, y, y_stride, cols);
}

// kTiles<...>[T - 1][R - 1]: full tiles use <4, 4>; the edges of n and of the row count smaller ones.
template <bool kIntrinsics>
constexpr TileKernel kTiles[kTileTokens][kTileRows] = {
    {tile<kIntrinsics, 1, 1>, tile<kIntrinsics, 1, 2>, tile<kIntrinsics, 1, 3>, tile<kIntrinsics, 1, 4>},
    {tile<kIntrinsics, 2, 1>, tile<kIntrinsics, 2, 2>, tile<kIntrinsics, 2, 3>, tile<kIntrinsics, 2, 4>},
    {tile<kIntrinsics, 3, 1>, tile<kIntrinsics, 3, 2>, tile<kIntrinsics, 3, 3>, tile<kIntrinsics, 3, 4>},
    {tile<kIntrinsics, 4, 1>, tile<kIntrinsics, 4, 2>, tile<kIntrinsics, 4, 3>, tile<kIntrinsics, 4, 4>},
};

template <bool kIntrinsics>
void gemm_register_blocked(const Matrix& weight, const float* x, float* y, int n, int threads) {
  constexpr int kRowBlock = 16;  // a multiple of kTileRows
  const int rows = weight.rows, cols = weight.cols;
  const bool in_place = weight.dtype == DType::F32;  // fp32 rows are used where they are
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> block(in_place ? 0 : size_t(kRowBlock) * cols);  // (kRowBlock, cols) fp32 weights
#pragma omp for schedule(static)
    for (int r0 = 0; r0 < rows; r0 += kRowBlock) {
      const int count = std::min(kRowBlock, rows - r0);
      const float* w = block.data();
      if (in_place) {
        w = static_cast<const float*>(weight.data) + size_t(r0) * cols;
      } else {
        rows_to_f32(weight, r0, count, block.data());
      }
      // Token tiles outside, row tiles inside: the 4 token rows stay in L1 while they meet the
      // block's rows (which stay in L1/L2 across the token tiles).
      for (int t0 = 0; t0 < n; t0 += kTileTokens) {
        const int tile_tokens = std::min(kTileTokens, n - t0);
        for (int i0 = 0; i0 < count; i0 += kTileRows) {
          const int tile_rows = std::min(kTileRows, count - i0);
          kTiles<kIntrinsics>[tile_tokens - 1][tile_rows - 1](w + size_t(i0) * cols, x + size_t(t0) * cols,
                                                               y + size_t(t0) * rows + r0 + i0, rows, cols);
        }
      }
    }
  }
}

// ---- GEMM (n > 1), v3_packed_prefetch -----------------------------------------------------------
// v2's arithmetic (every output is dot_f32's 16 lanes, its horizontal order and fma tail) with three
// changes, each measured on the 2-core EPYC (see the file header):
//  1. 6 tokens x 4 rows per tile (24 accumulators, 4 weight vectors, 1 x vector: 29 of 32 zmm), and
//     the x vector kept in a register: GCC folds v2's x load into each of the R FMAs that use it, so
//     v2's inner loop issues 20 loads per 16 FMAs, not 8; v3 loads 10 per 24.
//  2. x packed once per call, token tile by token tile, in the order the micro-kernel reads it:
//     [tile][column / 16][token][16], so a tile's x is one sequential stream instead of 6.
//  3. Weights streamed a row tile at a time (4 rows) with a software prefetch of a row tile further
//     on into L2 while the current one meets the first token tile; each row tile then meets every
//     token tile of a token block (the block's packed x, at most kPackedBytes, stays in L2).

constexpr int kV3Tokens = 6;   // tile: kV3Tokens x kV3Rows outputs, 24 accumulators
constexpr int kV3Rows = 4;
// Row tiles per group in v3 (gemm_packed_prefetch_many), and the L1 budget a group's rows plus one token tile
// must fit. Measured (bench_kernels BM_matmul_batch, 1536 x 576, n = 64, 2 threads, four alternated pairs):
// 295-314 -> 302-325 GFLOP/s, +2-4% in every pair; at n = 256 -1.5% (noise), three tiles per group -0-6%.
// ch06 Part 1 (continuous batching, six alternated pairs): -2% to +10%, inside the VM's run-to-run noise.
constexpr int kRowGroup = 2;
constexpr size_t kRowGroupL1Bytes = size_t(40) << 10;
// Packed x of one token block: stays in the 1 MiB L2 beside the weights. Prefill GEMM, 1 thread, loaded
// EPYC, ms (CPU time) at n = 512 / 2048: 1536 x 576: 96 KiB 4.9 / 20.1, 384 KiB 4.7 / 19.4, no blocks
// 5.4 / 24.4; 576 x 1536: 96 KiB 5.9 / 24.2, 384 KiB 4.7 / 20.1, no blocks 6.6 / 28.9.
constexpr size_t kPackedBytes = size_t(384) << 10;
// The weights of the row tile kPrefetchTiles ahead are prefetched into L2 while a tile meets its block's
// first token tile. BM_matmul_batch/n:64 (W from memory, 1 thread, loaded EPYC, CPU time, two rounds):
// 1 tile ahead into L1 677-684 us, 2 or 4 ahead into L1 677-688, 4 ahead into L2 644-658, 8 ahead 653-656.
constexpr int kPrefetchTiles = 4;

// Where token t's 16 columns [16 * c, 16 * c + 16) sit in the packed x: tiles of kV3Tokens tokens
// (the last may be shorter), each stored column chunk by column chunk, token by token.
inline size_t packed_offset(int t, int c, int chunks, int n) {
  const int t0 = t - t % kV3Tokens;
  const int tile_tokens = std::min(kV3Tokens, n - t0);
  return size_t(t0) * chunks * kLanes + (size_t(c) * tile_tokens + (t - t0)) * kLanes;
}

// The finish of a v3 tile: y[t * y_stride + r] = dot_f32's horizontal sum of lanes[t * R + r] (in
// lane order from 0) then its fma tail over columns [tail_start, cols) of w row r and x token t.
inline void finish_tile(const float* sums, int T, int R, const float* w, const float* x, int tail_start, int cols,
                        float* y, int y_stride) {
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) {
      float sum = sums[t * R + r];
      const float* wr = w + size_t(r) * cols;
      const float* xt = x + size_t(t) * cols;
      for (int k = tail_start; k < cols; ++k) sum = std::fma(wr[k], xt[k], sum);
      y[size_t(t) * y_stride + r] = sum;
    }
  }
}

// Plain C++ v3 tile: the same lanes and order as tile_v3_avx512. xp: the tile's packed x (T tokens
// per column chunk); x: the same tokens unpacked (for the tail); prefetch unused.
template <int T, int R>
void tile_v3_portable(const float* w, const float* xp, const float* x, float* y, int y_stride, int cols,
                      const float* /*prefetch*/) {
  float acc[T * R][kLanes] = {};
  const int chunks = cols / kLanes;
  for (int c = 0; c < chunks; ++c) {
    for (int t = 0; t < T; ++t) {
      const float* xt = xp + (size_t(c) * T + t) * kLanes;
      for (int r = 0; r < R; ++r) {
        const float* wr = w + size_t(r) * cols + size_t(c) * kLanes;
#pragma omp simd
        for (int j = 0; j < kLanes; ++j) acc[t * R + r][j] = lane_fma(wr[j], xt[j], acc[t * R + r][j]);
      }
    }
  }
  float sums[T * R];
  for (int o = 0; o < T * R; ++o) {
    float sum = 0.0f;
    for (int j = 0; j < kLanes; ++j) sum += acc[o][j];
    sums[o] = sum;
  }
  finish_tile(sums, T, R, w, x, chunks * kLanes, cols, y, y_stride);
}

#if defined(__AVX512F__)
// Keeps v in a register: without it GCC folds a load used by several FMAs into each of them (one
// load per FMA instead of one per vector).
inline __m512 in_register(__m512 v) {
#if defined(__GNUC__)
  asm("" : "+v"(v));
#endif
  return v;
}

// One v3 tile with intrinsics; prefetch (or nullptr): R rows (stride cols) to bring into L2, one
// line per row per column chunk.
template <int T, int R>
void tile_v3_avx512(const float* w, const float* xp, const float* x, float* y, int y_stride, int cols,
                    const float* prefetch) {
  __m512 acc[T * R];
#pragma GCC unroll 24
  for (int o = 0; o < T * R; ++o) acc[o] = _mm512_setzero_ps();
  const int chunks = cols / kLanes;
  for (int c = 0; c < chunks; ++c, xp += T * kLanes) {
    const size_t i = size_t(c) * kLanes;
    __m512 wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_ps(w + size_t(r) * cols + i);
    if (prefetch != nullptr) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(prefetch + size_t(r) * cols + i), _MM_HINT_T1);
    }
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m512 xv = in_register(_mm512_load_ps(xp + t * kLanes));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[t * R + r] = _mm512_fmadd_ps(wv[r], xv, acc[t * R + r]);
    }
  }
  alignas(64) float sums[32];
  if constexpr (T * R >= kLanes) {
    lane_sums_16(acc, sums);
    if constexpr (T * R > kLanes) {
      __m512 rest[kLanes];
      for (int o = 0; o < kLanes; ++o) rest[o] = kLanes + o < T * R ? acc[kLanes + o] : _mm512_setzero_ps();
      lane_sums_16(rest, sums + kLanes);
    }
  } else {
    alignas(64) float lanes[kLanes];
    for (int o = 0; o < T * R; ++o) {
      _mm512_store_ps(lanes, acc[o]);
      float sum = 0.0f;
      for (int j = 0; j < kLanes; ++j) sum += lanes[j];
      sums[o] = sum;
    }
  }
  finish_tile(sums, T, R, w, x, chunks * kLanes, cols, y, y_stride);
}
#endif

using TileV3 = void (*)(const float*, const float*, const float*, float*, int, int, const float*);

template <bool kIntrinsics, int T, int R>
void tile_v3(const float* w, const float* xp, const float* x, float* y, int y_stride, int cols, const float* prefetch) {
#if defined(__AVX512F__)
  if constexpr (kIntrinsics) {
    tile_v3_avx512<T, R>(w, xp, x, y, y_stride, cols, prefetch);
    return;
  }
#endif
  tile_v3_portable<T, R>(w, xp, x, y, y_stride, cols, prefetch);
}

template <bool kIntrinsics, int T>
constexpr TileV3 kTilesV3Row[kV3Rows] = {tile_v3<kIntrinsics, T, 1>, tile_v3<kIntrinsics, T, 2>,
                                         tile_v3<kIntrinsics, T, 3>, tile_v3<kIntrinsics, T, 4>};

// kTilesV3<...>[T - 1][R - 1]: full tiles are <6, 4>; the edges of n and of the row count use smaller ones.
template <bool kIntrinsics>
constexpr const TileV3* kTilesV3[kV3Tokens] = {kTilesV3Row<kIntrinsics, 1>, kTilesV3Row<kIntrinsics, 2>,
                                               kTilesV3Row<kIntrinsics, 3>, kTilesV3Row<kIntrinsics, 4>,
                                               kTilesV3Row<kIntrinsics, 5>, kTilesV3Row<kIntrinsics, 6>};

// y_m = x . W_m^T for every matrix m of `weights` (the same dtype and column count), x packed once, and the row
// tiles of all the matrices in one parallel loop (Q, K and V share one x: one packing and one fork/join
// instead of three). Every output is the one tile function's, whatever the other matrices: the same bits as a
// call per matrix.
template <bool kIntrinsics>
void gemm_packed_prefetch_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys,
                               int n, int threads) {
  const Matrix& first = *weights[0];
  const int cols = first.cols;
  const int chunks = cols / kLanes;
  const bool in_place = first.dtype == DType::F32;
  float* packed = packed_x_buffer(size_t(n) * chunks * kLanes);
  // Token blocks whose packed x stays within kPackedBytes (gemm_blocking.h).
  const size_t tile_bytes = size_t(kV3Tokens) * std::max(chunks, 1) * kLanes * sizeof(float);
  const int block_tokens = token_block_tokens(n, kV3Tokens, tile_bytes, kPackedBytes);
  // The row tiles of matrix m are [first_tile[m], first_tile[m + 1]).
  constexpr size_t kMaxMatrices = 8;
  if (weights.size() > kMaxMatrices) fail("matmul: at most {} matrices per call", kMaxMatrices);
  int first_tile[kMaxMatrices + 1] = {0};
  for (size_t m = 0; m < weights.size(); ++m)
    first_tile[m + 1] = first_tile[m] + (weights[m]->rows + kV3Rows - 1) / kV3Rows;
  // Row groups: kRowGroup consecutive row tiles of one matrix meet each token tile in turn, so a token tile's
  // packed x comes from L2 once per group instead of once per row tile, where the group's rows and one token
  // tile fit in L1 together (576 columns: 32 KiB; not at 1536). Each output is still the one tile function's.
  const size_t group_bytes = size_t(kRowGroup * kV3Rows + kV3Tokens) * size_t(cols) * sizeof(float);
  const int group = group_bytes <= kRowGroupL1Bytes ? kRowGroup : 1;
  int first_group[kMaxMatrices + 1] = {0};
  for (size_t m = 0; m < weights.size(); ++m)
    first_group[m + 1] = first_group[m] + (first_tile[m + 1] - first_tile[m] + group - 1) / group;
  const int row_groups = first_group[weights.size()];
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int t = 0; t < n; ++t)
      for (int c = 0; c < chunks; ++c)
        std::memcpy(packed + packed_offset(t, c, chunks, n), x + size_t(t) * cols + size_t(c) * kLanes,
                    kLanes * sizeof(float));
    std::vector<float> block(in_place ? 0 : size_t(group) * kV3Rows * cols);  // converted rows (f16, bf16, ...)
    for (int b0 = 0; b0 < n; b0 += block_tokens) {
      const int b1 = std::min(n, b0 + block_tokens);
      // Row groups in contiguous runs per thread (static), so the next row tile is usually this thread's.
#pragma omp for schedule(static)
      for (int group_index = 0; group_index < row_groups; ++group_index) {
        size_t m = 0;
        while (group_index >= first_group[m + 1]) ++m;
        const Matrix& weight = *weights[m];
        const int rows = weight.rows;
        const int tiles_of_m = first_tile[m + 1] - first_tile[m];
        const int g0 = (group_index - first_group[m]) * group;
        const int g1 = std::min(tiles_of_m, g0 + group);
        const float* w_tile[kRowGroup];
        const float* next_tile[kRowGroup];
        for (int g = g0; g < g1; ++g) {
          const int r0 = g * kV3Rows;
          const int tile_rows = std::min(kV3Rows, rows - r0);
          next_tile[g - g0] = nullptr;
          if (in_place) {
            w_tile[g - g0] = static_cast<const float*>(weight.data) + size_t(r0) * cols;
            if (r0 + (kPrefetchTiles + 1) * kV3Rows <= rows)
              next_tile[g - g0] = w_tile[g - g0] + size_t(kPrefetchTiles * kV3Rows) * cols;
          } else {
            float* converted = block.data() + size_t(g - g0) * kV3Rows * cols;
            rows_to_f32(weight, r0, tile_rows, converted);
            w_tile[g - g0] = converted;
          }
        }
        float* y = ys[m];
        for (int t0 = b0; t0 < b1; t0 += kV3Tokens) {
          const int tile_tokens = std::min(kV3Tokens, n - t0);
          for (int g = g0; g < g1; ++g) {
            const int r0 = g * kV3Rows;
            const int tile_rows = std::min(kV3Rows, rows - r0);
            kTilesV3<kIntrinsics>[tile_tokens - 1][tile_rows - 1](
                w_tile[g - g0], packed + size_t(t0) * chunks * kLanes, x + size_t(t0) * cols,
                y + size_t(t0) * rows + r0, rows, cols, t0 == b0 ? next_tile[g - g0] : nullptr);
          }
        }
      }
    }
  }
}

template <bool kIntrinsics>
void gemm_packed_prefetch(const Matrix& weight, const float* x, float* y, int n, int threads) {
  const Matrix* const weights[1] = {&weight};
  float* const ys[1] = {y};
  gemm_packed_prefetch_many<kIntrinsics>(weights, x, ys, n, threads);
}

}  // namespace

void gemm_v2_register_blocked(const Matrix& weight, const float* x, float* y, int n, int threads) {
  gemm_register_blocked<true>(weight, x, y, n, threads);
}

void gemm_v2_register_blocked_portable(const Matrix& weight, const float* x, float* y, int n, int threads) {
  gemm_register_blocked<false>(weight, x, y, n, threads);
}

void gemm_v3_packed_prefetch(const Matrix& weight, const float* x, float* y, int n, int threads) {
  gemm_packed_prefetch<true>(weight, x, y, n, threads);
}

void gemm_v3_packed_prefetch_portable(const Matrix& weight, const float* x, float* y, int n, int threads) {
  gemm_packed_prefetch<false>(weight, x, y, n, threads);
}

void matmul(const Matrix& weight, const float* x, float* y, int n, int threads) {
  if (weight.interleaved && weight.dtype == DType::F32) {  // 16-row panels (matmul_panels_cpu.cpp)
    gemm_v4_panels(weight, x, y, n, threads);
  } else if (quant_kernel_supports(weight.dtype)) {  // integer dot products on the blocks (matmul_quant_cpu.cpp)
    gemm_quantized(weight, x, y, n, threads, best_quant_path());
  } else if (n == 1) {
    gemv_v2_fused(weight, x, y, threads);
  } else {
    gemm_v3_packed_prefetch(weight, x, y, n, threads);
  }
}

void matmul_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n, int threads) {
  if (weights.size() != ys.size()) fail("matmul: {} matrices but {} outputs", weights.size(), ys.size());
  if (weights.empty()) return;
  const Matrix& first = *weights[0];
  bool same = true;
  for (const Matrix* m : weights)
    same = same && m->dtype == first.dtype && m->cols == first.cols && m->interleaved == first.interleaved;
  if (same && first.interleaved && first.dtype == DType::F32) {
    gemm_v4_panels_many(weights, x, ys, n, threads);
    return;
  }
  if (same && quant_kernel_supports(first.dtype)) {
    gemm_quantized_many(weights, x, ys, n, threads, best_quant_path());
    return;
  }
  if (same && n == 1 && (first.dtype == DType::F32 || first.dtype == DType::F16)) {
    // gemv_v2_fused's dot per row, the rows of all the matrices in one loop.
    const int cols = first.cols;
    size_t start[9] = {0};
    if (weights.size() > 8) fail("matmul: at most 8 matrices per call");
    for (size_t i = 0; i < weights.size(); ++i) start[i + 1] = start[i] + size_t(weights[i]->rows);
    const int total = int(start[weights.size()]);
    const bool f32 = first.dtype == DType::F32;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int g = 0; g < total; ++g) {
      size_t m = 0;
      while (size_t(g) >= start[m + 1]) ++m;
      const size_t r = size_t(g) - start[m];
      if (f32) {
        ys[m][r] = dot_f32(static_cast<const float*>(weights[m]->data) + r * cols, x, cols);
      } else {
        ys[m][r] = dot_f16_f32(static_cast<const uint16_t*>(weights[m]->data) + r * cols, x, cols);
      }
    }
    return;
  }
  if (same && n > 1 && !quant_kernel_supports(first.dtype)) {
    // v3's tiles over the rows of all the matrices, x packed once (each output the same bits as matmul's).
    gemm_packed_prefetch_many<true>(weights, x, ys, n, threads);
    return;
  }
  for (size_t i = 0; i < weights.size(); ++i) matmul(*weights[i], x, ys[i], n, threads);
}

}  // namespace infer::cpu
