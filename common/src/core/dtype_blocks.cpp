// dtype_blocks.cpp: the GGUF block formats Q5_0, Q5_1 (blocks of 32) and the K formats Q4_K, Q5_K,
// Q6_K (super-blocks of 256), decoded to float32 exactly as the format defines them.
//
// Byte layouts (little-endian, packed; offsets in bytes):
//   Q5_0 (22 B / 32 weights, 5.5 bits):  0 d:f16 | 2 qh:u32 | 6 qs[16]
//        weight j < 16:  q = (qs[j] & 15) | bit j of qh << 4,        x = d * (q - 16)
//        weight j + 16:  q = (qs[j] >> 4) | bit (j + 16) of qh << 4, x = d * (q - 16)
//   Q5_1 (24 B / 32 weights, 6 bits):    0 d:f16 | 2 m:f16 | 4 qh:u32 | 8 qs[16]   x = d * q + m
//   Q4_K (144 B / 256 weights, 4.5 bits): 0 d:f16 | 2 dmin:f16 | 4 scales[12] | 16 qs[128]
//        8 sub-blocks of 32 with a 6-bit scale sc and a 6-bit min mn each, packed in scales[12]:
//          sub-block s < 4:  sc = scales[s] & 63,  mn = scales[s + 4] & 63
//          sub-block s >= 4: sc = (scales[s + 4] & 15) | (scales[s - 4] >> 6) << 4
//                            mn = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4
//        weights 64c .. 64c+31 are the low nibbles of qs[32c .. 32c+31] (sub-block 2c),
//        weights 64c+32 .. 64c+63 their high nibbles (sub-block 2c + 1);  x = (d * sc) * q - (dmin * mn)
//   Q5_K (176 B / 256 weights, 5.5 bits): 0 d | 2 dmin | 4 scales[12] | 16 qh[32] | 48 qs[128]
//        as Q4_K, and the fifth bit of weight 64c + i (i < 32) is bit 2c of qh[i], of weight
//        64c + 32 + i bit 2c + 1 of qh[i].
//   Q6_K (210 B / 256 weights, 6.56 bits): 0 ql[128] | 128 qh[64] | 192 scales:i8[16] | 208 d:f16
//        two halves of 128 weights; in half h (ql += 64h, qh += 32h), for i < 32:
//          weight 128h + i      = (ql[i] & 15)      | ((qh[i] >> 0) & 3) << 4
//          weight 128h + 32 + i = (ql[i + 32] & 15) | ((qh[i] >> 2) & 3) << 4
//          weight 128h + 64 + i = (ql[i] >> 4)      | ((qh[i] >> 4) & 3) << 4
//          weight 128h + 96 + i = (ql[i + 32] >> 4) | ((qh[i] >> 6) & 3) << 4
//        x = (d * scales[w / 16]) * (q - 32), one 8-bit scale per 16 weights.
// The float expressions (which products are rounded first) are the ones llama.cpp's dequantizers
// evaluate, so the results match its float32 dequantization bit for bit (tested on a real Q4_K_M file).
#include "infer/core/dtype_blocks.h"

#include "infer/core/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace infer {

namespace {

float read_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

uint32_t read_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// 6-bit scale and min of sub-block s (0..7) of a Q4_K / Q5_K super-block.
void scale_min_k4(int s, const uint8_t* scales, int& scale, int& min) {
  if (s < 4) {
    scale = scales[s] & 63;
    min = scales[s + 4] & 63;
  } else {
    scale = (scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4);
    min = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
  }
}

int clamp_int(float value, int lo, int hi) {
  if (!(value >= float(lo))) return lo;  // NaN too
  if (value > float(hi)) return hi;
  return int(value);
}

}  // namespace

void dequantize_row_q5_0(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += kBlockBytesQ5_0, dst += kQuantBlock) {
    const float d = read_f16(src);
    const uint32_t qh = read_u32(src + 2);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int low = int((qs[j] & 15) | (((qh >> j) & 1) << 4)) - 16;
      const int high = int((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
      dst[j] = float(low) * d;
      dst[j + 16] = float(high) * d;
    }
  }
}

void dequantize_row_q5_1(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += kBlockBytesQ5_1, dst += kQuantBlock) {
    const float d = read_f16(src);
    const float m = read_f16(src + 2);
    const uint32_t qh = read_u32(src + 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int low = int((qs[j] & 15) | (((qh >> j) & 1) << 4));
      const int high = int((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
      dst[j] = float(low) * d + m;
      dst[j + 16] = float(high) * d + m;
    }
  }
}

void dequantize_row_q4_k(const uint8_t* src, float* dst, int64_t n_super_blocks) {
  for (int64_t b = 0; b < n_super_blocks; ++b, src += kBlockBytesQ4_K) {
    const float d = read_f16(src);
    const float dmin = read_f16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qs = src + 16;
    for (int c = 0; c < 4; ++c, qs += 32) {  // 4 chunks of 64 weights: sub-blocks 2c (low) and 2c+1 (high)
      int sc, mn;
      scale_min_k4(2 * c, scales, sc, mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      scale_min_k4(2 * c + 1, scales, sc, mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      for (int i = 0; i < 32; ++i) *dst++ = d1 * float(qs[i] & 15) - m1;
      for (int i = 0; i < 32; ++i) *dst++ = d2 * float(qs[i] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_k(const uint8_t* src, float* dst, int64_t n_super_blocks) {
  for (int64_t b = 0; b < n_super_blocks; ++b, src += kBlockBytesQ5_K) {
    const float d = read_f16(src);
    const float dmin = read_f16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* qs = src + 48;
    for (int c = 0; c < 4; ++c, qs += 32) {
      int sc, mn;
      scale_min_k4(2 * c, scales, sc, mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      scale_min_k4(2 * c + 1, scales, sc, mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      const int low_bit = 2 * c, high_bit = 2 * c + 1;
      for (int i = 0; i < 32; ++i) *dst++ = d1 * float((qs[i] & 15) + (((qh[i] >> low_bit) & 1) << 4)) - m1;
      for (int i = 0; i < 32; ++i) *dst++ = d2 * float((qs[i] >> 4) + (((qh[i] >> high_bit) & 1) << 4)) - m2;
    }
  }
}

void dequantize_row_q6_k(const uint8_t* src, float* dst, int64_t n_super_blocks) {
  for (int64_t b = 0; b < n_super_blocks; ++b, src += kBlockBytesQ6_K) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const auto* scales = reinterpret_cast<const int8_t*>(src + 192);
    const float d = read_f16(src + 208);
    for (int h = 0; h < 2; ++h, ql += 64, qh += 32, scales += 8, dst += 128) {
      for (int i = 0; i < 32; ++i) {
        const int s = i / 16;
        const int q1 = int((ql[i] & 15) | (((qh[i] >> 0) & 3) << 4)) - 32;
        const int q2 = int((ql[i + 32] & 15) | (((qh[i] >> 2) & 3) << 4)) - 32;
        const int q3 = int((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) - 32;
        const int q4 = int((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) - 32;
        dst[i] = d * float(scales[s + 0]) * float(q1);
        dst[i + 32] = d * float(scales[s + 2]) * float(q2);
        dst[i + 64] = d * float(scales[s + 4]) * float(q3);
        dst[i + 96] = d * float(scales[s + 6]) * float(q4);
      }
    }
  }
}

// Q5_0: like Q4_0 with 32 levels: the signed weight of largest magnitude maps to -16 (d = it / -16),
// q = round(x / d + 16) clamped to [0, 31].
void quantize_row_q5_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += kQuantBlock, dst += kBlockBytesQ5_0) {
    float max_abs = 0.0f, extreme = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) {
      if (std::fabs(src[j]) > max_abs) {
        max_abs = std::fabs(src[j]);
        extreme = src[j];
      }
    }
    const float d = extreme / -16.0f;
    const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t d16 = fp32_to_fp16(d);
    uint32_t qh = 0;
    uint8_t qs[16];
    for (int j = 0; j < 16; ++j) {
      const int low = clamp_int(src[j] * inverse_d + 16.5f, 0, 31);
      const int high = clamp_int(src[j + 16] * inverse_d + 16.5f, 0, 31);
      qs[j] = uint8_t((low & 15) | ((high & 15) << 4));
      qh |= uint32_t(low >> 4) << j;
      qh |= uint32_t(high >> 4) << (j + 16);
    }
    std::memcpy(dst, &d16, 2);
    std::memcpy(dst + 2, &qh, 4);
    std::memcpy(dst + 6, qs, 16);
  }
}

// Q5_1: affine with 32 levels: m = min, d = (max - min) / 31, q = round((x - m) / d).
void quantize_row_q5_1(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += kQuantBlock, dst += kBlockBytesQ5_1) {
    float lo = src[0], hi = src[0];
    for (int j = 1; j < kQuantBlock; ++j) {
      lo = std::min(lo, src[j]);
      hi = std::max(hi, src[j]);
    }
    const float d = (hi - lo) / 31.0f;
    const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t d16 = fp32_to_fp16(d), m16 = fp32_to_fp16(lo);
    uint32_t qh = 0;
    uint8_t qs[16];
    for (int j = 0; j < 16; ++j) {
      const int low = clamp_int((src[j] - lo) * inverse_d + 0.5f, 0, 31);
      const int high = clamp_int((src[j + 16] - lo) * inverse_d + 0.5f, 0, 31);
      qs[j] = uint8_t((low & 15) | ((high & 15) << 4));
      qh |= uint32_t(low >> 4) << j;
      qh |= uint32_t(high >> 4) << (j + 16);
    }
    std::memcpy(dst, &d16, 2);
    std::memcpy(dst + 2, &m16, 2);
    std::memcpy(dst + 4, &qh, 4);
    std::memcpy(dst + 8, qs, 16);
  }
}

}  // namespace infer
