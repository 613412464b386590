// interleaved_kernels.h: integer matrix products on interleaved weights (infer/core/interleaved.h).
//
// The activations are quantized exactly as for the row-major kernels (quant_kernels.h: int8 or int16
// per block of 32, the format's activation_bits). The order every path computes, for weight row r and
// token t, blocks b in order from acc = 0:
//   p_b = sum over the block's 32 weights of w_k * q_k, exact in int32 (w_k: Q8_0's int8, Q4_0's
//         nibble - 8, Q4_1's nibble; q_k: the token's int8 or int16 activation);
//   acc = fma(float(p_b), d_w * d_x, acc)   (d_w * d_x rounded to float);
//   Q4_1: acc = fma(m_b, s_b, acc)          (s_b = d_x * sum q, QuantizedActivations::s);
//   y[t][r] = acc.
// This is not the row-major kernels' 16-lane order (a block's sum here is finished in integers before
// it is scaled), so a matrix gives slightly different bits in the two layouts; but every path, tile
// shape and thread count of this layout gives the same bits, so a token's outputs do not depend on the
// batch it runs in. Paths: QuantPath::Avx512Vnni runs the AVX-512 VNNI tiles; every other path runs
// the plain reference (no AVX2 tile is written yet: an AVX2-only CPU runs the reference, correct but
// slow; such a CPU should load the weights row-major, --weight-layout rows).
#pragma once

#include "infer/core/interleaved.h"
#include "infer/cpu/quant_kernels.h"

#include <span>

namespace infer::cpu {

// One output of the order above (the plain reference): weight row `row`, token t of x.
float dot_interleaved_reference(const InterleavedShape& shape, const void* data, int row, const QuantizedActivations& x,
                                int t);

// ys[i] (x.n, rows_i) = x . W_i^T for interleaved matrices sharing x's columns and format.
void gemm_interleaved_many(std::span<const Matrix* const> weights, const QuantizedActivations& x,
                           std::span<float* const> ys, int threads, QuantPath path);

}  // namespace infer::cpu
