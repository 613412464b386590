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
//   GEMM  (n > 1):  prefill and the naive decoder. A block of kRowBlock weight rows is converted to
//                   fp32 into a per-thread scratch that stays in L1/L2, then dotted with every token:
//                   the weights are read from memory once per pass however many tokens there are.
#include "infer/cpu_kernels.h"
#include "infer/error.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
// GCC 12's _mm512_cvtph_ps starts from _mm512_undefined_ps() and trips -Wmaybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
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
    for (int j = 0; j < kLanes; ++j) partial[j] += a[i + j] * b[i + j];
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
    for (int j = 0; j < kLanes; ++j) partial[j] += converted[j] * x[i + j];
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
    default:
      fail("cpu matmul: weights of dtype {} are not supported (dequantize to f32/f16 at load)", dtype_name(weight.dtype));
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

namespace {

// ---- GEMM (n > 1) --------------------------------------------------------------------------------
void gemm(const Matrix& weight, const float* x, float* y, int n, int threads) {
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

}  // namespace

void matmul(const Matrix& weight, const float* x, float* y, int n, int threads) {
  if (n == 1) {
    gemv_v2_fused(weight, x, y, threads);
  } else {
    gemm(weight, x, y, n, threads);
  }
}

}  // namespace infer::cpu
