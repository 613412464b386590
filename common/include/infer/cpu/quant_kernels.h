// quant_kernels.h: matrix products on block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) without
// dequantizing the matrix: the activations are quantized per block of 32 to int8 or int16 (one f32
// scale per block), each block's dot product is an integer sum, and only the block scales are floats.
//
// int8 activations: one summation order for every kernel and path (so a row's result never depends on
// the batch, the SIMD path chosen, or the thread count): for block b, lane j (0..7) holds the exact integer
// p_j = sum_{k<4} w[4j+k] * q[4j+k]; even blocks accumulate into lanes 0..7, odd blocks into lanes
// 8..15, acc[l] = fma(d_w * d_x, p, acc[l]); the 16 lanes are added in order starting from 0; the
// affine formats (Q4_1, Q5_1) then add min_even + min_odd, two chains min = fma(m_b, s_b, min) over the
// even and the odd blocks in block order (s_b = d_x * sum q; two chains halve the latency of one).
// AVX-512 VNNI puts two blocks in one zmm register (lanes 0..7 and 8..15), AVX2 one block in each
// of two ymm accumulators (even, odd): both are these 16 lanes. See matmul_quant_cpu.cpp.
//
// int16 activations (scale max/32767: 258x finer steps than int8) keep that order: p_j is the exact
// sum of 4 products w * q with |p_j| <= 4 * 127 * 32767 < 2^24, so float(p_j) is exact as well.
// AVX-512 VNNI splits each q into two bytes and runs vpdpbusd on each; AVX2 uses vpmaddwd + vphaddd.
//
// These kernels read matrices row-major, as the file stores them. A matrix stored with 16 rows interleaved
// (Matrix::interleaved, the CPU backend's default on AVX-512 VNNI) goes through gemm_quantized_many to
// interleaved_kernels.h, whose order is its own (the same activations, a block summed in integers first).
//
// Which precision a format runs (activation_bits): int16 for Q8_0, int8 for the others; the
// measurements behind the choice are in matmul_quant_cpu.cpp's header. GEMV and GEMM use the same
// precision for a format, so every (token, row) has the same bits whatever n.
#pragma once

#include "infer/model/backend.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace infer::cpu {

// The integer width of the quantized activations.
enum class ActivationBits { Int8 = 8, Int16 = 16 };

// n rows of `cols` activations (cols a multiple of 32), quantized per block of 32 to `bits`:
// int8:  d = max|x| / 127,   q = round(x / d) (ties to even) in [-127, 127];
// int16: d = max|x| / 32767, q = round(x / d) in [-32767, 32767] (in q16); s = d * sum(q).
struct QuantizedActivations {
  // records and s_tiles point into their storage: moving keeps them valid, a copy would not.
  QuantizedActivations() = default;
  QuantizedActivations(const QuantizedActivations&) = delete;
  QuantizedActivations& operator=(const QuantizedActivations&) = delete;
  QuantizedActivations(QuantizedActivations&&) = default;
  QuantizedActivations& operator=(QuantizedActivations&&) = default;
  int n = 0;
  int cols = 0;
  ActivationBits bits = ActivationBits::Int8;
  std::vector<int8_t> q;     // (n, cols), int8 only
  std::vector<int16_t> q16;  // (n, cols), int16 only
  std::vector<uint8_t> hi;   // (n, cols), int16 only: (q16 >> 8) + 128, the AVX-512 kernels' byte planes
  std::vector<uint8_t> lo;   // (n, cols), int16 only: q16 & 255 (q16 = 256 * (hi - 128) + lo)
  std::vector<uint8_t> hi_signed;  // (n, cols), int16 only: the int8 bits of q16 >> 8 (= hi - 128), for Q4_1
  // int16 only, for the GEMM tile (v6): per token, per pair of blocks, one 192-byte record
  // [hi of both blocks: 64][lo: 64][d_pairs: 16 floats], 64-byte aligned: one pointer per token
  // reaches everything a block pair needs (three arrays spilled the tile's pointer registers).
  std::vector<uint8_t> records_storage;
  uint8_t* records = nullptr;
  std::vector<float> d;   // (n, cols / 32)
  std::vector<float> s;   // (n, cols / 32)
  // d of blocks (2i, 2i+1) as 16 floats: 8 copies of each (an odd last block: 8 copies, 8 zeros),
  // the layout of the AVX-512 accumulators, so the GEMM tile loads a token's scales in one go.
  std::vector<float> d_pairs;  // (n, ceil(cols / 64) * 16)
  // int8 only: -8 * (sum of each lane's 4 activations), in d_pairs' layout: the AVX-512 kernels' start
  // for Q4_0, whose weights are nibble - 8.
  std::vector<int32_t> q4_0_start;  // (n, ceil(cols / 64) * 16)
  std::vector<float> s_pairs;       // int8 only: s in d_pairs' layout (the AVX-512 GEMV's Q4_1 min terms)
  const float* s_pairs_row(int t) const { return s_pairs.data() + size_t(t) * ((cols / 32 + 1) / 2) * 16; }
  const int32_t* q4_0_start_row(int t) const { return q4_0_start.data() + size_t(t) * ((cols / 32 + 1) / 2) * 16; }
  const int8_t* q_row(int t) const { return q.data() + size_t(t) * cols; }
  const int16_t* q16_row(int t) const { return q16.data() + size_t(t) * cols; }
  const uint8_t* hi_row(int t) const { return hi.data() + size_t(t) * cols; }
  const uint8_t* lo_row(int t) const { return lo.data() + size_t(t) * cols; }
  const uint8_t* hi_signed_row(int t) const { return hi_signed.data() + size_t(t) * cols; }
  // s of tokens 8i..8i+7 side by side per block (the GEMM tiles' min terms), 32-byte aligned.
  std::vector<uint8_t> s_tiles_storage;
  float* s_tiles = nullptr;  // (ceil(n / 8), cols / 32, 8)
  const float* s_tile(int t0) const { return s_tiles + size_t(t0 / 8) * size_t(cols / 32) * 8; }
  static constexpr size_t kRecordBytes = 192;
  size_t record_stride() const { return size_t((cols / 32 + 1) / 2) * kRecordBytes; }
  const uint8_t* record_row(int t) const { return records + size_t(t) * record_stride(); }
  const float* d_row(int t) const { return d.data() + size_t(t) * (cols / 32); }
  const float* s_row(int t) const { return s.data() + size_t(t) * (cols / 32); }
  const float* d_pairs_row(int t) const { return d_pairs.data() + size_t(t) * ((cols / 32 + 1) / 2) * 16; }
};

// The code paths of the integer dot product. Reference is plain C++ (every CPU); Avx2 uses
// vpmaddubsw/vpmaddwd; Avx512Vnni uses vpdpbusd on 512-bit registers. All give the same bits.
// With int16 activations: Avx2 uses vpmaddwd, Avx512Vnni vpdpbusd on byte planes (quant_path_name(path, bits)).
enum class QuantPath { Reference, Avx2, Avx512Vnni };
std::string_view quant_path_name(QuantPath path);
std::string_view quant_path_name(QuantPath path, ActivationBits bits);

// Tokens are split over `threads` when there are several (prefill); one token is quantized by the
// caller. `path` Avx512Vnni quantizes int8 blocks with AVX-512 (the same bytes as the plain loop).
void quantize_activations(const float* x, int n, int cols, QuantizedActivations& out,
                          ActivationBits bits = ActivationBits::Int8, int threads = 1,
                          QuantPath path = QuantPath::Reference);
bool quant_path_supported(QuantPath path);  // CPUID (and whether this build compiled the path)
QuantPath best_quant_path();                // the fastest supported one, detected once

// Weight formats the integer kernels take (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1). The SIMD paths cover
// Q8_0, Q4_0 and Q4_1; Q5_0 and Q5_1 always run the reference.
bool quant_kernel_supports(DType type);

// The activation precision a format's matmul runs: the measured default (default_activation_bits), or
// the override set for all formats (ch07's --activations and the benchmarks compare the two).
ActivationBits default_activation_bits(DType type);
ActivationBits activation_bits(DType type);
void override_activation_bits(std::optional<ActivationBits> bits);  // nullopt: back to the defaults

// The plain reference for Q8_0 (quant_dot_q8_0_cpu.cpp; the ch07 lab's exercise 2): row = n_blocks
// Q8_0 blocks, q / dx = one token's int8 activations and block scales. The Reference path runs it.
float dot_q8_0_reference(const uint8_t* row, const int8_t* q, const float* dx, int n_blocks);

// The plain reference with int16 activations, any 32-weight block format (the 16-lane order above).
float dot_int16_reference(DType type, const uint8_t* row, const int16_t* q, const float* dx, const float* s, int n_blocks);

// Dot product of one weight row (cols / 32 blocks of `type`) with activation row t of `x` (x.bits).
float dot_quantized(QuantPath path, DType type, const void* row, const QuantizedActivations& x, int t);

// y (n, W.rows) = x (n, W.cols) . W^T. x is quantized once per call (per token row), then each
// thread takes a range of weight rows. gemv (n == 1) and gemm (any n) call the same dot for every
// (token, row), so each output is bit-identical however many tokens share the call; gemm walks the
// weights in blocks of rows and reuses each block (from cache) for every token.
// Without `bits`: activation_bits(weight.dtype).
void gemv_quantized(const Matrix& weight, const float* x, float* y, int threads, QuantPath path);
void gemm_quantized(const Matrix& weight, const float* x, float* y, int n, int threads, QuantPath path);
void gemm_quantized(const Matrix& weight, const float* x, float* y, int n, int threads, QuantPath path,
                    ActivationBits bits);
// ys[i] (n, weights[i]->rows) = x . weights[i]^T for several matrices that read the same x (Q, K and V;
// gate and up): x is quantized once and all their rows are split over the threads in one parallel
// region; each output has gemm_quantized's bits. The matrices must share one format and column count
// (infer::Error otherwise); at most 8.
void gemm_quantized_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n,
                         int threads, QuantPath path);
void gemm_quantized_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n,
                         int threads, QuantPath path, ActivationBits bits);

}  // namespace infer::cpu
