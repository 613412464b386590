// matmul_panels_cpu.cpp: y = x . W^T for f32 weights stored in 16-row panels (infer/core/interleaved.h), the
// CPU backend's default f32 layout: GEMM v4 and its GEMV.
//
// Why a new layout. GEMM v3 (matmul_cpu.cpp) keeps the GEMV's dot product for every output: 16 lanes per
// row, summed across at the end. Its tile therefore holds (token, row) dots, each ending in a horizontal
// sum, and reads x in 16-column vectors. Measured in the engine it ran ~70% of the FMA peak: the
// horizontal sums, the 6-token tiles that do not divide a 64-sequence batch, and two streams of 16-float
// vectors per FMA group. Storing 16 rows side by side turns the dot around (the outer product): lane r of
// a register holds row r, one x value broadcast to all 16 lanes feeds 16 rows at once, and an output is
// finished when its accumulator is stored. No horizontal sum, no tail loop.
//
// The arithmetic of one output, in every version and for every n: y[t][r] = fma(w[r][cols-1], x[t][cols-1],
// ... fma(w[r][1], x[t][1], fma(w[r][0], x[t][0], 0))): one sequential chain of fused multiply-adds over the
// columns, in column order (llama2.c's matmul order, fused). So decode (n == 1) and a batched step
// (n == 64) give the same bits, and a sequence decoded alone or inside a batch gets the same tokens.
//
// Versions:
//   GEMV (n == 1): kV4GemvPanels (4) panels = 64 rows at a time, each column one broadcast of x[k] and 4
//                  FMAs on 4 independent chains (an FMA's latency is hidden across the 4). Threads split
//                  the 64-row tiles. Bandwidth-bound like every GEMV.
//   GEMM (n > 1):  a tile of kV4Panels (3) panels x kV4Tokens (8) tokens = 48 rows x 8 tokens, 24
//                  accumulators in registers: per column 3 weight loads, 8 broadcasts, 24 FMAs. x is packed
//                  once per call, token tile by token tile, column-major inside a tile ([column][token]), so
//                  the 8 broadcasts of a column read one 32-byte run. Token blocks keep the packed x within
//                  384 KiB (L2), as v3's do; a row tile meets every token tile of a block in turn, its 3
//                  panels streaming from L2 after the first. Threads split the row tiles of all the
//                  matrices of one call (Q, K, V share the packed x and one parallel loop).
//   Measured before it was wired in (a standalone prototype, 2 threads, 2-core AMD EPYC Zen 5, n = 64, W from
//   memory, best of 7, GFLOP/s; v3 in the same run): 1536 x 576: v3 279 -> 439; 576 x 1536: 301 -> 443;
//   576 x 576: 348 -> 442; 192 x 576: 318 -> 414; 49152 x 576: 355 -> 451. Tiles of 4 x 6 and 2 x 12 panels x
//   tokens ran 315-459, 3 x 8 the best or near it on every shape (and 8 divides a 64-sequence batch).
//
// The _portable tiles are the same chains in plain C++ (lane_fma), what builds without AVX-512 run; the tests
// check both against a plain loop over the columns.
#include "infer/cpu/cpu_kernels.h"
#include "infer/cpu/gemm_blocking.h"
#include "infer/core/error.h"
#include "infer/core/interleaved.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace infer::cpu {

namespace {

constexpr int kLanes = kInterleaveRows;  // 16 rows per panel, one register
constexpr int kV4Panels = 3;             // GEMM tile: 3 panels x 8 tokens
constexpr int kV4Tokens = 8;
constexpr int kV4GemvPanels = 4;         // GEMV tile: 4 panels x 1 token
constexpr int kMaxPanels = 4;
// Packed x of one token block stays in the 1 MiB L2 beside the weights (v3's kPackedBytes, the same reasoning).
constexpr size_t kPackedBytes = size_t(384) << 10;

// One tile: P panels (panel p at w + p * panel_stride, [column][16 rows]) x T tokens of packed x (xp:
// [column][T]). Output (token t, panel p, lane j) goes to y[t * y_stride + 16 p + j] for j < valid[p].
template <int P, int T>
void tile_v4_portable(const float* w, size_t panel_stride, const float* xp, int cols, float* y, int y_stride,
                      const int* valid) {
  float acc[P][T][kLanes] = {};
  for (int k = 0; k < cols; ++k) {
    for (int t = 0; t < T; ++t) {
      const float xv = xp[size_t(k) * T + t];
      for (int p = 0; p < P; ++p) {
        const float* wk = w + size_t(p) * panel_stride + size_t(k) * kLanes;
#pragma omp simd
        for (int j = 0; j < kLanes; ++j) acc[p][t][j] = lane_fma(wk[j], xv, acc[p][t][j]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int p = 0; p < P; ++p)
      for (int j = 0; j < valid[p]; ++j) y[size_t(t) * y_stride + p * kLanes + j] = acc[p][t][j];
}

#if defined(__AVX512F__)
template <int P, int T>
void tile_v4_avx512(const float* w, size_t panel_stride, const float* xp, int cols, float* y, int y_stride,
                    const int* valid) {
  __m512 acc[P][T];
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[p][t] = _mm512_setzero_ps();
  for (int k = 0; k < cols; ++k, xp += T) {
    __m512 wv[P];
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) wv[p] = _mm512_loadu_ps(w + size_t(p) * panel_stride + size_t(k) * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_set1_ps(xp[t]);
#pragma GCC unroll 4
      for (int p = 0; p < P; ++p) acc[p][t] = _mm512_fmadd_ps(wv[p], xv, acc[p][t]);
    }
  }
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    const __mmask16 mask = __mmask16((1u << valid[p]) - 1u);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + size_t(t) * y_stride + p * kLanes, mask, acc[p][t]);
  }
}
#endif

using TileV4 = void (*)(const float*, size_t, const float*, int, float*, int, const int*);

template <bool kIntrinsics, int P, int T>
void tile_v4(const float* w, size_t panel_stride, const float* xp, int cols, float* y, int y_stride, const int* valid) {
#if defined(__AVX512F__)
  if constexpr (kIntrinsics) {
    tile_v4_avx512<P, T>(w, panel_stride, xp, cols, y, y_stride, valid);
    return;
  }
#endif
  tile_v4_portable<P, T>(w, panel_stride, xp, cols, y, y_stride, valid);
}

template <bool kIntrinsics, int T>
constexpr TileV4 kTilesV4Row[kMaxPanels] = {tile_v4<kIntrinsics, 1, T>, tile_v4<kIntrinsics, 2, T>,
                                            tile_v4<kIntrinsics, 3, T>, tile_v4<kIntrinsics, 4, T>};

// kTilesV4<...>[T - 1][P - 1]: full tiles are <3, 8> (GEMM) and <4, 1> (GEMV); the edges of n and of the
// row count use smaller ones.
template <bool kIntrinsics>
constexpr const TileV4* kTilesV4[kV4Tokens] = {kTilesV4Row<kIntrinsics, 1>, kTilesV4Row<kIntrinsics, 2>,
                                               kTilesV4Row<kIntrinsics, 3>, kTilesV4Row<kIntrinsics, 4>,
                                               kTilesV4Row<kIntrinsics, 5>, kTilesV4Row<kIntrinsics, 6>,
                                               kTilesV4Row<kIntrinsics, 7>, kTilesV4Row<kIntrinsics, 8>};

template <bool kIntrinsics>
void gemm_panels_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n,
                      int threads) {
  const Matrix& first = *weights[0];
  const int cols = first.cols;
  for (const Matrix* m : weights)
    if (m->dtype != DType::F32 || !m->interleaved || m->cols != cols)
      fail("matmul v4: every matrix must be f32 in 16-row panels with {} columns", cols);
  const int panels_per_tile = n == 1 ? kV4GemvPanels : kV4Panels;
  const int tokens_per_tile = n == 1 ? 1 : kV4Tokens;
  // x packed token tile by token tile, [column][token] inside a tile (a 1-token tile is x itself); the packing
  // runs in the same parallel region as the tiles, as v3's does.
  float* buffer = n > 1 ? packed_x_buffer(size_t(n) * cols) : nullptr;
  const float* packed = n > 1 ? buffer : x;
  // Token blocks whose packed x stays within kPackedBytes (gemm_blocking.h).
  const size_t tile_bytes = size_t(tokens_per_tile) * std::max(cols, 1) * sizeof(float);
  const int block_tokens = token_block_tokens(n, tokens_per_tile, tile_bytes, kPackedBytes);
  // The row tiles of matrix m are [first_tile[m], first_tile[m + 1]).
  constexpr size_t kMaxMatrices = 8;
  if (weights.size() > kMaxMatrices) fail("matmul: at most {} matrices per call", kMaxMatrices);
  int first_tile[kMaxMatrices + 1] = {0};
  const int tile_rows = panels_per_tile * kLanes;
  for (size_t m = 0; m < weights.size(); ++m)
    first_tile[m + 1] = first_tile[m] + (weights[m]->rows + tile_rows - 1) / tile_rows;
  const int row_tiles = first_tile[weights.size()];
  const size_t panel_stride = size_t(cols) * kLanes;
#pragma omp parallel num_threads(threads)
  {
    if (n > 1) {
#pragma omp for schedule(static)
      for (int t0 = 0; t0 < n; t0 += kV4Tokens) {
        const int tile_tokens = std::min(kV4Tokens, n - t0);
        float* tile = buffer + size_t(t0) * cols;
        for (int t = 0; t < tile_tokens; ++t) {
          const float* xt = x + size_t(t0 + t) * cols;
          for (int k = 0; k < cols; ++k) tile[size_t(k) * tile_tokens + t] = xt[k];
        }
      }
    }
    for (int b0 = 0; b0 < n; b0 += block_tokens) {
      const int b1 = std::min(n, b0 + block_tokens);
#pragma omp for schedule(static)
      for (int tile = 0; tile < row_tiles; ++tile) {
        size_t m = 0;
        while (tile >= first_tile[m + 1]) ++m;
        const Matrix& weight = *weights[m];
        const int rows = weight.rows;
        const int r0 = (tile - first_tile[m]) * tile_rows;
        const int panels = std::min(panels_per_tile, (rows - r0 + kLanes - 1) / kLanes);
        int valid[kMaxPanels];
        for (int p = 0; p < panels; ++p) valid[p] = std::min(kLanes, rows - r0 - p * kLanes);
        const float* w = static_cast<const float*>(weight.data) + size_t(r0) * cols;  // panel r0 / 16
        for (int t0 = b0; t0 < b1; t0 += tokens_per_tile) {
          const int tile_tokens = std::min(tokens_per_tile, n - t0);
          kTilesV4<kIntrinsics>[tile_tokens - 1][panels - 1](w, panel_stride, packed + size_t(t0) * cols, cols,
                                                             ys[m] + size_t(t0) * rows + r0, rows, valid);
        }
      }
    }
  }
}

}  // namespace

void gemm_v4_panels_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n,
                         int threads) {
  if (weights.size() != ys.size()) fail("matmul: {} matrices but {} outputs", weights.size(), ys.size());
  if (weights.empty() || n <= 0) return;
  gemm_panels_many<true>(weights, x, ys, n, threads);
}

void gemm_v4_panels(const Matrix& weight, const float* x, float* y, int n, int threads) {
  if (n <= 0) return;
  const Matrix* const weights[1] = {&weight};
  float* const ys[1] = {y};
  gemm_panels_many<true>(weights, x, ys, n, threads);
}

void gemm_v4_panels_portable(const Matrix& weight, const float* x, float* y, int n, int threads) {
  if (n <= 0) return;
  const Matrix* const weights[1] = {&weight};
  float* const ys[1] = {y};
  gemm_panels_many<false>(weights, x, ys, n, threads);
}

bool f32_panels_vectorised() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

}  // namespace infer::cpu
