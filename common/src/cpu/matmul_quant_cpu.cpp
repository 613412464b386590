// matmul_quant_cpu.cpp: y = x . W^T with W in a block-quantized format, computed on the blocks.
//
// The idea (llama2.c's runq.c, ggml's vec_dot): quantize the activations x per block of 32 to int8
// once, then every weight block's dot product with them is an integer sum of 32 int8 x int8 (or
// uint4 x int8) products, exact in int32; only the two block scales are floats. Decode reads 1.06
// (Q8_0) or 0.56-0.63 (Q4) bytes per weight instead of 4, and multiplies bytes instead of floats.
//
// Versions (every path computes the 16-lane order of quant_kernels.h, so all give the same bits):
//   reference:      plain C++, one block at a time unpacked to 32 int8 weights; 8 integer lane sums
//                   of 4 products each. Runs Q5_0/Q5_1 always, and everything on CPUs without AVX2.
//   v1_avx2:        one block per ymm register: vpmaddubsw (u8 x s8 -> pairs of int16) then vpmaddwd
//                   with ones (-> int32 sums of 4 bytes, exactly the reference's 8 lanes). Signed
//                   Q8_0 weights use |w| and sign(x, w); Q4_0's "- 8" is a second vpmaddubsw with 8s.
//   v2_avx512_vnni: two blocks per zmm register; vpdpbusd does the u8 x s8 products and the sum of
//                   4 in one instruction. Q8_0's sign moves onto x with a masked subtract (AVX-512BW
//                   has no vpsignb). What matmul runs on this machine (CPUID, checked at run time).
//   v3_avx512_vnni_tiled (GEMM, n >= 8): v2 for 8 tokens at once per weight row, sharing the loads,
//                   nibble unpacking and scale conversions of the weights, and each token's block
//                   scales read as one pre-broadcast vector (QuantizedActivations::d_pairs) instead of
//                   two scalar products and an insert: per output v2's operations, so v2's bits.
//                   1536 x 576 weights, 128 tokens, 1 thread (loaded 2-core Xeon): f32 GEMM v2 2.64 ms,
//                   Q8_0 v2 per token 2.24 ms, v3 with 4 tokens and scalar scales 2.24 ms, v3 (8 tokens,
//                   d_pairs) 1.82 ms; Q4_1 v3 2.17 ms. Decode GEMV (n = 1): f32 0.063 ms, Q8_0 0.025 ms.
//   v4_avx2_int16, v5_avx512_vnni_int16, v6_avx512_vnni_int16_tiled: the same kernels with int16
//                   activations (scale max/32767, 258x finer than int8), in the same 16-lane order
//                   (sums of 4 products stay exact in float: |p| < 2^24). v4: vpmaddwd + vphaddd +
//                   vpermq. v5 first used vpdpwssd (one block per zmm, 2 products per lane): 1.5-1.7x
//                   the int8 GEMV's time (49152 x 576 Q8_0, 1 thread: 4.40 vs 2.92 ms, loaded). Now each
//                   int16 q is split into two byte planes, hi + 128 and lo, and vpdpbusd runs on each
//                   (the weights as the signed operand; lanes start at -128 * sum(w) to undo the +128),
//                   the hi sums shifted left by 8: 3 vpdpbusd + 1 shift per 64 weights, the int8
//                   kernel's layout otherwise. GEMV 49152 x 576, 1 thread: Q8_0 1.05 ms int16 vs 1.05
//                   ms int8; Q4_1 +10%, Q4_0 +20% (loaded 2-core EPYC). v6 = v3's tiling for int16,
//                   each token's block pair one 64-byte record (hi, lo, scales).
//   Later changes to v2 / v3 / v6 (same bits, each measured 1 thread, CPU time, loaded 2-core EPYC):
//                   the GEMM tiles address tokens as base + stride (8-pointer arrays spilled); the tiles
//                   finish 8 tokens at once (8x16 transpose, 16 vector adds in lane order instead of 8
//                   scalar 16-add chains); Q4_1's 8 min terms as one vector; Q4_0's "- 8" folded into
//                   each lane's starting value (-8 * sum of its activations, once per token); the
//                   min term in two chains (even / odd blocks: the GEMV's critical path for Q4_1 was
//                   one scalar fma chain). 1536 x 576, 128 tokens, Q8_0 int16: 1.93 -> 1.56-1.64 ms
//                   (f32 GEMM v2 in the same runs: 1.47-1.55 ms); cols = 1536: 0.95x the f32 time.
//                   A block pair's two f16 scales (and Q4_1's mins) are converted by one vcvtph2ps
//                   and spread by vpermps (was 2 x (load, convert, multiply, broadcast) + an insert),
//                   and the GEMV's Q4_1 min chains run in lanes 0 / 8 of a vector (s_pairs): Q4_1 GEMV
//                   49152 x 576, 1 thread, CPU time: 1.22 -> 1.04-1.09 ms (Q8_0 1.06 ms, f32 2.95 ms).
//   v7_avx512_vnni_rows (int8) / v8_avx512_vnni_int16_rows (int16): the decode GEMV (and the tokens a GEMM's
//                   8-token tiles leave) as 8 weight rows per call: v2's / v5's per-row operations, 8 chains
//                   interleaved, the token's loads shared, one finish_tile for the 8 outputs, lines 32 rows
//                   ahead prefetched; v7 also as 4 rows x 2 tokens and 2 x 4 (speculative passes, small
//                   batches). Q4_0 GEMV 49152 x 576, 2 threads: v2 559 us -> v7 256 us; Q8_0 int16 GEMV
//                   1536 x 576, 1 thread: v5 2.37-2.47 -> v8 1.65-1.70 ns per 64 weights (details at each).
//                   v6's tile also runs the last 2-7 tokens of a call (int16 partial tiles).
//   v9 (matmul_interleaved_cpu.cpp) is the next step, on another layout: 16 rows interleaved per block
//                   (infer/core/interleaved.h), one broadcast activation column for 16 rows, a block's sum
//                   finished in integers. It has its own order, so it lives apart; gemm_quantized_many sends
//                   interleaved matrices there (the CPU backend's default layout on AVX-512 VNNI). Against v3 /
//                   v6 at 1536 x 576 x 128 tokens, 2 threads: Q4_0 973 -> 177 us, Q8_0 int16 838 -> 458 us.
//   Several matrices with one input (Q, K, V; gate, up) run as one call (gemm_quantized_many): the
//   activations quantized once, every row of all of them in one parallel region.
//   Activations are quantized once per matmul, tokens split over the threads (was one thread), with
//   AVX-512 on the VNNI path (same bytes): one token, 576 / 1536 columns, 1 thread, CPU time: int8
//   0.95 -> 0.54 us / 2.07 -> 0.81 us, int16 0.69 -> 0.49 / 1.45 -> 0.81 us (every decode matmul
//   starts with this, on one thread).
//
// Which activation width each format runs (default_activation_bits): int16 for Q8_0 (top-1 agreement
// with f32 over ch07's 2696 eval positions, int8 -> int16: 96.22% -> 98.03%, KL 0.0036 -> 0.00105,
// perplexity +0.62% -> +0.24%; GEMV time +0-5%), int8 for Q4_0 / Q4_1 / Q5 (decode speed is the Q4
// formats' target and the int16 GEMV costs them 10-20% compute; their quality is bounded by the 4-bit
// weights: re-quantized q4_1 82.86% -> 83.01% top-1, q4_0 63.50% -> 63.24%; but the shipped Q4_1 file
// as stored goes from 96.66% to 100.00%, KL 0.0026 -> 5e-8: ch07 --activations int16). The Q5
// formats run the reference.
// Measured on SmolLM2-135M, batch-1 decode, 2 threads: see ch07_quantization/README.md.
//
// GEMV and GEMM call the same dot function for each (token, row), so a token's outputs do not
// depend on how many tokens share the call (the batching engine relies on this; tested).
#include "infer/cpu/quant_kernels.h"

#include "infer/core/error.h"
#include "infer/cpu/interleaved_kernels.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
// GCC 12's 512-bit insert/convert intrinsics start from an undefined vector: false -Wmaybe-uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define INFER_QUANT_X86 1
#else
#define INFER_QUANT_X86 0
#endif

namespace infer::cpu {

namespace {

constexpr int kBlock = 32;
constexpr int kLanes = 16;  // 8 lanes for even blocks, 8 for odd ones
constexpr int kTileTokens = 8;  // tokens per v3 tile
constexpr int kGemvRows = 8;    // weight rows per v7 call
// v5's prefetch distance in rows (v7's: 4 groups of 8). Q8_0 int16 GEMV 1536 x 576 from memory, 1 thread,
// two alternated rounds: 2.66 ns per 64 weights without, 2.45-2.48 with 32 rows (8: 2.47-2.52, 64: 2.46-2.71);
// from cache 2.37: v5 is bound by its own work, not by memory.
constexpr int kGemvAheadRows = 32;

// A weight block unpacked to its integer codes: x_i = d * w_i (+ m for the affine formats).
struct BlockInts {
  int8_t w[kBlock];
  float d;
  float m;
};

bool is_affine(DType type) { return type == DType::Q4_1 || type == DType::Q5_1; }

void unpack_block(DType type, const uint8_t* block, BlockInts& out) {
  out.d = fp16_at(block);
  out.m = 0.0f;
  switch (type) {
    case DType::Q8_0:
      std::memcpy(out.w, block + 2, kBlock);
      return;
    case DType::Q4_0:
    case DType::Q4_1: {
      const int offset = type == DType::Q4_0 ? 2 : 4;
      const int bias = type == DType::Q4_0 ? 8 : 0;
      if (type == DType::Q4_1) out.m = fp16_at(block + 2);
      for (int j = 0; j < 16; ++j) {
        out.w[j] = int8_t((block[offset + j] & 15) - bias);
        out.w[j + 16] = int8_t((block[offset + j] >> 4) - bias);
      }
      return;
    }
    case DType::Q5_0:
    case DType::Q5_1: {
      const int qh_offset = type == DType::Q5_0 ? 2 : 4;
      const int bias = type == DType::Q5_0 ? 16 : 0;
      if (type == DType::Q5_1) out.m = fp16_at(block + 2);
      uint32_t qh;
      std::memcpy(&qh, block + qh_offset, 4);
      const uint8_t* qs = block + qh_offset + 4;
      for (int j = 0; j < 16; ++j) {
        out.w[j] = int8_t(((qs[j] & 15) | (((qh >> j) & 1) << 4)) - bias);
        out.w[j + 16] = int8_t(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - bias);
      }
      return;
    }
    default:
      fail("quantized dot: {} is not a 32-weight block format", dtype_name(type));
  }
}

// The 16 lanes added in order, then the affine formats' min term: the end of every path.
float finish(const float* lanes, float min_sum) {
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum + min_sum;
}

// Both activation widths: lane j of block b is the exact integer sum of 4 products (|p| <= 4 * 127 *
// 32767 < 2^24 for int16, so float(p) is exact too).
template <typename Int>
float dot_reference_lanes(DType type, const uint8_t* row, const Int* q, const float* dx, const float* s, int n_blocks) {
  const size_t block_bytes = dtype_block_bytes(type);
  float acc[kLanes] = {};
  float min_sums[2] = {0.0f, 0.0f};  // even, odd blocks
  BlockInts block;
  for (int b = 0; b < n_blocks; ++b) {
    unpack_block(type, row + size_t(b) * block_bytes, block);
    const Int* qb = q + size_t(b) * kBlock;
    const float scale = block.d * dx[b];
    float* lanes = acc + (b % 2) * 8;
    for (int j = 0; j < 8; ++j) {
      int32_t p = 0;
      for (int k = 0; k < 4; ++k) p += int32_t(block.w[4 * j + k]) * int32_t(qb[4 * j + k]);
      lanes[j] = std::fma(scale, float(p), lanes[j]);
    }
    if (is_affine(type)) min_sums[b % 2] = std::fma(block.m, s[b], min_sums[b % 2]);
  }
  return finish(acc, min_sums[0] + min_sums[1]);
}

float dot_reference(DType type, const uint8_t* row, const int8_t* q, const float* dx, const float* s, int n_blocks) {
  if (type == DType::Q8_0) return dot_q8_0_reference(row, q, dx, n_blocks);  // quant_dot_q8_0_cpu.cpp
  return dot_reference_lanes(type, row, q, dx, s, n_blocks);
}

}  // namespace

float dot_int16_reference(DType type, const uint8_t* row, const int16_t* q, const float* dx, const float* s, int n_blocks) {
  return dot_reference_lanes(type, row, q, dx, s, n_blocks);
}

namespace {

#if INFER_QUANT_X86
// ---- v1_avx2 ------------------------------------------------------------------------------------
#define INFER_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

// 32 weights of a Q4 block as bytes 0..31: low nibbles (weights 0..15), then high nibbles (16..31).
INFER_TARGET_AVX2 inline __m256i nibbles_avx2(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), _mm_and_si128(raw, mask));
}

INFER_TARGET_AVX2 inline float half_avx2(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

template <DType T>
INFER_TARGET_AVX2 float dot_avx2(const uint8_t* row, const int8_t* q, const float* dx, const float* s, int n_blocks) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i eights = _mm256_set1_epi8(8);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  float min_sums[2] = {0.0f, 0.0f};  // even, odd blocks
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* block = row + size_t(b) * kBytes;
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + size_t(b) * kBlock));
    __m256i pairs;
    if constexpr (T == DType::Q8_0) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
      pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    } else if constexpr (T == DType::Q4_0) {
      const __m256i w = nibbles_avx2(block + 2);
      pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(w, x), _mm256_maddubs_epi16(eights, x));
    } else {
      pairs = _mm256_maddubs_epi16(nibbles_avx2(block + 4), x);
      min_sums[b % 2] = std::fma(half_avx2(block + 2), s[b], min_sums[b % 2]);
    }
    const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
    const __m256 scale = _mm256_set1_ps(half_avx2(block) * dx[b]);
    acc[b % 2] = _mm256_fmadd_ps(scale, p, acc[b % 2]);
  }
  alignas(32) float lanes[kLanes];
  _mm256_store_ps(lanes, acc[0]);
  _mm256_store_ps(lanes + 8, acc[1]);
  return finish(lanes, min_sums[0] + min_sums[1]);
}

// ---- v4_avx2_int16 ------------------------------------------------------------------------------
// int16 activations on AVX2: vpmaddwd gives the sums of 2 products, vphaddd the sums of 4 (in the
// order 0 1 4 5 | 2 3 6 7 within its 128-bit halves), vpermq puts lanes 0..7 back in order.
template <DType T>
INFER_TARGET_AVX2 inline void block_weights_i16_avx2(const uint8_t* block, __m256i& lo, __m256i& hi) {
  if constexpr (T == DType::Q8_0) {
    lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2)));
    hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 18)));
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (T == DType::Q4_0 ? 2 : 4)));
    const __m128i mask = _mm_set1_epi8(15);
    lo = _mm256_cvtepu8_epi16(_mm_and_si128(raw, mask));
    hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), mask));
    if constexpr (T == DType::Q4_0) {
      lo = _mm256_sub_epi16(lo, _mm256_set1_epi16(8));
      hi = _mm256_sub_epi16(hi, _mm256_set1_epi16(8));
    }
  }
}

template <DType T>
INFER_TARGET_AVX2 float dot_avx2_i16(const uint8_t* row, const int16_t* q, const float* dx, const float* s, int n_blocks) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  float min_sums[2] = {0.0f, 0.0f};  // even, odd blocks
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* block = row + size_t(b) * kBytes;
    __m256i lo, hi;
    block_weights_i16_avx2<T>(block, lo, hi);
    const int16_t* x = q + size_t(b) * kBlock;
    const __m256i pairs_lo = _mm256_madd_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    const __m256i pairs_hi = _mm256_madd_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16)));
    const __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(pairs_lo, pairs_hi), 0xD8);
    const __m256 scale = _mm256_set1_ps(half_avx2(block) * dx[b]);
    acc[b % 2] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc[b % 2]);
    if constexpr (T == DType::Q4_1) min_sums[b % 2] = std::fma(half_avx2(block + 2), s[b], min_sums[b % 2]);
  }
  alignas(32) float lanes[kLanes];
  _mm256_store_ps(lanes, acc[0]);
  _mm256_store_ps(lanes + 8, acc[1]);
  return finish(lanes, min_sums[0] + min_sums[1]);
}

// ---- v2_avx512_vnni -----------------------------------------------------------------------------
#define INFER_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma,f16c")))

template <DType T>
INFER_TARGET_VNNI inline __m256i block_weights_512(const uint8_t* block) {
  if constexpr (T == DType::Q8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (T == DType::Q4_0 ? 2 : 4)));
    const __m128i mask = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), _mm_and_si128(raw, mask));
  }
}

INFER_TARGET_VNNI inline float half_vnni(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 16 int32 lane sums of 4 products for the 64 weights in w and the 64 activations in x.
template <DType T>
INFER_TARGET_VNNI inline __m512i products_512(__m512i w, __m512i x) {
  const __m512i zero = _mm512_setzero_si512();
  if constexpr (T == DType::Q8_0) {
    const __mmask64 negative = _mm512_movepi8_mask(w);
    const __m512i signed_x = _mm512_mask_sub_epi8(x, negative, zero, x);  // x * sign(w)
    return _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(w), signed_x);      // |w| * x * sign(w)
  } else if constexpr (T == DType::Q4_0) {
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, w, x), _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(8), x));
  } else {
    return _mm512_dpbusd_epi32(zero, w, x);
  }
}

// Q4_0's "- 8": the lanes start at -8 * (sum of their 4 activations) (QuantizedActivations::q4_0_start,
// computed once per token), so one vpdpbusd gives sum((w - 8) x) (a second vpdpbusd with 8s per weight
// row before: 2 of the ~16 operations per 64 weights of the GEMV).
template <DType T>
INFER_TARGET_VNNI inline __m512i products_512(__m512i w, __m512i x, __m512i start) {
  if constexpr (T == DType::Q4_0) return _mm512_dpbusd_epi32(start, w, x);
  return products_512<T>(w, x);
}


// d_w of a block pair in the accumulator layout (lanes 0..7: the even block's, 8..15: the odd one's):
// both f16 heads converted by one vcvtph2ps and spread by vpermps. (Lanes 1 and 3 of the converted
// heads are Q4_1's mins; garbage for the other formats, never read.)
INFER_TARGET_VNNI inline __m512 block_pair_heads(const uint8_t* even, const uint8_t* odd) {
  uint32_t head_even, head_odd;
  std::memcpy(&head_even, even, 4);
  std::memcpy(&head_odd, odd, 4);
  return _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(head_even) | (int64_t(head_odd) << 32))));
}
INFER_TARGET_VNNI inline __m512 spread_scales(__m512 heads) {
  return _mm512_permutexvar_ps(_mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0), heads);
}
INFER_TARGET_VNNI inline __m512 spread_mins(__m512 heads) {
  return _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), heads);
}

// Token t's int8 activation rows, as the int8 kernels read them (v2, v7).
struct Int8Token {
  const int8_t* q;          // (cols) quantized activations
  const float* dx;          // (blocks) scales
  const float* s;           // (blocks) d * sum(q), the affine formats' min term
  const float* d_pairs;     // scales spread over a block pair's 16 lanes
  const float* s_pairs;     // s likewise
  const int32_t* start;     // Q4_0's lane starts, -8 * (sum of the lane's 4 activations)
};
inline Int8Token int8_token(const QuantizedActivations& xa, int t) {
  return {xa.q_row(t), xa.d_row(t), xa.s_row(t), xa.d_pairs_row(t), xa.s_pairs_row(t), xa.q4_0_start_row(t)};
}

template <DType T>
INFER_TARGET_VNNI float dot_avx512_vnni(const uint8_t* row, const QuantizedActivations& xa, int t, int n_blocks) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  const auto [q, dx, s, d_pairs, s_pairs, start] = int8_token(xa, t);
  __m512 acc = _mm512_setzero_ps();
  __m512 mins = _mm512_setzero_ps();  // Q4_1: lane 0 the even blocks' chain, lane 8 the odd blocks'
  int b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    const uint8_t* even = row + size_t(b) * kBytes;
    const uint8_t* odd = even + kBytes;
    const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(block_weights_512<T>(even)), block_weights_512<T>(odd), 1);
    const __m512i x = _mm512_loadu_si512(q + size_t(b) * kBlock);
    const __m512 p = _mm512_cvtepi32_ps(products_512<T>(w, x, _mm512_loadu_si512(start + size_t(b / 2) * kLanes)));
    // d_w * d_pairs: each block's (d_w * d_x), the reference's products.
    const __m512 heads = block_pair_heads(even, odd);
    acc = _mm512_fmadd_ps(_mm512_mul_ps(spread_scales(heads), _mm512_loadu_ps(d_pairs + size_t(b / 2) * 16)), p, acc);
    if constexpr (T == DType::Q4_1)
      mins = _mm512_fmadd_ps(spread_mins(heads), _mm512_loadu_ps(s_pairs + size_t(b / 2) * 16), mins);
  }
  alignas(64) float min_lanes[kLanes];
  _mm512_store_ps(min_lanes, mins);
  float min_sums[2] = {min_lanes[0], min_lanes[8]};  // even, odd blocks
  if (b < n_blocks) {  // a last even block: lanes 0..7 only
    const uint8_t* even = row + size_t(b) * kBytes;
    const __m512i w = _mm512_zextsi256_si512(block_weights_512<T>(even));
    const __m512i x = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + size_t(b) * kBlock)));
    const __m512 p = _mm512_cvtepi32_ps(products_512<T>(w, x, _mm512_loadu_si512(start + size_t(b / 2) * kLanes)));
    acc = _mm512_mask3_fmadd_ps(_mm512_set1_ps(half_vnni(even) * dx[b]), p, acc, __mmask16(0x00ff));
    if constexpr (T == DType::Q4_1) min_sums[0] = std::fma(half_vnni(even + 2), s[b], min_sums[0]);
  }
  alignas(64) float lanes[kLanes];
  _mm512_store_ps(lanes, acc);
  return finish(lanes, min_sums[0] + min_sums[1]);
}

// The end of the 8-token tiles: finish() for 8 tokens at once. An 8 x 16 transpose (two 8 x 8 float
// transposes of the accumulators' halves) turns the 8 sequential 16-add chains into 16 vector adds
// over the tokens: each token's lanes still added one by one from lane 0, so finish()'s bits.
// (The scalar chains were ~25% of a 576-column tile.)
INFER_TARGET_VNNI inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

INFER_TARGET_VNNI inline void finish_tile(const __m512* acc, __m256 min_even, __m256 min_odd, float* out) {
  __m256 low[8], high[8];  // lanes 0..7 and 8..15 of each token
  for (int t = 0; t < 8; ++t) {
    low[t] = _mm512_castps512_ps256(acc[t]);
    high[t] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[t]), 1));
  }
  transpose8(low);   // low[l] = lane l of tokens 0..7
  transpose8(high);  // high[l] = lane 8 + l
  __m256 sum = _mm256_setzero_ps();
  for (int l = 0; l < 8; ++l) sum = _mm256_add_ps(sum, low[l]);
  for (int l = 0; l < 8; ++l) sum = _mm256_add_ps(sum, high[l]);
  _mm256_storeu_ps(out, _mm256_add_ps(sum, _mm256_add_ps(min_even, min_odd)));
}

// v3_avx512_vnni_tiled (GEMM only): the v2 dot for kTileTokens tokens at once against one weight row:
// the weight bytes are loaded, unpacked and their scales converted once for all of them. Each
// token keeps its own accumulator and does v2's operations in v2's order: the same bits.
template <DType T>
INFER_TARGET_VNNI void dot_avx512_vnni_tile(const uint8_t* row, const QuantizedActivations& xq, int t0, int n_blocks,
                                            float* out) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  // Token t's rows are a fixed stride apart: base + stride addressing keeps the pointers in registers
  // (an array of 8 pointers per operand spilled them: measured ~10% of the tile).
  const int8_t* q0 = xq.q_row(t0);
  const int32_t* start0 = xq.q4_0_start_row(t0);  // same layout as d_pairs: pair_stride per token
  const float* pairs0 = xq.d_pairs_row(t0);
  const float* dx0 = xq.d_row(t0);
  const size_t stride = size_t(xq.cols), pair_stride = size_t((n_blocks + 1) / 2) * 16, block_stride = size_t(n_blocks);
  __m512 acc[kTileTokens];
  // The affine formats' min terms of the 8 tokens side by side (s_tiles: s of tokens t0..t0+7 per block).
  __m256 min_even = _mm256_setzero_ps(), min_odd = _mm256_setzero_ps();
  const float* s_tile = xq.s_tile(t0);
  for (int t = 0; t < kTileTokens; ++t) {
    acc[t] = _mm512_setzero_ps();
  }

  int b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    const uint8_t* even = row + size_t(b) * kBytes;
    const uint8_t* odd = even + kBytes;
    const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(block_weights_512<T>(even)), block_weights_512<T>(odd), 1);
    // The weight scales of both blocks in the accumulator layout; times the token's d_pairs vector
    // it is v2's (d_w * d_x) per block, the same products.
    const __m512 d_w = spread_scales(block_pair_heads(even, odd));
#pragma GCC unroll 8
    for (size_t t = 0; t < kTileTokens; ++t) {
      const __m512i x = _mm512_loadu_si512(q0 + t * stride + size_t(b) * kBlock);
      const __m512 p = _mm512_cvtepi32_ps(products_512<T>(w, x, _mm512_loadu_si512(start0 + t * pair_stride + size_t(b / 2) * kLanes)));
      const __m512 scale = _mm512_mul_ps(d_w, _mm512_loadu_ps(pairs0 + t * pair_stride + size_t(b / 2) * 16));
      acc[t] = _mm512_fmadd_ps(scale, p, acc[t]);
    }
    if constexpr (T == DType::Q4_1) {
      min_even = _mm256_fmadd_ps(_mm256_set1_ps(half_vnni(even + 2)), _mm256_load_ps(s_tile + size_t(b) * 8), min_even);
      min_odd = _mm256_fmadd_ps(_mm256_set1_ps(half_vnni(odd + 2)), _mm256_load_ps(s_tile + size_t(b + 1) * 8), min_odd);
    }
  }
  if (b < n_blocks) {
    const uint8_t* even = row + size_t(b) * kBytes;
    const __m512i w = _mm512_zextsi256_si512(block_weights_512<T>(even));
    const float d_even = half_vnni(even);
    for (size_t t = 0; t < kTileTokens; ++t) {
      const __m512i x = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0 + t * stride + size_t(b) * kBlock)));
      const __m512 p = _mm512_cvtepi32_ps(products_512<T>(w, x, _mm512_loadu_si512(start0 + t * pair_stride + size_t(b / 2) * kLanes)));
      acc[t] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(d_even * dx0[t * block_stride + b]), p, acc[t], __mmask16(0x00ff));
    }
  }
  if constexpr (T == DType::Q4_1) {
    if (b < n_blocks)
      min_even = _mm256_fmadd_ps(_mm256_set1_ps(half_vnni(row + size_t(b) * kBytes + 2)), _mm256_load_ps(s_tile + size_t(b) * 8), min_even);
  }
  static_assert(kTileTokens == 8, "finish_tile transposes 8 tokens");
  finish_tile(acc, min_even, min_odd, out);
}
// ---- v5_avx512_vnni_int16 -----------------------------------------------------------------------
// int16 activations with the int8 instruction: each x = 256 * hi + lo is stored as two byte planes,
// lo = x & 255 and hi + 128 (both unsigned, vpdpbusd's first operand), the weights are the signed
// operand (Q4_0's nibbles - 8). Per lane: sum((hi + 128) w) - 128 sum(w) = sum(hi w), shifted left by
// 8, then vpdpbusd adds sum(lo w): the exact sum of 4 products w * x, the int8 kernels' 16 lanes.
// Three vpdpbusd (one for the weights' 128 sum(w)) and a shift per 64 weights, against 2 x (vpdpwssd,
// convert, scale, fma) for vpdpwssd on one block per register (measured 1.6-2x slower than int8 in the
// decode GEMV, 1 thread; this is ~1.2-1.3x).
template <DType T>
INFER_TARGET_VNNI inline __m512i signed_weights_512(const uint8_t* even, const uint8_t* odd) {
  const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(block_weights_512<T>(even)), block_weights_512<T>(odd), 1);
  if constexpr (T == DType::Q4_0) return _mm512_sub_epi8(w, _mm512_set1_epi8(8));
  return w;
}
template <DType T>
INFER_TARGET_VNNI inline __m512i signed_weights_512(const uint8_t* even) {
  const __m512i w = _mm512_zextsi256_si512(block_weights_512<T>(even));
  if constexpr (T == DType::Q4_0) return _mm512_maskz_sub_epi8(__mmask64(0xffffffffu), w, _mm512_set1_epi8(8));
  return w;
}

// -128 * (sum of the 4 weights of each lane): where the lanes of hi + 128 start.
INFER_TARGET_VNNI inline __m512i offset_start(__m512i w) {
  return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(char(0x80)), w));
}

INFER_TARGET_VNNI inline __m512i products_i16_512(__m512i start, __m512i w, __m512i hi, __m512i lo) {
  return _mm512_dpbusd_epi32(_mm512_slli_epi32(_mm512_dpbusd_epi32(start, hi, w), 8), lo, w);
}

// Q4_1's weights (0..15) fit either operand: w (unsigned) times the signed hi plane needs no start.
INFER_TARGET_VNNI inline __m512i products_i16_unsigned_w_512(__m512i w, __m512i hi_signed, __m512i lo) {
  const __m512i zero = _mm512_setzero_si512();
  return _mm512_dpbusd_epi32(_mm512_slli_epi32(_mm512_dpbusd_epi32(zero, w, hi_signed), 8), lo, w);
}

// The lane products of v5 / v6 for format T, from the hi planes (unsigned for Q8_0 / Q4_0, signed for Q4_1).
template <DType T>
INFER_TARGET_VNNI inline __m512i lane_products_i16(__m512i start, __m512i w, __m512i hi, __m512i lo) {
  if constexpr (T == DType::Q4_1) return products_i16_unsigned_w_512(w, hi, lo);
  return products_i16_512(start, w, hi, lo);
}
template <DType T>
INFER_TARGET_VNNI inline __m512i start_i16(__m512i w) {
  if constexpr (T == DType::Q4_1) return _mm512_setzero_si512();
  return offset_start(w);
}
template <DType T>
inline const uint8_t* hi_plane(const QuantizedActivations& x, int t) {
  return T == DType::Q4_1 ? x.hi_signed_row(t) : x.hi_row(t);
}

template <DType T>
INFER_TARGET_VNNI float dot_avx512_vnni_i16(const uint8_t* row, const uint8_t* hi, const uint8_t* lo, const float* dx,
                                            const float* d_pairs, const float* s, int n_blocks) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  __m512 acc = _mm512_setzero_ps();
  float min_sums[2] = {0.0f, 0.0f};  // even, odd blocks
  // The line kGemvAheadRows rows ahead: see v7's prefetch (the GEMV's rows are walked in order).
  const size_t ahead = size_t(kGemvAheadRows) * size_t(n_blocks) * kBytes;
  int b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    const uint8_t* even = row + size_t(b) * kBytes;
    const uint8_t* odd = even + kBytes;
    _mm_prefetch(reinterpret_cast<const char*>(even + ahead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(even + ahead + 64), _MM_HINT_T0);
    const __m512i w = signed_weights_512<T>(even, odd);
    const __m512i p = lane_products_i16<T>(start_i16<T>(w), w, _mm512_loadu_si512(hi + size_t(b) * kBlock),
                                       _mm512_loadu_si512(lo + size_t(b) * kBlock));
    const __m512 scale = _mm512_mul_ps(spread_scales(block_pair_heads(even, odd)), _mm512_loadu_ps(d_pairs + size_t(b / 2) * 16));
    acc = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(p), acc);
    if constexpr (T == DType::Q4_1) {
      min_sums[0] = std::fma(half_vnni(even + 2), s[b], min_sums[0]);
      min_sums[1] = std::fma(half_vnni(odd + 2), s[b + 1], min_sums[1]);
    }
  }
  if (b < n_blocks) {  // a last even block: lanes 0..7 only
    const uint8_t* even = row + size_t(b) * kBytes;
    const __m512i w = signed_weights_512<T>(even);
    const __m512i p = lane_products_i16<T>(
        start_i16<T>(w), w, _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + size_t(b) * kBlock))),
        _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + size_t(b) * kBlock))));
    acc = _mm512_mask3_fmadd_ps(_mm512_set1_ps(half_vnni(even) * dx[b]), _mm512_cvtepi32_ps(p), acc, __mmask16(0x00ff));
    if constexpr (T == DType::Q4_1) min_sums[b % 2] = std::fma(half_vnni(even + 2), s[b], min_sums[b % 2]);
  }
  alignas(64) float lanes[kLanes];
  _mm512_store_ps(lanes, acc);
  return finish(lanes, min_sums[0] + min_sums[1]);
}

// v6_avx512_vnni_int16_tiled (GEMM only): v5 for kTileTokens tokens per weight row, sharing the weight
// loads, unpacking, the 128 sum(w) start and the scale conversions; each token does v5's operations
// in v5's order (its scales as one d_pairs vector, as v3): v5's bits.
// NT < kTileTokens: the last 2-7 tokens of a call (a speculative pass, a small batch), the same operations
// for each (out[NT..8) are zeros, never stored by the caller); each row's weights are then read once, from
// memory, so it prefetches as v5 does.
template <DType T, int NT = kTileTokens>
INFER_TARGET_VNNI void dot_avx512_vnni_i16_tile(const uint8_t* row, const QuantizedActivations& xq, int t0, int n_blocks,
                                                float* out) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  constexpr size_t kRecord = QuantizedActivations::kRecordBytes;
  const uint8_t* records0 = xq.record_row(t0);
  const float* dx0 = xq.d_row(t0);
  const size_t stride = xq.record_stride(), block_stride = size_t(n_blocks);
  __m512 acc[kTileTokens];
  // The affine formats' min terms of the 8 tokens side by side (s_tiles: s of tokens t0..t0+7 per block).
  __m256 min_even = _mm256_setzero_ps(), min_odd = _mm256_setzero_ps();
  const float* s_tile = xq.s_tile(t0);
  for (int t = 0; t < kTileTokens; ++t) {
    acc[t] = _mm512_setzero_ps();
  }
  const size_t ahead = size_t(kGemvAheadRows) * size_t(n_blocks) * kBytes;
  int b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    const uint8_t* even = row + size_t(b) * kBytes;
    const uint8_t* odd = even + kBytes;
    if constexpr (NT < kTileTokens) {  // as dot_avx512_vnni_tile
      _mm_prefetch(reinterpret_cast<const char*>(even + ahead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(even + ahead + 64), _MM_HINT_T0);
    }
    const __m512i w = signed_weights_512<T>(even, odd);
    const __m512i start = offset_start(w);  // the records hold the unsigned hi plane for every format
    const __m512 d_w = spread_scales(block_pair_heads(even, odd));
    const uint8_t* records = records0 + size_t(b / 2) * kRecord;
#pragma GCC unroll 8
    for (size_t t = 0; t < size_t(NT); ++t) {
      const uint8_t* record = records + t * stride;
      const __m512i p = products_i16_512(start, w, _mm512_load_si512(record), _mm512_load_si512(record + 64));
      const __m512 scale = _mm512_mul_ps(d_w, _mm512_load_ps(reinterpret_cast<const float*>(record + 128)));
      acc[t] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(p), acc[t]);
    }
    if constexpr (T == DType::Q4_1) {
      min_even = _mm256_fmadd_ps(_mm256_set1_ps(half_vnni(even + 2)), _mm256_load_ps(s_tile + size_t(b) * 8), min_even);
      min_odd = _mm256_fmadd_ps(_mm256_set1_ps(half_vnni(odd + 2)), _mm256_load_ps(s_tile + size_t(b + 1) * 8), min_odd);
    }
  }
  if (b < n_blocks) {  // a last even block: the first 32 bytes of its record's hi and lo
    const uint8_t* even = row + size_t(b) * kBytes;
    const __m512i w = signed_weights_512<T>(even);
    const __m512i start = offset_start(w);
    const float d_even = half_vnni(even);
    const uint8_t* records = records0 + size_t(b / 2) * kRecord;
    for (size_t t = 0; t < size_t(NT); ++t) {
      const uint8_t* record = records + t * stride;
      const __m512i p = products_i16_512(start, w, _mm512_zextsi256_si512(_mm256_load_si256(reinterpret_cast<const __m256i*>(record))),
                                         _mm512_zextsi256_si512(_mm256_load_si256(reinterpret_cast<const __m256i*>(record + 64))));
      acc[t] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(d_even * dx0[t * block_stride + b]), _mm512_cvtepi32_ps(p), acc[t], __mmask16(0x00ff));
    }
  }
  if constexpr (T == DType::Q4_1) {
    if (b < n_blocks)
      min_even = _mm256_fmadd_ps(_mm256_set1_ps(half_vnni(row + size_t(b) * kBytes + 2)), _mm256_load_ps(s_tile + size_t(b) * 8), min_even);
  }
  static_assert(kTileTokens == 8, "finish_tile transposes 8 tokens");
  finish_tile(acc, min_even, min_odd, out);
}

// v7_avx512_vnni_rows (GEMV and GEMMs of fewer than kTileTokens tokens, int8 activations): v2 for
// kGemvRows weight rows at once against one token. v2 runs one row at a time, and each row's work is
// one dependency chain (9 fmas into one accumulator, then the 16-add finish): it ran at ~25 GB/s,
// Q4_0 / Q4_1 no faster than Q8_0, bound by latency rather than bandwidth or issue. Here 8 rows'
// chains interleave, the token's activation loads (x, Q4_0's starts, the d / s pairs) are shared by
// the 8 rows, a Q4 block pair is unpacked from one 64-byte load with two vpermw, one shift and one
// and (q4_block_pair_512), and the 8 finishes run as one transpose (finish_tile). Per row, v2's operations in v2's
// order: v2's bits.
//   The Q4 pair's load reads up to 28 bytes past the pair (a masked load instead measured 4x slower
//   here), so the caller never gives v7 a matrix's last group of rows (those run v2).
//   Each row's pairs prefetch the line kGemvAheadRows rows (4 groups) ahead: a thread's next groups are its
//   next rows (static schedule). Without it one thread streamed Q4 weights at ~20 GB/s against
//   ~35 GB/s for the f32 GEMV: the compute per byte held back the hardware prefetcher.
//   1536 x 576 from memory (64 copies), 1 thread, ns per 64 weights (loaded 2-core EPYC, best of 5):
//   Q4_0 v2 1.74, v7 without prefetch 1.78, 1 group ahead 1.46, 2: 1.25, 4: 1.17, 8: 1.20; Q4_1
//   2.25 -> 1.46 (4 ahead). From cache (1 copy): Q4_0 v2 ~1.05 ns.

// A Q4 block pair (36 or 40 contiguous bytes) from one 64-byte load, then two vpermw: the nibble bytes as
// v2 lays them out (even block in bytes 0..31, odd in 32..63, each block's low nibbles first), and the f16 heads as [d_even x 8, d_odd x 8, m_even x 8,
// m_odd x 8], converted 16 at a time: spread_scales / spread_mins' exact values (f16 -> f32 is exact).
template <DType T>
INFER_TARGET_VNNI inline void q4_block_pair_512(const uint8_t* even, __m512i& w, __m512& d_w, __m512& m_w) {
  static_assert(T == DType::Q4_0 || T == DType::Q4_1);
  constexpr short kEven = T == DType::Q4_0 ? 1 : 2, kOdd = T == DType::Q4_0 ? 10 : 12;  // first nibble word
  constexpr short kDOdd = T == DType::Q4_0 ? 9 : 10;                                      // the odd block's d
  const __m512i raw = _mm512_loadu_si512(even);
  const __m512i nibble_words = _mm512_set_epi16(
      kOdd + 7, kOdd + 6, kOdd + 5, kOdd + 4, kOdd + 3, kOdd + 2, kOdd + 1, kOdd,  //
      kOdd + 7, kOdd + 6, kOdd + 5, kOdd + 4, kOdd + 3, kOdd + 2, kOdd + 1, kOdd,  //
      kEven + 7, kEven + 6, kEven + 5, kEven + 4, kEven + 3, kEven + 2, kEven + 1, kEven,  //
      kEven + 7, kEven + 6, kEven + 5, kEven + 4, kEven + 3, kEven + 2, kEven + 1, kEven);
  const __m512i copies = _mm512_permutexvar_epi16(nibble_words, raw);
  w = _mm512_and_si512(_mm512_mask_srli_epi16(copies, __mmask32(0xff00ff00u), copies, 4), _mm512_set1_epi8(15));
  const __m512i head_words = _mm512_set_epi16(kDOdd + 1, kDOdd + 1, kDOdd + 1, kDOdd + 1, kDOdd + 1, kDOdd + 1, kDOdd + 1, kDOdd + 1,  //
                                              1, 1, 1, 1, 1, 1, 1, 1,                                                          //
                                              kDOdd, kDOdd, kDOdd, kDOdd, kDOdd, kDOdd, kDOdd, kDOdd,                          //
                                              0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i heads = _mm512_permutexvar_epi16(head_words, raw);
  d_w = _mm512_cvtph_ps(_mm512_castsi512_si256(heads));
  if constexpr (T == DType::Q4_1) m_w = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(heads, 1));
}

// NT > 1 (2 or 4 tokens, kGemvRows / NT rows): the same for NT tokens at once, each row unpacked once for
// all of them; out[r * NT + i] is row r against token t + i. Still one finish_tile for the 8 outputs: a
// speculative pass over 2-7 tokens (or a small batch) ran a per-row 8-token tile whose transposes cost as
// much as its dot products (a Q4_1 pass over 2 tokens took 2.1x the 1-token pass).
template <DType T, int NT = 1>
INFER_TARGET_VNNI void dot_avx512_vnni_rows(const uint8_t* rows, size_t row_bytes, const QuantizedActivations& xa, int t,
                                            int n_blocks, float* out) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  static_assert(kGemvRows % NT == 0, "rows x tokens must be the 8 outputs of one finish_tile");
  constexpr int R = kGemvRows / NT;
  const auto [q, dx, s, d_pairs, s_pairs, start] = int8_token(xa, t);
  // Token t + i's rows: a fixed stride after token t's.
  const size_t stride = size_t(xa.cols), pair_stride = size_t((n_blocks + 1) / 2) * 16, block_stride = size_t(n_blocks);
  __m512 acc[kGemvRows], mins[kGemvRows];  // [r * NT + i]; mins: Q4_1's min chains, v2's lanes 0 (even) and 8 (odd)
  const size_t prefetch_distance = size_t(kGemvAheadRows) * row_bytes;
#pragma GCC unroll 8
  for (int o = 0; o < kGemvRows; ++o) {
    acc[o] = _mm512_setzero_ps();
    mins[o] = _mm512_setzero_ps();
  }
  int b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    __m512i x[NT], x_start[NT];
    __m512 dp[NT], sp[NT];
#pragma GCC unroll 4
    for (int i = 0; i < NT; ++i) {
      x[i] = _mm512_loadu_si512(q + i * stride + size_t(b) * kBlock);
      x_start[i] = T == DType::Q4_0 ? _mm512_loadu_si512(start + i * pair_stride + size_t(b / 2) * kLanes) : _mm512_setzero_si512();
      dp[i] = _mm512_loadu_ps(d_pairs + i * pair_stride + size_t(b / 2) * 16);
      if constexpr (T == DType::Q4_1) sp[i] = _mm512_loadu_ps(s_pairs + i * pair_stride + size_t(b / 2) * 16);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* even = rows + size_t(r) * row_bytes + size_t(b) * kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(even + prefetch_distance), _MM_HINT_T0);
      __m512i w;
      __m512 d_w, m_w = _mm512_setzero_ps();
      if constexpr (T == DType::Q8_0) {
        w = signed_weights_512<T>(even, even + kBytes);  // Q8_0: the stored bytes
        d_w = spread_scales(block_pair_heads(even, even + kBytes));
      } else {
        q4_block_pair_512<T>(even, w, d_w, m_w);
      }
#pragma GCC unroll 4
      for (int i = 0; i < NT; ++i) {
        const __m512 p = _mm512_cvtepi32_ps(products_512<T>(w, x[i], x_start[i]));
        acc[r * NT + i] = _mm512_fmadd_ps(_mm512_mul_ps(d_w, dp[i]), p, acc[r * NT + i]);
        if constexpr (T == DType::Q4_1) mins[r * NT + i] = _mm512_fmadd_ps(m_w, sp[i], mins[r * NT + i]);
      }
    }
  }
  alignas(32) float min_even[kGemvRows], min_odd[kGemvRows];
#pragma GCC unroll 8
  for (int o = 0; o < kGemvRows; ++o) {
    min_even[o] = _mm512_cvtss_f32(mins[o]);
    min_odd[o] = _mm512_cvtss_f32(_mm512_castps128_ps512(_mm512_extractf32x4_ps(mins[o], 2)));
  }
  if (b < n_blocks) {  // a last even block: lanes 0..7 only
    for (int r = 0; r < R; ++r) {
      const uint8_t* even = rows + size_t(r) * row_bytes + size_t(b) * kBytes;
      const __m512i w = _mm512_zextsi256_si512(block_weights_512<T>(even));
      for (int i = 0; i < NT; ++i) {
        const __m512i x = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i * stride + size_t(b) * kBlock)));
        const __m512i x_start = _mm512_loadu_si512(start + i * pair_stride + size_t(b / 2) * kLanes);
        const __m512 p = _mm512_cvtepi32_ps(products_512<T>(w, x, x_start));
        acc[r * NT + i] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(half_vnni(even) * dx[i * block_stride + b]), p, acc[r * NT + i], __mmask16(0x00ff));
        if constexpr (T == DType::Q4_1) min_even[r * NT + i] = std::fma(half_vnni(even + 2), s[i * block_stride + b], min_even[r * NT + i]);
      }
    }
  }
  static_assert(kGemvRows == 8, "finish_tile transposes 8 outputs");
  finish_tile(acc, _mm256_load_ps(min_even), _mm256_load_ps(min_odd), out);
}

// v8_avx512_vnni_int16_rows (GEMV and leftover single tokens, int16 activations): v5 for kGemvRows weight
// rows at once against one token, as v7 is v2's: the token's byte planes and d pairs loaded once for 8
// rows, 8 independent accumulator chains, one finish_tile. Per row, v5's operations in v5's order.
// Q8_0 int16 GEMV (what Q8_0 decode runs), 1536 x 576, 1 thread, ns per 64 weights: v5 2.37 from cache,
// 2.45-2.48 from memory (with its prefetch).
template <DType T>
INFER_TARGET_VNNI void dot_avx512_vnni_i16_rows(const uint8_t* rows, size_t row_bytes, const QuantizedActivations& xa,
                                                int t, int n_blocks, float* out) {
  constexpr size_t kBytes = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  constexpr int R = kGemvRows;
  const uint8_t* hi = hi_plane<T>(xa, t);
  const uint8_t* lo = xa.lo_row(t);
  const float* dx = xa.d_row(t);
  const float* d_pairs = xa.d_pairs_row(t);
  const float* s = xa.s_row(t);
  __m512 acc[R];
  alignas(32) float min_even[R] = {}, min_odd[R] = {};  // Q4_1's two scalar min chains per row, as v5
  const size_t prefetch_distance = size_t(kGemvAheadRows) * row_bytes;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  int b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    const __m512i x_hi = _mm512_loadu_si512(hi + size_t(b) * kBlock);
    const __m512i x_lo = _mm512_loadu_si512(lo + size_t(b) * kBlock);
    const __m512 dp = _mm512_loadu_ps(d_pairs + size_t(b / 2) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* even = rows + size_t(r) * row_bytes + size_t(b) * kBytes;
      const uint8_t* odd = even + kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(even + prefetch_distance), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(even + prefetch_distance + 64), _MM_HINT_T0);
      const __m512i w = signed_weights_512<T>(even, odd);
      const __m512i p = lane_products_i16<T>(start_i16<T>(w), w, x_hi, x_lo);
      const __m512 scale = _mm512_mul_ps(spread_scales(block_pair_heads(even, odd)), dp);
      acc[r] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(p), acc[r]);
      if constexpr (T == DType::Q4_1) {
        min_even[r] = std::fma(half_vnni(even + 2), s[b], min_even[r]);
        min_odd[r] = std::fma(half_vnni(odd + 2), s[b + 1], min_odd[r]);
      }
    }
  }
  if (b < n_blocks) {  // a last even block: lanes 0..7 only
    const __m512i x_hi = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + size_t(b) * kBlock)));
    const __m512i x_lo = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + size_t(b) * kBlock)));
    for (int r = 0; r < R; ++r) {
      const uint8_t* even = rows + size_t(r) * row_bytes + size_t(b) * kBytes;
      const __m512i w = signed_weights_512<T>(even);
      const __m512i p = lane_products_i16<T>(start_i16<T>(w), w, x_hi, x_lo);
      acc[r] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(half_vnni(even) * dx[b]), _mm512_cvtepi32_ps(p), acc[r], __mmask16(0x00ff));
      if constexpr (T == DType::Q4_1) min_even[r] = std::fma(half_vnni(even + 2), s[b], min_even[r]);
    }
  }
  static_assert(kGemvRows == 8, "finish_tile transposes 8 outputs");
  finish_tile(acc, _mm256_load_ps(min_even), _mm256_load_ps(min_odd), out);
}
#endif  // INFER_QUANT_X86

bool simd_format(DType type) { return type == DType::Q8_0 || type == DType::Q4_0 || type == DType::Q4_1; }

using DotFn = float (*)(const uint8_t*, const QuantizedActivations&, int, int);
using TileFn = void (*)(const uint8_t*, const QuantizedActivations&, int, int, float*);
// The int16 paths read different layouts (AVX2: q16; AVX-512: the byte planes): one entry shape.
using Dot16Fn = float (*)(const uint8_t*, const QuantizedActivations&, int, int);
using Tile16Fn = void (*)(const uint8_t*, const QuantizedActivations&, int, int, float*);

#if INFER_QUANT_X86
template <DType T>
float dot_avx2_entry(const uint8_t* row, const QuantizedActivations& x, int t, int n_blocks) {
  return dot_avx2<T>(row, x.q_row(t), x.d_row(t), x.s_row(t), n_blocks);
}
template <DType T>
float dot_avx2_i16_entry(const uint8_t* row, const QuantizedActivations& x, int t, int n_blocks) {
  return dot_avx2_i16<T>(row, x.q16_row(t), x.d_row(t), x.s_row(t), n_blocks);
}
template <DType T>
float dot_avx512_vnni_i16_entry(const uint8_t* row, const QuantizedActivations& x, int t, int n_blocks) {
  return dot_avx512_vnni_i16<T>(row, hi_plane<T>(x, t), x.lo_row(t), x.d_row(t), x.d_pairs_row(t), x.s_row(t), n_blocks);
}
#endif

// A kernel template's instance for one of the SIMD formats: pick(std::integral_constant<DType, T>) returns
// Kernel<T>; null for any other format (those run the reference).
template <class Fn, class Pick>
Fn for_simd_format(DType type, Pick pick) {
  switch (type) {
    case DType::Q8_0: return pick(std::integral_constant<DType, DType::Q8_0>{});
    case DType::Q4_0: return pick(std::integral_constant<DType, DType::Q4_0>{});
    case DType::Q4_1: return pick(std::integral_constant<DType, DType::Q4_1>{});
    default: return nullptr;
  }
}

Dot16Fn simd_dot16(QuantPath path, DType type) {
#if INFER_QUANT_X86
  if (path == QuantPath::Avx2)
    return for_simd_format<Dot16Fn>(type, [](auto t) -> Dot16Fn { return dot_avx2_i16_entry<decltype(t)::value>; });
  if (path == QuantPath::Avx512Vnni)
    return for_simd_format<Dot16Fn>(type, [](auto t) -> Dot16Fn { return dot_avx512_vnni_i16_entry<decltype(t)::value>; });
#endif
  return nullptr;
}

Tile16Fn simd_tile16(QuantPath path, DType type) {
#if INFER_QUANT_X86
  if (path == QuantPath::Avx512Vnni)
    return for_simd_format<Tile16Fn>(type, [](auto t) -> Tile16Fn { return dot_avx512_vnni_i16_tile<decltype(t)::value>; });
#endif
  return nullptr;
}

using RowsFn = void (*)(const uint8_t*, size_t, const QuantizedActivations&, int, int, float*);

// v8: kGemvRows rows against one token, int16 activations (the VNNI path), or null.
RowsFn simd_rows16(QuantPath path, DType type) {
#if INFER_QUANT_X86
  if (path == QuantPath::Avx512Vnni)
    return for_simd_format<RowsFn>(type, [](auto t) -> RowsFn { return dot_avx512_vnni_i16_rows<decltype(t)::value>; });
#else
  (void)path, (void)type;
#endif
  return nullptr;
}

// v7: kGemvRows / tokens rows against `tokens` (1, 2 or 4) tokens (int8 activations, the VNNI path), or null.
RowsFn simd_rows(QuantPath path, DType type, int tokens) {
#if INFER_QUANT_X86
  if (path == QuantPath::Avx512Vnni)
    return for_simd_format<RowsFn>(type, [tokens](auto t) -> RowsFn {
      constexpr DType T = decltype(t)::value;
      return tokens == 4 ? dot_avx512_vnni_rows<T, 4> : tokens == 2 ? dot_avx512_vnni_rows<T, 2> : dot_avx512_vnni_rows<T, 1>;
    });
#else
  (void)path, (void)type, (void)tokens;
#endif
  return nullptr;
}

TileFn simd_tile(QuantPath path, DType type) {
#if INFER_QUANT_X86
  if (path == QuantPath::Avx512Vnni)
    return for_simd_format<TileFn>(type, [](auto t) -> TileFn { return dot_avx512_vnni_tile<decltype(t)::value>; });
#endif
  return nullptr;
}

// The int16 tile for the last `tokens` (2..7) tokens of a call, or null. (int8 runs v7 over 4, 2, 1 tokens.)
Tile16Fn simd_partial_tile16(QuantPath path, DType type, int tokens) {
#if INFER_QUANT_X86
  if (path != QuantPath::Avx512Vnni || tokens < 2 || tokens >= kTileTokens) return nullptr;
  return for_simd_format<Tile16Fn>(type, [tokens](auto t) -> Tile16Fn {
    constexpr DType T = decltype(t)::value;
    static constexpr Tile16Fn table[kTileTokens] = {nullptr,
                                                    nullptr,
                                                    dot_avx512_vnni_i16_tile<T, 2>,
                                                    dot_avx512_vnni_i16_tile<T, 3>,
                                                    dot_avx512_vnni_i16_tile<T, 4>,
                                                    dot_avx512_vnni_i16_tile<T, 5>,
                                                    dot_avx512_vnni_i16_tile<T, 6>,
                                                    dot_avx512_vnni_i16_tile<T, 7>};
    return table[tokens];
  });
#else
  (void)path, (void)type, (void)tokens;
  return nullptr;
#endif
}

// The dot function of a path for a format, or null where only the reference exists.
DotFn simd_dot(QuantPath path, DType type) {
#if INFER_QUANT_X86
  if (path == QuantPath::Avx2)
    return for_simd_format<DotFn>(type, [](auto t) -> DotFn { return dot_avx2_entry<decltype(t)::value>; });
  if (path == QuantPath::Avx512Vnni)
    return for_simd_format<DotFn>(type, [](auto t) -> DotFn { return dot_avx512_vnni<decltype(t)::value>; });
#endif
  return nullptr;
}

void check_matrix(const Matrix& weight, QuantPath path) {
  if (!quant_kernel_supports(weight.dtype)) fail("quantized matmul: {} weights are not a 32-weight block format", dtype_name(weight.dtype));
  if (weight.cols % kBlock != 0) fail("quantized matmul: {} columns are not a multiple of {}", weight.cols, kBlock);
  if (!quant_path_supported(path)) fail("quantized matmul: the {} path is not supported on this CPU", quant_path_name(path));
}

// Activations reused across calls on the calling thread (decode makes ~200 matmul calls per token).
QuantizedActivations& scratch_activations() {
  thread_local QuantizedActivations activations;
  return activations;
}

}  // namespace

std::string_view quant_path_name(QuantPath path) {
  switch (path) {
    case QuantPath::Reference: return "reference";
    case QuantPath::Avx2: return "v1_avx2";
    case QuantPath::Avx512Vnni: return "v2_avx512_vnni";
  }
  return "?";
}

std::string_view quant_path_name(QuantPath path, ActivationBits bits) {
  if (bits == ActivationBits::Int8) return quant_path_name(path);
  switch (path) {
    case QuantPath::Reference: return "reference_int16";
    case QuantPath::Avx2: return "v4_avx2_int16";
    case QuantPath::Avx512Vnni: return "v5_avx512_vnni_int16";
  }
  return "?";
}

#if INFER_QUANT_X86
// F16C (CPUID leaf 1, ECX bit 29), asked through CPUID: clang 14's __builtin_cpu_supports does not know "f16c".
// Asked once: in a virtual machine the CPUID instruction traps to the hypervisor (microseconds), and
// every matmul call checks its path (this check was 12% of a Q4_0 decode step before it was cached).
static bool cpu_has_f16c() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && ((ecx >> 29) & 1u) != 0;
  }();
  return has;
}
#endif

bool quant_path_supported(QuantPath path) {
  switch (path) {
    case QuantPath::Reference: return true;
#if INFER_QUANT_X86
    case QuantPath::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case QuantPath::Avx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") && cpu_has_f16c();
#else
    default: return false;
#endif
  }
  return false;
}

QuantPath best_quant_path() {
  static const QuantPath best = quant_path_supported(QuantPath::Avx512Vnni) ? QuantPath::Avx512Vnni
                                : quant_path_supported(QuantPath::Avx2)     ? QuantPath::Avx2
                                                                            : QuantPath::Reference;
  return best;
}

bool quant_kernel_supports(DType type) {
  return simd_format(type) || type == DType::Q5_0 || type == DType::Q5_1;
}

namespace {

// One token's row of activations quantized to `limit` (127 or 32767) steps per block side.
template <typename Int>
void quantize_token(const float* x, int blocks, float limit, Int* q, float* d_out, float* s_out, float* d_pairs,
                    uint8_t* hi = nullptr, uint8_t* hi_signed = nullptr, uint8_t* lo = nullptr, uint8_t* records = nullptr) {
  for (int b = 0; b < blocks; ++b) {
    const float* xb = x + size_t(b) * kBlock;
    Int* qb = q + size_t(b) * kBlock;
    float max_abs = 0.0f;
    for (int j = 0; j < kBlock; ++j) max_abs = std::max(max_abs, std::fabs(xb[j]));
    const float d = max_abs / limit;
    const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < kBlock; ++j) {
      // |x / d| <= limit up to rounding; clamp anyway so a rounding step can never pass it.
      const float scaled = std::min(limit, std::max(-limit, std::nearbyint(xb[j] * inverse_d)));
      qb[j] = Int(scaled);
      sum += qb[j];
    }
    if constexpr (sizeof(Int) == 2) {  // the byte planes of v5 / v6: x = 256 * (hi - 128) + lo
      for (int j = 0; j < kBlock; ++j) {
        hi[size_t(b) * kBlock + j] = uint8_t((int(qb[j]) >> 8) + 128);
        hi_signed[size_t(b) * kBlock + j] = uint8_t(int8_t(int(qb[j]) >> 8));
        lo[size_t(b) * kBlock + j] = uint8_t(int(qb[j]) & 255);
      }
      // v6's record of the block pair: hi at 0, lo at 64, this block's half at + 32 * (b % 2).
      uint8_t* record = records + size_t(b / 2) * QuantizedActivations::kRecordBytes;
      std::memcpy(record + (b % 2) * kBlock, hi + size_t(b) * kBlock, kBlock);
      std::memcpy(record + 64 + (b % 2) * kBlock, lo + size_t(b) * kBlock, kBlock);
      std::fill_n(reinterpret_cast<float*>(record + 128) + (b % 2) * 8, 8, d);
    }
    d_out[b] = d;
    if (d_pairs != nullptr) std::fill_n(d_pairs + (b / 2) * 16 + (b % 2) * 8, 8, d);
    s_out[b] = d * float(sum);
  }
}

#if INFER_QUANT_X86
// quantize_token's blocks with AVX-512: the same operations per element (max of |x| -- exact in any
// order --, d = max / limit, x * (1 / d) rounded to nearest even, clamped), so the same bytes; one
// token's quantization runs on one thread before every decode matmul (~1 us scalar for 576 columns).
// int16 also writes v5 / v6's byte planes and records, as quantize_token does.
template <typename Int>
INFER_TARGET_VNNI void quantize_token_avx512(const float* x, int blocks, Int* q, float* d_out, float* s_out, float* d_pairs,
                                             uint8_t* hi = nullptr, uint8_t* hi_signed = nullptr, uint8_t* lo = nullptr,
                                             uint8_t* records = nullptr) {
  constexpr float kLimit = sizeof(Int) == 1 ? 127.0f : 32767.0f;
  const __m512 limit = _mm512_set1_ps(kLimit), minus_limit = _mm512_set1_ps(-kLimit);
  for (int b = 0; b < blocks; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + size_t(b) * kBlock), v1 = _mm512_loadu_ps(x + size_t(b) * kBlock + 16);
    const float max_abs = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = max_abs / kLimit;
    const __m512 inverse_d = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_min_ps(limit, _mm512_max_ps(minus_limit, _mm512_roundscale_ps(_mm512_mul_ps(v0, inverse_d), kRound))));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_min_ps(limit, _mm512_max_ps(minus_limit, _mm512_roundscale_ps(_mm512_mul_ps(v1, inverse_d), kRound))));
    Int* qb = q + size_t(b) * kBlock;
    if constexpr (sizeof(Int) == 1) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb), _mm512_cvtepi32_epi8(i0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16), _mm512_cvtepi32_epi8(i1));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb), _mm512_cvtepi32_epi16(i0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb + 16), _mm512_cvtepi32_epi16(i1));
      const __m512i h0 = _mm512_srai_epi32(i0, 8), h1 = _mm512_srai_epi32(i1, 8);
      const __m512i offset = _mm512_set1_epi32(128), low_byte = _mm512_set1_epi32(255);
      uint8_t* hb = hi + size_t(b) * kBlock;
      uint8_t* sb = hi_signed + size_t(b) * kBlock;
      uint8_t* lb = lo + size_t(b) * kBlock;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hb), _mm512_cvtepi32_epi8(_mm512_add_epi32(h0, offset)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hb + 16), _mm512_cvtepi32_epi8(_mm512_add_epi32(h1, offset)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sb), _mm512_cvtepi32_epi8(h0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sb + 16), _mm512_cvtepi32_epi8(h1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lb), _mm512_cvtepi32_epi8(_mm512_and_si512(i0, low_byte)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lb + 16), _mm512_cvtepi32_epi8(_mm512_and_si512(i1, low_byte)));
      uint8_t* record = records + size_t(b / 2) * QuantizedActivations::kRecordBytes;
      std::memcpy(record + (b % 2) * kBlock, hb, kBlock);
      std::memcpy(record + 64 + (b % 2) * kBlock, lb, kBlock);
      std::fill_n(reinterpret_cast<float*>(record + 128) + (b % 2) * 8, 8, d);
    }
    const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    d_out[b] = d;
    std::fill_n(d_pairs + (b / 2) * 16 + (b % 2) * 8, 8, d);
    s_out[b] = d * float(sum);
  }
}
#endif

std::atomic<int> g_bits_override{0};  // 0: the per-format defaults

}  // namespace

void quantize_activations(const float* x, int n, int cols, QuantizedActivations& out, ActivationBits bits, int threads,
                          QuantPath path) {
  if (cols % kBlock != 0) fail("quantize_activations: {} columns are not a multiple of {}", cols, kBlock);
  if (!quant_path_supported(path)) fail("quantize_activations: the {} path is not supported on this CPU", quant_path_name(path));
  const int blocks = cols / kBlock;
  const bool wide = bits == ActivationBits::Int16;
  out.n = n;
  out.cols = cols;
  out.bits = bits;
  if (wide) {
    out.q16.resize(size_t(n) * cols);
    out.hi.resize(size_t(n) * cols);
    out.hi_signed.resize(size_t(n) * cols);
    const size_t record_bytes = size_t(n) * out.record_stride();
    out.records_storage.assign(record_bytes + 64, 0);
    const auto address = reinterpret_cast<uintptr_t>(out.records_storage.data());
    out.records = out.records_storage.data() + (64 - address % 64) % 64;
    out.lo.resize(size_t(n) * cols);
  } else {
    out.q.resize(size_t(n) * cols);
    out.q4_0_start.assign(size_t(n) * ((blocks + 1) / 2) * 16, 0);
    out.s_pairs.assign(size_t(n) * ((blocks + 1) / 2) * 16, 0.0f);
  }
  out.d_pairs.assign(size_t(n) * ((blocks + 1) / 2) * 16, 0.0f);
  out.d.resize(size_t(n) * blocks);
  out.s.resize(size_t(n) * blocks);
  const size_t tile_floats = size_t(blocks) * 8;
  const size_t tiles_bytes = ((size_t(n) + 7) / 8) * tile_floats * sizeof(float);
  out.s_tiles_storage.assign(tiles_bytes + 32, 0);
  const auto tiles_address = reinterpret_cast<uintptr_t>(out.s_tiles_storage.data());
  out.s_tiles = reinterpret_cast<float*>(out.s_tiles_storage.data() + (32 - tiles_address % 32) % 32);
  const int pair_floats = (blocks + 1) / 2 * 16;
  // Each token is independent: the bits do not depend on the split over threads.
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 1 && threads > 1)
  for (int t = 0; t < n; ++t) {
    const float* xt = x + size_t(t) * cols;
    float* d = out.d.data() + size_t(t) * blocks;
    float* s = out.s.data() + size_t(t) * blocks;
    float* s_tile = out.s_tiles + size_t(t / 8) * tile_floats + t % 8;
    if (wide) {
      if (path != QuantPath::Avx512Vnni) {
        quantize_token(xt, blocks, 32767.0f, out.q16.data() + size_t(t) * cols, d, s,
                       out.d_pairs.data() + size_t(t) * pair_floats, out.hi.data() + size_t(t) * cols,
                       out.hi_signed.data() + size_t(t) * cols, out.lo.data() + size_t(t) * cols,
                       out.records + size_t(t) * out.record_stride());
      } else {
#if INFER_QUANT_X86
        quantize_token_avx512<int16_t>(xt, blocks, out.q16.data() + size_t(t) * cols, d, s,
                                       out.d_pairs.data() + size_t(t) * pair_floats, out.hi.data() + size_t(t) * cols,
                                       out.hi_signed.data() + size_t(t) * cols, out.lo.data() + size_t(t) * cols,
                                       out.records + size_t(t) * out.record_stride());
#endif
      }
    } else {
#if INFER_QUANT_X86
      if (path == QuantPath::Avx512Vnni) {
        quantize_token_avx512(xt, blocks, out.q.data() + size_t(t) * cols, d, s, out.d_pairs.data() + size_t(t) * pair_floats);
      } else {
        quantize_token(xt, blocks, 127.0f, out.q.data() + size_t(t) * cols, d, s, out.d_pairs.data() + size_t(t) * pair_floats);
      }
#else
      quantize_token(xt, blocks, 127.0f, out.q.data() + size_t(t) * cols, d, s, out.d_pairs.data() + size_t(t) * pair_floats);
#endif
      const int8_t* q = out.q.data() + size_t(t) * cols;
      int32_t* start = out.q4_0_start.data() + size_t(t) * pair_floats;
      float* s_pairs = out.s_pairs.data() + size_t(t) * pair_floats;
      for (int b = 0; b < blocks; ++b) std::fill_n(s_pairs + (b / 2) * 16 + (b % 2) * 8, 8, s[b]);
      for (int b = 0; b < blocks; ++b)
        for (int j = 0; j < 8; ++j)
          start[(b / 2) * 16 + (b % 2) * 8 + j] = -8 * (q[b * kBlock + 4 * j] + q[b * kBlock + 4 * j + 1] +
                                                         q[b * kBlock + 4 * j + 2] + q[b * kBlock + 4 * j + 3]);
    }
    for (int b = 0; b < blocks; ++b) s_tile[size_t(b) * 8] = s[b];
  }
}

// Measured on SmolLM2-135M (ch07_quantization; the file header has the numbers and the trade).
ActivationBits default_activation_bits(DType type) {
  switch (type) {
    case DType::Q8_0: return ActivationBits::Int16;
    default: return ActivationBits::Int8;
  }
}

ActivationBits activation_bits(DType type) {
  const int forced = g_bits_override.load(std::memory_order_relaxed);
  return forced != 0 ? ActivationBits(forced) : default_activation_bits(type);
}

void override_activation_bits(std::optional<ActivationBits> bits) {
  g_bits_override.store(bits ? int(*bits) : 0, std::memory_order_relaxed);
}

float dot_quantized(QuantPath path, DType type, const void* row, const QuantizedActivations& x, int t) {
  const auto* bytes = static_cast<const uint8_t*>(row);
  const int n_blocks = x.cols / kBlock;
  if (x.bits == ActivationBits::Int16) {
    if (Dot16Fn fn = simd_dot16(path, type)) return fn(bytes, x, t, n_blocks);
    return dot_int16_reference(type, bytes, x.q16_row(t), x.d_row(t), x.s_row(t), n_blocks);
  }
  if (DotFn fn = simd_dot(path, type)) return fn(bytes, x, t, n_blocks);
  return dot_reference(type, bytes, x.q_row(t), x.d_row(t), x.s_row(t), n_blocks);
}

void gemv_quantized(const Matrix& weight, const float* x, float* y, int threads, QuantPath path) {
  gemm_quantized(weight, x, y, 1, threads, path);
}

void gemm_quantized(const Matrix& weight, const float* x, float* y, int n, int threads, QuantPath path) {
  gemm_quantized(weight, x, y, n, threads, path, activation_bits(weight.dtype));
}

void gemm_quantized(const Matrix& weight, const float* x, float* y, int n, int threads, QuantPath path,
                    ActivationBits bits) {
  const Matrix* weights[] = {&weight};
  float* outputs[] = {y};
  gemm_quantized_many(weights, x, outputs, n, threads, path, bits);
}

void gemm_quantized_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n,
                         int threads, QuantPath path) {
  if (weights.empty()) return;
  gemm_quantized_many(weights, x, ys, n, threads, path, activation_bits(weights[0]->dtype));
}

void gemm_quantized_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n,
                         int threads, QuantPath path, ActivationBits bits) {
  if (weights.size() != ys.size()) fail("quantized matmul: {} matrices but {} outputs", weights.size(), ys.size());
  if (weights.empty() || n <= 0) return;
  const Matrix& first = *weights[0];
  for (const Matrix* m : weights) {
    check_matrix(*m, path);
    if (m->dtype != first.dtype || m->cols != first.cols || m->interleaved != first.interleaved)
      fail("quantized matmul: matrices sharing one input must have one format and column count, and one layout ({} x {} {} vs {} {})",
           m->rows, m->cols, dtype_name(m->dtype), first.cols, dtype_name(first.dtype));
  }
  QuantizedActivations& activations = scratch_activations();
  quantize_activations(x, n, first.cols, activations, bits, threads, path);
  const QuantizedActivations& xq = activations;
  if (first.interleaved) {  // 16 rows interleaved (the CPU backend's default layout): v9
    gemm_interleaved_many(weights, xq, ys, threads, path);
    return;
  }
  const int n_blocks = first.cols / kBlock;
  const size_t row_bytes = dtype_row_bytes(first.dtype, first.cols);
  const DType type = first.dtype;
  const bool wide = bits == ActivationBits::Int16;
  const DotFn fn = wide ? nullptr : simd_dot(path, type);
  const Dot16Fn fn16 = wide ? simd_dot16(path, type) : nullptr;
  // v7: groups of rows against 4, 2 or 1 tokens where the path has it (int8 activations, VNNI).
  // int16: v8 over 8 rows for single tokens (2-7 tokens run the partial int16 tiles above it).
  const RowsFn rows_fns[5] = {nullptr, wide ? simd_rows16(path, type) : simd_rows(path, type, 1),
                              wide ? nullptr : simd_rows(path, type, 2), nullptr, wide ? nullptr : simd_rows(path, type, 4)};
  const TileFn tile = wide ? nullptr : simd_tile(path, type);
  const Tile16Fn tile16 = wide ? simd_tile16(path, type) : nullptr;
  const Tile16Fn partial16 = wide ? simd_partial_tile16(path, type, n % kTileTokens) : nullptr;  // last n % 8 tokens

  // The work is cut into units of rows (n == 1: kGemvRows rows; else kRowBlock rows, ~10-20 KB that
  // stay in L1/L2 while every token meets them), numbered across the matrices one after another, and
  // the units split over the threads in one parallel region (one region for Q, K and V, not three).
  constexpr int kRowBlock = 16;
  const int unit_rows = n == 1 ? kGemvRows : kRowBlock;
  constexpr int kMaxMatrices = 8;
  if (weights.size() > size_t(kMaxMatrices)) fail("quantized matmul: at most {} matrices per call", kMaxMatrices);
  int unit_start[kMaxMatrices + 1] = {0};
  for (size_t i = 0; i < weights.size(); ++i)
    unit_start[i + 1] = unit_start[i] + (weights[i]->rows + unit_rows - 1) / unit_rows;
  const int units = unit_start[weights.size()];

  // Rows [r0, r1) of matrix `m` for tokens [t_begin, n).
  auto run_unit = [&](int m, int r0, int r1) {
    const Matrix& weight = *weights[m];
    const int rows = weight.rows;
    const auto* w = static_cast<const uint8_t*>(weight.data);
    float* y = ys[m];
    auto dot = [&](int r, int t) {
      const uint8_t* row = w + size_t(r) * row_bytes;
      if (wide) {
        return fn16 ? fn16(row, xq, t, n_blocks)
                    : dot_int16_reference(type, row, xq.q16_row(t), xq.d_row(t), xq.s_row(t), n_blocks);
      }
      return fn ? fn(row, xq, t, n_blocks) : dot_reference(type, row, xq.q_row(t), xq.d_row(t), xq.s_row(t), n_blocks);
    };
    // With the VNNI path, groups of kTileTokens tokens share each row's unpacking (v3 / v6); the rest
    // of the tokens one at a time, v7 over whole groups of rows (never the matrix's last group: v7's
    // loads read past a Q4 pair), v2 / v5 for the others. All give every (token, row) the same bits.
    int t0 = 0;
    if (tile != nullptr || tile16 != nullptr) {
      for (; t0 + kTileTokens <= n; t0 += kTileTokens) {
        float out[kTileTokens];
        for (int r = r0; r < r1; ++r) {
          if (wide) {
            tile16(w + size_t(r) * row_bytes, xq, t0, n_blocks, out);
          } else {
            tile(w + size_t(r) * row_bytes, xq, t0, n_blocks, out);
          }
          for (int i = 0; i < kTileTokens; ++i) y[size_t(t0 + i) * rows + r] = out[i];
        }
      }
    }
    // 2..7 int16 tokens left: one narrower tile per row (the weights unpacked once for all of them).
    if (partial16 != nullptr && n - t0 == n % kTileTokens) {
      float out[kTileTokens];
      for (int r = r0; r < r1; ++r) {
        partial16(w + size_t(r) * row_bytes, xq, t0, n_blocks, out);
        for (int i = 0; i < n - t0; ++i) y[size_t(t0 + i) * rows + r] = out[i];
      }
      t0 = n;
    }
    // The rest 4, 2 or 1 tokens at a time: v7 over whole groups of rows (never the matrix's last group:
    // its loads read past a Q4 pair), one (row, token) at a time (v2 / v5 / reference) for the others.
    for (int t = t0; t < n;) {
      const int tokens = n - t >= 4 ? 4 : n - t >= 2 ? 2 : 1;
      int r = r0;
      if (const RowsFn rows_fn = rows_fns[tokens]) {
        const int group = kGemvRows / tokens;
        for (; r + group <= r1 && r + group < rows; r += group) {
          float out[kGemvRows];
          rows_fn(w + size_t(r) * row_bytes, row_bytes, xq, t, n_blocks, out);
          for (int g = 0; g < group; ++g)
            for (int i = 0; i < tokens; ++i) y[size_t(t + i) * rows + r + g] = out[g * tokens + i];
        }
      }
      for (; r < r1; ++r)
        for (int i = 0; i < tokens; ++i) y[size_t(t + i) * rows + r] = dot(r, t + i);
      t += tokens;
    }
  };
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int u = 0; u < units; ++u) {
    int m = 0;
    while (u >= unit_start[m + 1]) ++m;
    const int r0 = (u - unit_start[m]) * unit_rows;
    run_unit(m, r0, std::min(weights[m]->rows, r0 + unit_rows));
  }
}

}  // namespace infer::cpu
