// dtype.h: element types of stored tensors, fp16/bf16 conversion and block-quantized formats.
//
// Block formats follow the GGUF/ggml specification (little-endian, 32 weights per block):
//   Q8_0: { f16 d; int8 q[32]; }           x = d * q
//   Q4_0: { f16 d; uint8 qs[16]; }         x = d * (nibble - 8)
//   Q4_1: { f16 d; f16 m; uint8 qs[16]; }  x = d * nibble + m
// where byte j of qs holds weight j in its low nibble and weight j + 16 in its high nibble.
// Five more formats are read (dtype_blocks.cpp draws each out):
//   Q5_0: { f16 d; u8 qh[4]; u8 qs[16]; }           x = d * (q - 16), q = nibble | (bit j of qh) << 4
//   Q5_1: { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }    x = d * q + m
//   Q4_K, Q5_K, Q6_K: super-blocks of 256 weights in 8 or 16 sub-blocks with 6- or 8-bit sub-scales.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace infer {

enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K };

std::string_view dtype_name(DType type);           // "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", ..., "q6_k"
bool dtype_from_name(std::string_view name, DType& out);  // inverse of dtype_name
int dtype_block_size(DType type);                   // weights per block: 1 for float types, 32 for Q*_0/1, 256 for K
size_t dtype_block_bytes(DType type);               // bytes per block: 4, 2, 2, 34, 18, 20, 22, 24, 144, 176, 210
// Bytes taken by n_elements of the type; n_elements must be a multiple of the block size.
size_t dtype_row_bytes(DType type, int64_t n_elements);
bool dtype_is_quantized(DType type);

// ---- scalar conversions (IEEE-754 binary16 and bfloat16) ------------------------------------------
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);  // round to nearest even; overflow -> inf
// The fp16 number stored (little-endian, any alignment) at p, e.g. a block's scale, as float32.
inline float fp16_at(const void* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}
inline float bf16_to_fp32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint16_t fp32_to_bf16(float f);  // round to nearest even; NaN stays NaN

// ---- rows ----------------------------------------------------------------------------------------
// Converts n elements stored as `type` at `src` to float32. n must be a multiple of the block size.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);
// Stores n float32 values as `type` (the synthetic-model writer and the tests use this).
// For block formats n must be a multiple of 32; the scale choice follows the reference quantizers
// (Q8_0: d = max|x|/127; Q4_0: d = x_maxabs/-8 using the signed value of largest magnitude;
// Q4_1: d = (max-min)/15, m = min; Q5_0: d = x_maxabs/-16; Q5_1: d = (max-min)/31, m = min).
// The K formats are read-only here: quantizing to them throws infer::Error.
bool dtype_can_quantize(DType type);
void quantize_row(DType type, const float* src, void* dst, int64_t n);

}  // namespace infer
