// q8_0_codec.cpp: the Q8_0 block format, the simplest GGUF quantization (the ch07 lab's exercise 1).
//
// A block stores 32 weights in 34 bytes:  bytes 0-1: d (IEEE fp16)  |  bytes 2-33: q[0..31] (int8)
// and weight j is x_j = d * q_j. Quantizing picks d = max_j |x_j| / 127, so the largest weight maps to
// +-127, and q_j = round(x_j / d); an all-zero block stores d = 0 and q = 0. The scale is rounded to
// fp16 when stored, so dequantize with the stored d (what a reader of the file sees), not the exact one.
#include "infer/core/dtype_blocks.h"

#include "infer/core/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace infer {

namespace {
constexpr size_t kBytesQ8_0 = 2 + kQuantBlock;

// float -> int8 code without undefined behaviour for NaN or out-of-range values.
int8_t clamp_code(float value) {
  if (!(value >= -127.0f)) return -127;  // also catches NaN
  if (value > 127.0f) return 127;
  return int8_t(value);
}
}  // namespace

void quantize_row_q8_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += kQuantBlock, dst += kBytesQ8_0) {
    float max_abs = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) max_abs = std::max(max_abs, std::fabs(src[j]));
    const float d = max_abs / 127.0f;
    const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t d16 = fp32_to_fp16(d);
    std::memcpy(dst, &d16, 2);
    for (int j = 0; j < kQuantBlock; ++j) dst[2 + j] = uint8_t(clamp_code(std::round(src[j] * inverse_d)));
  }
}

void dequantize_row_q8_0(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += kBytesQ8_0, dst += kQuantBlock) {
    uint16_t d16;
    std::memcpy(&d16, src, 2);  // blocks are only 2-byte aligned in a file
    const float d = fp16_to_fp32(d16);
    for (int j = 0; j < kQuantBlock; ++j) dst[j] = d * float(int8_t(src[2 + j]));
  }
}

}  // namespace infer
