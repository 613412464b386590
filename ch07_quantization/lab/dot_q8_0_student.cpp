// dot_q8_0_student.cpp: ch07 lab, exercise 2: the dot product of a Q8_0 weight row with int8
// activations, in integers.
//
// Built only with -DLAB=ch07 (scripts/lab.sh ch07), where it replaces common/src/cpu/quant_dot_q8_0_cpu.cpp.
// The engine's Reference path (cpu::QuantPath::Reference, what a CPU without AVX2 runs) calls it for
// every Q8_0 matrix; the tests compare it with the AVX2 / AVX-512 VNNI kernels, which must agree bit for bit.
//
// ---- Inputs -------------------------------------------------------------------------------------------
// row:  n_blocks Q8_0 weight blocks of 34 bytes (d_w: fp16 in bytes 0-1, w[32]: int8 in bytes 2-33)
// q:    n_blocks * 32 int8 activations; dx[b] the float scale of activation block b (x_i ~ dx[b] * q[i])
// Result: sum over blocks b of d_w(b) * dx[b] * sum_i w[i] * q[32b + i], which approximates W_row . x.
//
// ---- The order (so that your float result is the SIMD kernels' to the last bit) ----------------------
// Keep 16 float lanes, all 0. For block b, scale = d_w * dx[b] (one float product), and for j = 0..7:
//     p_j = w[4j]*q[4j] + w[4j+1]*q[4j+1] + w[4j+2]*q[4j+2] + w[4j+3]*q[4j+3]   (int32: exact)
//     lanes[8 * (b % 2) + j] = std::fma(scale, float(p_j), lanes[8 * (b % 2) + j])
// (even blocks use lanes 0-7, odd blocks lanes 8-15: two blocks fill one 512-bit register). Return
// 0 + lanes[0] + lanes[1] + ... + lanes[15], added left to right.
#include "infer/cpu/quant_kernels.h"

#include <cmath>
#include <cstring>

namespace infer::cpu {

float dot_q8_0_reference(const uint8_t* row, const int8_t* q, const float* dx, int n_blocks) {
  // TODO(student): the integer dot product described above.
  return 0.0f;
}

}  // namespace infer::cpu
