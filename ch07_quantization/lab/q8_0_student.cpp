// q8_0_student.cpp: ch07 lab, exercise 1: store float weights as Q8_0 blocks and read them back.
//
// Built only with -DLAB=ch07 (scripts/lab.sh ch07), where it replaces common/src/core/q8_0_codec.cpp.
// The whole engine then uses your functions: quantize_row / dequantize_row (dtype.h) call them for
// every Q8_0 tensor, so `--weights q8_0`, --save-gguf and the embedding lookup of a Q8_0 model run on them.
// Read ch07_quantization/lab/README.md first (it draws the block byte by byte).
//
// ---- The format -------------------------------------------------------------------------------------
// A block holds 32 weights in 34 bytes, blocks back to back, little-endian:
//     bytes 0-1   d     the block's scale, an IEEE fp16   (fp32_to_fp16 / fp16_to_fp32 in dtype.h)
//     bytes 2-33  q[32] one int8 per weight                weight j = d * q[j]
//
// ---- What to implement --------------------------------------------------------------------------------
// quantize_row_q8_0: for each block of 32 floats
//   1. d = max_j |x_j| / 127 (the largest weight must map to +127 or -127);
//   2. store d as fp16 in bytes 0-1 (use std::memcpy: a block is only 2-byte aligned in a file);
//   3. q_j = round(x_j / d) (std::round: halves away from zero), clamped to [-127, 127]; when d == 0
//      (an all-zero block) every q_j is 0. Multiply by 1/d computed once, as the reference does:
//      the tests compare your bytes with the GGUF reference quantizer's.
// dequantize_row_q8_0: x_j = d * q_j with d read back from the fp16 in the block (not recomputed).
#include "infer/core/dtype_blocks.h"

#include "infer/core/dtype.h"

#include <cmath>
#include <cstring>

namespace infer {

void quantize_row_q8_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  // TODO(student): n_blocks blocks of 32 floats from src -> n_blocks blocks of 34 bytes at dst.
  std::memset(dst, 0, size_t(n_blocks) * 34);
}

void dequantize_row_q8_0(const uint8_t* src, float* dst, int64_t n_blocks) {
  // TODO(student): n_blocks blocks of 34 bytes -> n_blocks * 32 floats.
  std::memset(dst, 0, size_t(n_blocks) * 32 * sizeof(float));
}

}  // namespace infer
