// quant_kernels.h: matrix products on block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) without
// dequantizing the matrix: the activations are quantized per block of 32 to int8 (one f32 scale per
// block), each block's dot product is an integer sum, and only the block scales are floats.
//
// One summation order for every kernel and path (so a row's result never depends on the batch, the
// SIMD path chosen, or the thread count): for block b, lane j (0..7) holds the exact integer
// p_j = sum_{k<4} w[4j+k] * q[4j+k]; even blocks accumulate into lanes 0..7, odd blocks into lanes
// 8..15, acc[l] = fma(d_w * d_x, p, acc[l]); the 16 lanes are added in order starting from 0; the
// affine formats (Q4_1, Q5_1) add sum_b m_b * s_b (s_b = d_x * sum q, in block order) at the end.
// AVX-512 VNNI puts two blocks in one zmm register (lanes 0..7 and 8..15), AVX2 one block in each
// of two ymm accumulators (even, odd): both are these 16 lanes. See matmul_quant_cpu.cpp.
#pragma once

#include "infer/model/backend.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace infer::cpu {

// n rows of `cols` activations (cols a multiple of 32), quantized per block of 32:
// d = max|x| / 127, q = round(x / d) (ties to even) in [-127, 127], s = d * sum(q).
struct QuantizedActivations {
  int n = 0;
  int cols = 0;
  std::vector<int8_t> q;  // (n, cols)
  std::vector<float> d;   // (n, cols / 32)
  std::vector<float> s;   // (n, cols / 32)
  // d of blocks (2i, 2i+1) as 16 floats: 8 copies of each (an odd last block: 8 copies, 8 zeros),
  // the layout of the AVX-512 accumulators, so the GEMM tile loads a token's scales in one go.
  std::vector<float> d_pairs;  // (n, ceil(cols / 64) * 16)
  const int8_t* q_row(int t) const { return q.data() + size_t(t) * cols; }
  const float* d_row(int t) const { return d.data() + size_t(t) * (cols / 32); }
  const float* s_row(int t) const { return s.data() + size_t(t) * (cols / 32); }
  const float* d_pairs_row(int t) const { return d_pairs.data() + size_t(t) * ((cols / 32 + 1) / 2) * 16; }
};
void quantize_activations(const float* x, int n, int cols, QuantizedActivations& out);

// The code paths of the integer dot product. Reference is plain C++ (every CPU); Avx2 uses
// vpmaddubsw/vpmaddwd; Avx512Vnni uses vpdpbusd on 512-bit registers. All give the same bits.
enum class QuantPath { Reference, Avx2, Avx512Vnni };
std::string_view quant_path_name(QuantPath path);
bool quant_path_supported(QuantPath path);  // CPUID (and whether this build compiled the path)
QuantPath best_quant_path();                // the fastest supported one, detected once

// Weight formats the integer kernels take (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1). The SIMD paths cover
// Q8_0, Q4_0 and Q4_1; Q5_0 and Q5_1 always run the reference.
bool quant_kernel_supports(DType type);

// The plain reference for Q8_0 (quant_dot_q8_0_cpu.cpp; the ch07 lab's exercise 2): row = n_blocks
// Q8_0 blocks, q / dx = one token's int8 activations and block scales. The Reference path runs it.
float dot_q8_0_reference(const uint8_t* row, const int8_t* q, const float* dx, int n_blocks);

// Dot product of one weight row (cols / 32 blocks of `type`) with activation row t of `x`.
float dot_quantized(QuantPath path, DType type, const void* row, const QuantizedActivations& x, int t);

// y (n, W.rows) = x (n, W.cols) . W^T. x is quantized once per call (per token row), then each
// thread takes a range of weight rows. gemv (n == 1) and gemm (any n) call the same dot for every
// (token, row), so each output is bit-identical however many tokens share the call; gemm walks the
// weights in blocks of rows and reuses each block (from cache) for every token.
void gemv_quantized(const Matrix& weight, const float* x, float* y, int threads, QuantPath path);
void gemm_quantized(const Matrix& weight, const float* x, float* y, int n, int threads, QuantPath path);

}  // namespace infer::cpu
