// quant_dot_q8_0_cpu.cpp: the reference integer dot product of a Q8_0 weight row with int8
// activations (the ch07 lab's exercise 2). The SIMD paths of matmul_quant_cpu.cpp compute exactly
// this, 16 lanes at a time, so their results must equal it bit for bit.
//
// Inputs: `row` = n_blocks Q8_0 blocks of 34 bytes (d: f16 at bytes 0-1, q_w[32]: int8 at 2-33);
// q = n_blocks * 32 int8 activations, dx[b] their f32 scale per block (x_i ~ dx[b] * q[i]).
// The order (quant_kernels.h): for block b, lane j (0..7) is the exact integer
//   p_j = sum_{k<4} q_w[4j + k] * q[32b + 4j + k]
// and is accumulated as lanes[8 * (b % 2) + j] = fma(d_w * dx[b], float(p_j), lanes[...]);
// finally sum = 0 + lanes[0] + lanes[1] + ... + lanes[15], added in that order, plus 0 (Q8_0 has no min term).
#include "infer/cpu/quant_kernels.h"

#include <cmath>
#include <cstring>

namespace infer::cpu {

float dot_q8_0_reference(const uint8_t* row, const int8_t* q, const float* dx, int n_blocks) {
  float lanes[16] = {};
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* block = row + size_t(b) * 34;
    uint16_t d16;
    std::memcpy(&d16, block, 2);
    const float scale = fp16_to_fp32(d16) * dx[b];
    const auto* w = reinterpret_cast<const int8_t*>(block + 2);
    const int8_t* x = q + size_t(b) * 32;
    for (int j = 0; j < 8; ++j) {
      int32_t p = 0;
      for (int k = 0; k < 4; ++k) p += int32_t(w[4 * j + k]) * int32_t(x[4 * j + k]);
      float& lane = lanes[8 * (b % 2) + j];
      lane = std::fma(scale, float(p), lane);
    }
  }
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum + 0.0f;
}

}  // namespace infer::cpu
