// silu_cpu.cpp: the feed-forward gate, gate = silu(gate) * up = gate / (1 + exp(-gate)) * up.
//
// One formula for every element, so an element's value never depends on where it sits in the buffer (a
// batch's rows, a thread's chunk, the tail past the last multiple of 16): the AVX-512 body, its masked
// tail and the plain C++ path compute the same operations in the same order.
//   exp(x): n = nearest integer of x * log2(e); r = x - n * ln2 in two steps (ln2 split into a high part
//   exact in float and a low part, Cody-Waite), so r is exact to within an ulp of ln2 * n's low part;
//   exp(r) on |r| <= ln2 / 2 by Horner over the Taylor terms up to r^7 / 5040 (truncation < 2e-9 relative);
//   then * 2^n (vscalefps; std::ldexp: both exact, overflow to inf, gradual underflow).
// Against std::exp's silu the result is within a few float ulps (tested); it replaced a libm expf call per
// element (4.6% of a 64-request continuous-batching run, ~1.4% of a Q4 decode step, perf).
// (attention_cpu.cpp's exp_lane is the softmax's: it clamps its argument to [-87.3, 88.3] and flushes the
// bottom to 0, right for scores <= 0; here exp(-g) must overflow to inf for g < -88 so that silu(g) -> -0,
// and std::exp's NaN / infinity cases must hold, hence the wider clamp and vscalefps.)
#include "infer/cpu/cpu_kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12's 512-bit min/max intrinsics start from an undefined vector: false -Wmaybe-uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace infer::cpu {

namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2High = 0.693145751953125f;       // 11 significant bits: n * kLn2High is exact for |n| < 2^12
constexpr float kLn2Low = 1.42860682030941723212e-6f;  // ln2 - kLn2High
constexpr float kC[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
// |x| beyond this: exp(x) overflows (or underflows) whatever r is; clamping keeps n small enough for the
// exact products above and lets the scaling give inf or 0 as IEEE exp would.
constexpr float kClamp = 104.0f;

float exp_plain(float x) {
  x = std::fmin(std::fmax(x, -kClamp), kClamp);  // NaN: fmin/fmax return the other operand, so test first
  const float n = std::nearbyint(x * kLog2e);
  const float r = std::fma(-n, kLn2Low, std::fma(-n, kLn2High, x));
  float p = kC[0];
  for (int i = 1; i < 8; ++i) p = std::fma(p, r, kC[i]);
  return std::ldexp(p, int(n));
}

float silu_mul_plain(float g, float up) {
  if (std::isnan(g)) return g * up;
  return g / (1.0f + exp_plain(-g)) * up;
}

#if defined(__AVX512F__)
__m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-kClamp)), _mm512_set1_ps(kClamp));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Low), _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2High), x));
  __m512 p = _mm512_set1_ps(kC[0]);
  for (int i = 1; i < 8; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC[i]));
  return _mm512_scalef_ps(p, n);
}

__m512 silu_mul_avx512(__m512 g, __m512 up) {
  const __m512 result = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g)))), up);
  const __mmask16 nan = _mm512_cmp_ps_mask(g, g, _CMP_UNORD_Q);
  return _mm512_mask_mul_ps(result, nan, g, up);  // NaN in, NaN out (min/max above would drop it)
}
#endif

}  // namespace

float silu_mul_scalar(float gate, float up) { return silu_mul_plain(gate, up); }

void silu_mul(float* gate, const float* up, size_t count, int threads) {
  constexpr size_t kChunk = 4096;  // elements per parallel work item (16 KiB of each operand)
  const size_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(threads) schedule(static) if (count > 16384)
  for (size_t c = 0; c < chunks; ++c) {
    const size_t begin = c * kChunk, end = std::min(count, begin + kChunk);
    size_t i = begin;
#if defined(__AVX512F__)
    for (; i + 16 <= end; i += 16)
      _mm512_storeu_ps(gate + i, silu_mul_avx512(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < end) {
      const __mmask16 mask = __mmask16((1u << (end - i)) - 1);
      _mm512_mask_storeu_ps(gate + i, mask, silu_mul_avx512(_mm512_maskz_loadu_ps(mask, gate + i), _mm512_maskz_loadu_ps(mask, up + i)));
      i = end;
    }
#endif
    for (; i < end; ++i) gate[i] = silu_mul_plain(gate[i], up[i]);
  }
}

}  // namespace infer::cpu
