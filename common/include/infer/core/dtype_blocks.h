// dtype_blocks.h: the row codecs behind dtype.h's dequantize_row / quantize_row for Q8_0 (q8_0_codec.cpp) and
// the formats dtype_blocks.cpp adds; internal to the engine (use dtype.h), public for the ch07 lab.
#pragma once

#include <cstddef>
#include <cstdint>

namespace infer {

constexpr int kQuantBlock = 32;   // weights per block of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1
constexpr int kSuperBlock = 256;  // weights per super-block of Q4_K, Q5_K, Q6_K
constexpr size_t kBlockBytesQ5_0 = 2 + 4 + 16;             // d, qh, qs
constexpr size_t kBlockBytesQ5_1 = 2 + 2 + 4 + 16;         // d, m, qh, qs
constexpr size_t kBlockBytesQ4_K = 2 + 2 + 12 + 128;       // d, dmin, scales, qs
constexpr size_t kBlockBytesQ5_K = 2 + 2 + 12 + 32 + 128;  // d, dmin, scales, qh, qs
constexpr size_t kBlockBytesQ6_K = 128 + 64 + 16 + 2;      // ql, qh, scales, d

// Q8_0 (q8_0_codec.cpp, the ch07 lab's exercise 1): d = max|x| / 127 stored as f16, q = round(x / d).
void quantize_row_q8_0(const float* src, uint8_t* dst, int64_t n_blocks);
void dequantize_row_q8_0(const uint8_t* src, float* dst, int64_t n_blocks);
void dequantize_row_q5_0(const uint8_t* src, float* dst, int64_t n_blocks);
void dequantize_row_q5_1(const uint8_t* src, float* dst, int64_t n_blocks);
void dequantize_row_q4_k(const uint8_t* src, float* dst, int64_t n_super_blocks);
void dequantize_row_q5_k(const uint8_t* src, float* dst, int64_t n_super_blocks);
void dequantize_row_q6_k(const uint8_t* src, float* dst, int64_t n_super_blocks);
void quantize_row_q5_0(const float* src, uint8_t* dst, int64_t n_blocks);
void quantize_row_q5_1(const float* src, uint8_t* dst, int64_t n_blocks);

}  // namespace infer
