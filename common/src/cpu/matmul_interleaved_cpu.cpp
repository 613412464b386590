// matmul_interleaved_cpu.cpp: y = x . W^T on interleaved weights (infer/core/interleaved.h), the order
// of interleaved_kernels.h.
//
// Versions (each gives the reference's bits; tests/test_matmul_interleaved.cpp checks every shape):
//   reference:  plain C++, one (row, token) at a time: the block's 32 products summed in an int32, then
//               two float operations (three for Q4_1).
//   v9_avx512_vnni_interleaved: R groups of 16 rows x T tokens per call. Lane r of a register is row r:
//               each 4-byte activation column is broadcast once and feeds 16 rows through one vpdpbusd,
//               the block's sum ends in its lane, and the float work per block and 16 rows is one
//               convert, one multiply and one fma (the row-major tiles spend that on 2 blocks of one
//               row). The weights are the unsigned operand: Q8_0's bytes + 128 (xor 0x80; the token's
//               start value -128 * sum q undoes it), Q4's nibbles as they are (Q4_0's "- 8": a start of
//               -8 * sum q). int16 activations: two accumulators, one per byte plane (hi signed, lo
//               unsigned with the weights as the signed operand), p = hi * 256 + lo.
//               GEMM: R = 2, T = 6 (int8) / 4 (int16); GEMV: R = 2, T = 1.
//               Measured in ch07_quantization/README.md (prefill and decode tok/s per format).
#include "infer/cpu/interleaved_kernels.h"

#include "infer/core/error.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define INFER_INTERLEAVED_X86 1
// GCC 12: false -Wmaybe-uninitialized from the 512-bit intrinsics (as in matmul_quant_cpu.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#else
#define INFER_INTERLEAVED_X86 0
#endif

namespace infer::cpu {

namespace {

constexpr int kBlock = 32;

// Weight k (0..31) of row r in block record qs, as the integer w_k of the order.
int weight_at(DType type, const uint8_t* qs, int r, int k) {
  if (type == DType::Q8_0) return int8_t(qs[64 * (k / 4) + 4 * r + k % 4]);
  const int kk = k % 16;
  const uint8_t byte = qs[64 * (kk / 4) + 4 * r + kk % 4];
  const int nibble = k < 16 ? byte & 15 : byte >> 4;
  return type == DType::Q4_0 ? nibble - 8 : nibble;
}

// The per-(token, block) integer start values of the SIMD tiles (see the file header).
//   int8:  start = -c * sum q           (c: 128 for Q8_0, 8 for Q4_0, 0 for Q4_1)
//   int16: start_hi = -128 * sum hi (Q8_0), start_lo = -8 * sum q (Q4_0), else 0.
struct Starts {
  std::vector<int32_t> hi;  // int16 only
  std::vector<int32_t> lo;  // the int8 start, or int16's lo plane start
};

void compute_starts(DType type, const QuantizedActivations& x, Starts& out) {
  const int blocks = x.cols / kBlock;
  const bool wide = x.bits == ActivationBits::Int16;
  out.lo.assign(size_t(x.n) * blocks, 0);
  out.hi.assign(wide ? size_t(x.n) * blocks : 0, 0);
  if (type == DType::Q4_1) return;
  for (int t = 0; t < x.n; ++t) {
    for (int b = 0; b < blocks; ++b) {
      int32_t sum = 0, sum_hi = 0;
      if (wide) {
        const int16_t* q = x.q16_row(t) + size_t(b) * kBlock;
        const uint8_t* hi = x.hi_signed_row(t) + size_t(b) * kBlock;
        for (int k = 0; k < kBlock; ++k) {
          sum += q[k];
          sum_hi += int8_t(hi[k]);
        }
        if (type == DType::Q8_0) out.hi[size_t(t) * blocks + b] = -128 * sum_hi;
        if (type == DType::Q4_0) out.lo[size_t(t) * blocks + b] = -8 * sum;
      } else {
        const int8_t* q = x.q_row(t) + size_t(b) * kBlock;
        for (int k = 0; k < kBlock; ++k) sum += q[k];
        out.lo[size_t(t) * blocks + b] = (type == DType::Q8_0 ? -128 : -8) * sum;
      }
    }
  }
}

#if INFER_INTERLEAVED_X86
#define INFER_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma,f16c")))

// What a tile reads of the activations: token t's int8 row (or its two byte planes), its block scales,
// Q4_1's s and the start values.
struct TileActs {
  const int8_t* q;       // int8: (n, cols)
  const uint8_t* hi;     // int16: (n, cols), signed bytes q16 >> 8
  const uint8_t* lo;     // int16: (n, cols), q16 & 255
  const float* d;        // (n, blocks)
  const float* s;        // (n, blocks)
  const int32_t* start_hi;
  const int32_t* start_lo;
  int cols;
  int blocks;
};

constexpr int kAheadGroups = 2;  // the GEMV's prefetch distance

INFER_TARGET_VNNI inline __m512i broadcast_column(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// v9: rows [16 * R) of the R groups at `group` (stride group_bytes) x tokens [t0, t0 + T); y (n, ld),
// out_rows valid rows from the first group's row 0 (the rest are padding and not stored).
template <DType kType, bool kWide, int R, int T>
INFER_TARGET_VNNI void tile_v9(const uint8_t* group, const InterleavedShape& shape, const TileActs& a, int t0,
                               float* y, int ld, int row0, int out_rows) {
  constexpr int kColumns = kType == DType::Q8_0 ? 8 : 4;  // 64-byte qs vectors per block
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i nibble_mask = _mm512_set1_epi8(15);
  const __m512i sign_flip = _mm512_set1_epi8(char(0x80));
  for (int b = 0; b < shape.blocks; ++b) {
    __m512i lo_sum[R][T];
    __m512i hi_sum[kWide ? R : 1][kWide ? T : 1];
    for (int t = 0; t < T; ++t) {
      const size_t tb = size_t(t0 + t) * a.blocks + b;
      const __m512i start_lo = _mm512_set1_epi32(a.start_lo[tb]);
      for (int r = 0; r < R; ++r) lo_sum[r][t] = start_lo;
      if constexpr (kWide) {
        const __m512i start_hi = _mm512_set1_epi32(a.start_hi[tb]);
        for (int r = 0; r < R; ++r) hi_sum[r][t] = start_hi;
      }
    }
    for (int j = 0; j < kColumns; ++j) {
      __m512i w[R][2];  // Q8_0: [unsigned (+128), signed]; Q4: [quad j, quad j + 4]
      for (int r = 0; r < R; ++r) {
        const uint8_t* line = group + size_t(r) * shape.group_bytes + size_t(b) * shape.qs_bytes + 64 * j;
        // Decode streams the weights from memory: the same line kAheadGroups groups on, as v7 does 32 rows on.
        if constexpr (T == 1) _mm_prefetch(reinterpret_cast<const char*>(line + kAheadGroups * shape.group_bytes), _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(line);
        if constexpr (kType == DType::Q8_0) {
          w[r][0] = _mm512_xor_si512(v, sign_flip);
          w[r][1] = v;
        } else {
          w[r][0] = _mm512_and_si512(v, nibble_mask);
          w[r][1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble_mask);
        }
      }
      for (int t = 0; t < T; ++t) {
        const size_t at = size_t(t0 + t) * a.cols + size_t(b) * kBlock;
        if constexpr (kType == DType::Q8_0) {
          if constexpr (kWide) {
            const __m512i h = broadcast_column(a.hi + at + 4 * j), l = broadcast_column(a.lo + at + 4 * j);
            for (int r = 0; r < R; ++r) {
              hi_sum[r][t] = _mm512_dpbusd_epi32(hi_sum[r][t], w[r][0], h);
              lo_sum[r][t] = _mm512_dpbusd_epi32(lo_sum[r][t], l, w[r][1]);
            }
          } else {
            const __m512i x = broadcast_column(a.q + at + 4 * j);
            for (int r = 0; r < R; ++r) lo_sum[r][t] = _mm512_dpbusd_epi32(lo_sum[r][t], w[r][0], x);
          }
        } else {
          if constexpr (kWide) {
            const __m512i h0 = broadcast_column(a.hi + at + 4 * j), l0 = broadcast_column(a.lo + at + 4 * j);
            const __m512i h1 = broadcast_column(a.hi + at + 16 + 4 * j), l1 = broadcast_column(a.lo + at + 16 + 4 * j);
            for (int r = 0; r < R; ++r) {
              hi_sum[r][t] = _mm512_dpbusd_epi32(hi_sum[r][t], w[r][0], h0);
              lo_sum[r][t] = _mm512_dpbusd_epi32(lo_sum[r][t], l0, w[r][0]);
              hi_sum[r][t] = _mm512_dpbusd_epi32(hi_sum[r][t], w[r][1], h1);
              lo_sum[r][t] = _mm512_dpbusd_epi32(lo_sum[r][t], l1, w[r][1]);
            }
          } else {
            const __m512i x0 = broadcast_column(a.q + at + 4 * j), x1 = broadcast_column(a.q + at + 16 + 4 * j);
            for (int r = 0; r < R; ++r) {
              lo_sum[r][t] = _mm512_dpbusd_epi32(lo_sum[r][t], w[r][0], x0);
              lo_sum[r][t] = _mm512_dpbusd_epi32(lo_sum[r][t], w[r][1], x1);
            }
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* g = group + size_t(r) * shape.group_bytes;
      if constexpr (T == 1) _mm_prefetch(reinterpret_cast<const char*>(g + kAheadGroups * shape.group_bytes + shape.d_offset + size_t(b) * 32), _MM_HINT_T0);
      if constexpr (T == 1 && kType == DType::Q4_1)
        _mm_prefetch(reinterpret_cast<const char*>(g + kAheadGroups * shape.group_bytes + shape.m_offset + size_t(b) * 32), _MM_HINT_T0);
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + shape.d_offset + size_t(b) * 32)));
      __m512 mw = _mm512_setzero_ps();
      if constexpr (kType == DType::Q4_1)
        mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + shape.m_offset + size_t(b) * 32)));
      for (int t = 0; t < T; ++t) {
        const size_t tb = size_t(t0 + t) * a.blocks + b;
        __m512i p = lo_sum[r][t];
        if constexpr (kWide) p = _mm512_add_epi32(_mm512_slli_epi32(hi_sum[r][t], 8), p);
        const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d[tb]));
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[r][t]);
        if constexpr (kType == DType::Q4_1) acc[r][t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s[tb]), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const int valid = std::min(16, out_rows - 16 * r);
    if (valid <= 0) break;
    const __mmask16 mask = valid == 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + size_t(t0 + t) * ld + row0 + 16 * r, mask, acc[r][t]);
  }
}

using TileFn = void (*)(const uint8_t*, const InterleavedShape&, const TileActs&, int, float*, int, int, int);
constexpr int kMaxTokens = 6;

template <DType kType, bool kWide, int R>
TileFn tile_for(int tokens) {
  switch (tokens) {
    case 1: return tile_v9<kType, kWide, R, 1>;
    case 2: return tile_v9<kType, kWide, R, 2>;
    case 3: return tile_v9<kType, kWide, R, 3>;
    case 4: return tile_v9<kType, kWide, R, 4>;
    case 5: return kWide ? nullptr : tile_v9<kType, kWide, R, 5>;
    case 6: return kWide ? nullptr : tile_v9<kType, kWide, R, 6>;
    default: return nullptr;
  }
}

TileFn select_tile(DType type, bool wide, int row_groups, int tokens) {
  auto pick = [&]<DType kType>() -> TileFn {
    if (wide) return row_groups == 2 ? tile_for<kType, true, 2>(tokens) : tile_for<kType, true, 1>(tokens);
    return row_groups == 2 ? tile_for<kType, false, 2>(tokens) : tile_for<kType, false, 1>(tokens);
  };
  switch (type) {
    case DType::Q8_0: return pick.template operator()<DType::Q8_0>();
    case DType::Q4_0: return pick.template operator()<DType::Q4_0>();
    case DType::Q4_1: return pick.template operator()<DType::Q4_1>();
    default: return nullptr;
  }
}
#endif

}  // namespace

float dot_interleaved_reference(const InterleavedShape& shape, const void* data, int row, const QuantizedActivations& x,
                                int t) {
  const auto* group = static_cast<const uint8_t*>(data) + size_t(row / kInterleaveRows) * shape.group_bytes;
  const int r = row % kInterleaveRows;
  const bool wide = x.bits == ActivationBits::Int16;
  float acc = 0.0f;
  for (int b = 0; b < shape.blocks; ++b) {
    const uint8_t* qs = group + size_t(b) * shape.qs_bytes;
    int32_t p = 0;
    for (int k = 0; k < kBlock; ++k) {
      const int q = wide ? x.q16_row(t)[size_t(b) * kBlock + k] : x.q_row(t)[size_t(b) * kBlock + k];
      p += weight_at(shape.type, qs, r, k) * q;
    }
    const float d = fp16_at(group + shape.d_offset + size_t(b) * 32 + 2 * r);
    acc = std::fma(float(p), d * x.d_row(t)[b], acc);
    if (shape.type == DType::Q4_1) acc = std::fma(fp16_at(group + shape.m_offset + size_t(b) * 32 + 2 * r), x.s_row(t)[b], acc);
  }
  return acc;
}

void gemm_interleaved_many(std::span<const Matrix* const> weights, const QuantizedActivations& x,
                           std::span<float* const> ys, int threads, QuantPath path) {
  if (weights.size() != ys.size()) fail("interleaved matmul: {} matrices but {} outputs", weights.size(), ys.size());
  if (weights.empty() || x.n <= 0) return;
  const DType type = weights[0]->dtype;
  for (const Matrix* m : weights) {
    if (!m->interleaved || m->dtype != type || m->cols != x.cols)
      fail("interleaved matmul: every matrix must be interleaved {} with {} columns ({} x {} {}{})", dtype_name(type), x.cols,
           m->rows, m->cols, dtype_name(m->dtype), m->interleaved ? "" : ", row-major");
  }
  const int n = x.n;
  const bool wide = x.bits == ActivationBits::Int16;
  constexpr int kUnitGroups = 2;  // row groups per unit of work (32 rows)
  constexpr int kMaxMatrices = 8;
  if (weights.size() > size_t(kMaxMatrices)) fail("interleaved matmul: at most {} matrices per call", kMaxMatrices);
  InterleavedShape shapes[kMaxMatrices];
  int unit_start[kMaxMatrices + 1] = {0};
  for (size_t i = 0; i < weights.size(); ++i) {
    shapes[i] = interleaved_shape(type, weights[i]->rows, weights[i]->cols);
    unit_start[i + 1] = unit_start[i] + (shapes[i].groups + kUnitGroups - 1) / kUnitGroups;
  }
  const int units = unit_start[weights.size()];

#if INFER_INTERLEAVED_X86
  if (path == QuantPath::Avx512Vnni) {
    thread_local Starts starts;
    compute_starts(type, x, starts);
    const TileActs acts{x.q.empty() ? nullptr : x.q.data(),
                        wide ? x.hi_signed.data() : nullptr,
                        wide ? x.lo.data() : nullptr,
                        x.d.data(),
                        x.s.data(),
                        wide ? starts.hi.data() : nullptr,
                        starts.lo.data(),
                        x.cols,
                        x.cols / kBlock};
    const int tile_tokens = n == 1 ? 1 : wide ? 4 : kMaxTokens;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int u = 0; u < units; ++u) {
      int m = 0;
      while (u >= unit_start[m + 1]) ++m;
      const InterleavedShape& shape = shapes[m];
      const int g0 = (u - unit_start[m]) * kUnitGroups;
      const int groups = std::min(kUnitGroups, shape.groups - g0);
      const uint8_t* group = static_cast<const uint8_t*>(weights[m]->data) + size_t(g0) * shape.group_bytes;
      const int row0 = g0 * kInterleaveRows;
      const int out_rows = std::min(shape.rows - row0, groups * kInterleaveRows);
      for (int t0 = 0; t0 < n; t0 += tile_tokens) {
        const int tokens = std::min(tile_tokens, n - t0);
        select_tile(type, wide, groups, tokens)(group, shape, acts, t0, ys[m], shape.rows, row0, out_rows);
      }
    }
    return;
  }
#endif
  (void)path;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int u = 0; u < units; ++u) {
    int m = 0;
    while (u >= unit_start[m + 1]) ++m;
    const InterleavedShape& shape = shapes[m];
    const int row0 = (u - unit_start[m]) * kUnitGroups * kInterleaveRows;
    const int row1 = std::min(shape.rows, row0 + kUnitGroups * kInterleaveRows);
    for (int t = 0; t < n; ++t)
      for (int r = row0; r < row1; ++r)
        ys[m][size_t(t) * shape.rows + r] = dot_interleaved_reference(shape, weights[m]->data, r, x, t);
  }
}

}  // namespace infer::cpu
