// dtype.cpp: element types, IEEE fp16/bf16 conversion and the ggml block formats Q8_0, Q4_0, Q4_1.
//
// The conversions are written out bit by bit (rather than using _Float16 or F16C intrinsics) so a
// reader can follow the rounding rules, and so they behave the same on every compiler and CPU.
#include "infer/core/dtype.h"

#include "infer/core/error.h"
#include "infer/core/dtype_blocks.h"

#include <algorithm>
#include <cmath>

namespace infer {

// ================================================================================================
// Type table
// ================================================================================================

std::string_view dtype_name(DType type) {
  switch (type) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::Q8_0: return "q8_0";
    case DType::Q4_0: return "q4_0";
    case DType::Q4_1: return "q4_1";
    case DType::Q5_0: return "q5_0";
    case DType::Q5_1: return "q5_1";
    case DType::Q4_K: return "q4_k";
    case DType::Q5_K: return "q5_k";
    case DType::Q6_K: return "q6_k";
  }
  return "unknown";
}

bool dtype_from_name(std::string_view name, DType& out) {
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                     DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    if (dtype_name(type) == name) {
      out = type;
      return true;
    }
  }
  return false;
}

namespace {

// On-disk block layouts (little-endian, packed: the structs are only documentation + sizeof).
struct BlockQ8_0 {
  uint16_t d;
  int8_t q[kQuantBlock];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQuantBlock / 2];
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQuantBlock / 2];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20,
              "ggml block layouts must have no padding");
}  // namespace

int dtype_block_size(DType type) {
  if (type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K) return kSuperBlock;
  return dtype_is_quantized(type) ? kQuantBlock : 1;
}

size_t dtype_block_bytes(DType type) {
  switch (type) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::Q8_0: return sizeof(BlockQ8_0);
    case DType::Q4_0: return sizeof(BlockQ4_0);
    case DType::Q4_1: return sizeof(BlockQ4_1);
    case DType::Q5_0: return kBlockBytesQ5_0;
    case DType::Q5_1: return kBlockBytesQ5_1;
    case DType::Q4_K: return kBlockBytesQ4_K;
    case DType::Q5_K: return kBlockBytesQ5_K;
    case DType::Q6_K: return kBlockBytesQ6_K;
  }
  return 0;
}

size_t dtype_row_bytes(DType type, int64_t n_elements) {
  return size_t(n_elements / dtype_block_size(type)) * dtype_block_bytes(type);
}

bool dtype_is_quantized(DType type) {
  return type != DType::F32 && type != DType::F16 && type != DType::BF16;
}

bool dtype_can_quantize(DType type) {
  return type != DType::Q4_K && type != DType::Q5_K && type != DType::Q6_K;
}

// ================================================================================================
// Scalar conversions
// ================================================================================================
// binary32: 1 sign | 8 exponent (bias 127) | 23 mantissa
// binary16: 1 sign | 5 exponent (bias 15)  | 10 mantissa; exponent 0 = zero/subnormal (m * 2^-24),
//           exponent 31 = inf (m == 0) or NaN.

namespace {
uint32_t float_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}
float bits_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// value >> shift, rounded to nearest with ties to even (shift >= 1).
uint32_t shift_round_even(uint32_t value, int shift) {
  const uint32_t kept = value >> shift;
  const uint32_t remainder = value & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  return kept + ((remainder > half || (remainder == half && (kept & 1))) ? 1 : 0);
}
}  // namespace

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  if (exponent == 0) {
    // Zero or subnormal: m * 2^-24 is exact in fp32.
    const float magnitude = std::ldexp(float(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN (payload kept)
  return bits_float(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t bits = float_bits(f);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const int exponent = int((bits >> 23) & 0xff);
  const uint32_t mantissa = bits & 0x7fffff;

  if (exponent == 0xff) {  // inf stays inf; NaN stays a (quiet) NaN
    return uint16_t(sign | 0x7c00 | (mantissa ? (0x200 | (mantissa >> 13)) : 0));
  }
  const int half_exponent = exponent - 127 + 15;
  if (half_exponent >= 31) return uint16_t(sign | 0x7c00);  // too large: overflow to inf
  if (half_exponent <= 0) {
    // Result is subnormal (or zero): q * 2^-24 with q = (1.m * 2^23) >> (14 - half_exponent).
    if (half_exponent < -10) return sign;  // below half the smallest subnormal: rounds to zero
    const uint32_t full_mantissa = mantissa | 0x800000;
    // Rounding up may give q = 0x400, which is exactly the smallest normal's encoding.
    return uint16_t(sign | shift_round_even(full_mantissa, 14 - half_exponent));
  }
  // Normal: drop 13 mantissa bits with round-to-nearest-even. A carry out of the mantissa bumps the
  // exponent, and a carry out of exponent 30 gives 0x7c00 = inf, both of which are correct.
  const uint32_t rounded = shift_round_even((uint32_t(half_exponent) << 23) | mantissa, 13);
  return uint16_t(sign | rounded);
}

uint16_t fp32_to_bf16(float f) {
  const uint32_t bits = float_bits(f);
  if ((bits & 0x7fffffff) > 0x7f800000) return uint16_t((bits >> 16) | 0x40);  // NaN: keep it quiet NaN
  // Round to nearest even on the 16 dropped bits; overflow carries into inf, which is correct.
  const uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return uint16_t((bits + rounding) >> 16);
}

// ================================================================================================
// Block formats
// ================================================================================================

namespace {

void dequantize_q4_0(const BlockQ4_0* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    BlockQ4_0 block;
    std::memcpy(&block, blocks + b, sizeof(block));
    const float d = fp16_to_fp32(block.d);
    float* out = dst + b * kQuantBlock;
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      out[j] = d * float(int(block.qs[j] & 0x0f) - 8);             // weight j: low nibble
      out[j + kQuantBlock / 2] = d * float(int(block.qs[j] >> 4) - 8);  // weight j + 16: high nibble
    }
  }
}

void dequantize_q4_1(const BlockQ4_1* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    BlockQ4_1 block;
    std::memcpy(&block, blocks + b, sizeof(block));
    const float d = fp16_to_fp32(block.d);
    const float m = fp16_to_fp32(block.m);
    float* out = dst + b * kQuantBlock;
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      out[j] = d * float(block.qs[j] & 0x0f) + m;
      out[j + kQuantBlock / 2] = d * float(block.qs[j] >> 4) + m;
    }
  }
}

// float -> integer without undefined behaviour for NaN or out-of-range values.
int clamp_to_int(float value, int lo, int hi) {
  if (!(value >= float(lo))) return lo;  // also catches NaN
  if (value > float(hi)) return hi;
  return int(value);
}

// Q4_0: the signed weight of largest magnitude maps to -8 exactly (d = that / -8), so the full
// range [-8, 7] is used on its side; the opposite extreme clamps to 7 (an error of up to one step).
void quantize_q4_0(const float* src, BlockQ4_0* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float* x = src + b * kQuantBlock;
    float max_abs = 0.0f, extreme = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) {
      if (std::fabs(x[j]) > max_abs) {
        max_abs = std::fabs(x[j]);
        extreme = x[j];
      }
    }
    const float d = extreme / -8.0f;
    const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 block;
    block.d = fp32_to_fp16(d);
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      // + 8.5 then truncation = round to nearest of (x / d + 8), as the reference quantizer does.
      const int low = clamp_to_int(x[j] * inverse_d + 8.5f, 0, 15);
      const int high = clamp_to_int(x[j + kQuantBlock / 2] * inverse_d + 8.5f, 0, 15);
      block.qs[j] = uint8_t(low | (high << 4));
    }
    std::memcpy(blocks + b, &block, sizeof(block));
  }
}

// Q4_1: affine; m = min, d = (max - min) / 15, nibble = round((x - m) / d).
void quantize_q4_1(const float* src, BlockQ4_1* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float* x = src + b * kQuantBlock;
    float lo = x[0], hi = x[0];
    for (int j = 1; j < kQuantBlock; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
    }
    const float d = (hi - lo) / 15.0f;
    const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 block;
    block.d = fp32_to_fp16(d);
    block.m = fp32_to_fp16(lo);
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      const int low = clamp_to_int((x[j] - lo) * inverse_d + 0.5f, 0, 15);
      const int high = clamp_to_int((x[j + kQuantBlock / 2] - lo) * inverse_d + 0.5f, 0, 15);
      block.qs[j] = uint8_t(low | (high << 4));
    }
    std::memcpy(blocks + b, &block, sizeof(block));
  }
}

void check_block_multiple(DType type, int64_t n) {
  if (n < 0 || n % dtype_block_size(type) != 0) {
    fail("{}: row of {} elements is not a multiple of the block size {}", dtype_name(type), n,
         dtype_block_size(type));
  }
}

}  // namespace

// ================================================================================================
// Rows
// ================================================================================================

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  check_block_multiple(type, n);
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = fp16_to_fp32(h);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = bf16_to_fp32(h);
      }
      return;
    case DType::Q8_0: dequantize_row_q8_0(bytes, dst, n / kQuantBlock); return;  // q8_0_codec.cpp
    case DType::Q4_0: dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst, n / kQuantBlock); return;
    case DType::Q4_1: dequantize_q4_1(static_cast<const BlockQ4_1*>(src), dst, n / kQuantBlock); return;
    case DType::Q5_0: dequantize_row_q5_0(bytes, dst, n / kQuantBlock); return;
    case DType::Q5_1: dequantize_row_q5_1(bytes, dst, n / kQuantBlock); return;
    case DType::Q4_K: dequantize_row_q4_k(bytes, dst, n / kSuperBlock); return;
    case DType::Q5_K: dequantize_row_q5_k(bytes, dst, n / kSuperBlock); return;
    case DType::Q6_K: dequantize_row_q6_k(bytes, dst, n / kSuperBlock); return;
  }
}

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
  check_block_multiple(type, n);
  auto* bytes = static_cast<uint8_t*>(dst);
  switch (type) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(src[i]);
        std::memcpy(bytes + 2 * i, &h, 2);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(src[i]);
        std::memcpy(bytes + 2 * i, &h, 2);
      }
      return;
    case DType::Q8_0: quantize_row_q8_0(src, bytes, n / kQuantBlock); return;  // q8_0_codec.cpp
    case DType::Q4_0: quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), n / kQuantBlock); return;
    case DType::Q4_1: quantize_q4_1(src, static_cast<BlockQ4_1*>(dst), n / kQuantBlock); return;
    case DType::Q5_0: quantize_row_q5_0(src, bytes, n / kQuantBlock); return;
    case DType::Q5_1: quantize_row_q5_1(src, bytes, n / kQuantBlock); return;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: fail("quantizing to {} is not supported (the K formats are read, not written)", dtype_name(type));
  }
}

}  // namespace infer
