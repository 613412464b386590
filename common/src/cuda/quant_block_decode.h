// quant_block_decode.h (private): reading GGUF Q8_0 / Q4_0 / Q4_1 blocks, shared by the CUDA kernels
// (gemv_quant.cu, gemm_quant.cu, embedding.cu) and compiled for the host too.
//
// Every function here is `__host__ __device__` under nvcc and a plain inline function under the C++
// compiler, so common/tests/test_cuda_quant_decode.cpp runs the very code the kernels run on the CPU
// (against dtype.h's dequantize_row) in every build, GPU or not: the bit fiddling and the staging
// arithmetic of gemv v2 are checked even where no GPU exists.
//
// The layouts (dtype.h), little-endian, 32 weights per block:
//   Q8_0 (34 B): 0 d:f16 | 2 q:int8[32]          weight j = d * q[j]
//   Q4_0 (18 B): 0 d:f16 | 2 qs:u8[16]           weight j = d * (nibble_j - 8)
//   Q4_1 (20 B): 0 d:f16 | 2 m:f16 | 4 qs:u8[16] weight j = d * nibble_j + m
// nibble_j is the low nibble of qs[j] for j < 16 and the high nibble of qs[j - 16] for j >= 16.
// Block sizes are even, so in a matrix whose base is 2-byte aligned every block and every f16 in it
// is 2-byte aligned (load_u16 relies on that); nothing is 16-byte aligned in general (34 and 18 are not
// multiples of 16), which is why gemv v2 stages raw 16-byte chunks of the row through shared memory.
#pragma once

#include "infer/core/dtype.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define INFER_HD __host__ __device__ __forceinline__
#else
#define INFER_HD inline
#endif

namespace infer::cuda::quant {

constexpr int kBlockWeights = 32;

// The formats these kernels read.
inline bool supported(DType type) { return type == DType::Q8_0 || type == DType::Q4_0 || type == DType::Q4_1; }

template <DType kType>
struct Block;
template <>
struct Block<DType::Q8_0> {
  static constexpr int kBytes = 34;
  static constexpr int kQuants = 2;  // offset of q[32]
};
template <>
struct Block<DType::Q4_0> {
  static constexpr int kBytes = 18;
  static constexpr int kQuants = 2;  // offset of qs[16]
};
template <>
struct Block<DType::Q4_1> {
  static constexpr int kBytes = 20;
  static constexpr int kQuants = 4;
};
constexpr int kMaxBlockBytes = 34;

// ---- loads (host: memcpy; device: plain loads of the right width) ---------------------------------
// Two bytes at a 2-byte aligned address.
INFER_HD uint32_t load_u16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}

INFER_HD float f16_bits_to_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
#else
  return fp16_to_fp32(uint16_t(bits));  // exact, like the device conversion
#endif
}

struct Floats4 {
  float x, y, z, w;
};
// Four floats at a 16-byte aligned address (one 16-byte load on the device).
INFER_HD Floats4 load_x4(const float* x) {
#ifdef __CUDA_ARCH__
  const float4 v = *reinterpret_cast<const float4*>(x);
  return {v.x, v.y, v.z, v.w};
#else
  return {x[0], x[1], x[2], x[3]};
#endif
}

// ---- one weight ------------------------------------------------------------------------------------
// Weight j (0..31) of the block at `block` as fp32, with dtype.cpp's expression (the same value the CPU's
// dequantize_row gives).
template <DType kType>
INFER_HD float block_value(const uint8_t* block, int j) {
  const float d = f16_bits_to_float(load_u16(block));
  if constexpr (kType == DType::Q8_0) {
    return d * float(int8_t(block[Block<kType>::kQuants + j]));
  } else {
    const uint8_t packed = block[Block<kType>::kQuants + (j & 15)];
    const int nibble = j < 16 ? (packed & 15) : (packed >> 4);
    if constexpr (kType == DType::Q4_0) {
      return d * float(nibble - 8);
    } else {
      const float m = f16_bits_to_float(load_u16(block + 2));
      return d * float(nibble) + m;
    }
  }
}

// ---- one block's dot product with 32 activations -----------------------------------------------------
// v1 (plain): dequantize each weight as dequantize_row does and accumulate w_j * x_j in order, j = 0..31.
template <DType kType>
INFER_HD float block_dot_plain(const uint8_t* block, const float* x) {
  float sum = 0.0f;
  for (int j = 0; j < kBlockWeights; ++j) sum = fmaf(block_value<kType>(block, j), x[j], sum);
  return sum;
}

// v2 (factored): the scale leaves the sum, sum_j d q_j x_j = d * sum_j q_j x_j, and for Q4_1
// sum_j (d n_j + m) x_j = d * sum_j n_j x_j + m * sum_j x_j: 32 FMAs on small integers converted to
// float, then one or two multiplies. Four partial sums (one per component of a 16-byte x load) keep
// the dependent FMA chains short. The quants are read 2 bytes at a time (`block` must be 2-byte
// aligned, true for every block of a 2-byte aligned matrix), x 16 bytes at a time (16-byte aligned).
// Rounding differs from block_dot_plain but stays within the fp32 bound of a 32-term sum of the
// terms |d q_j x_j| (Q4_1: |d n_j x_j| + |m x_j|; the tests bound it so).
template <DType kType>
INFER_HD float block_dot_factored(const uint8_t* block, const float* x) {
  const float d = f16_bits_to_float(load_u16(block));
  const uint8_t* qs = block + Block<kType>::kQuants;
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  if constexpr (kType == DType::Q8_0) {
    for (int j = 0; j < kBlockWeights; j += 4) {
      const uint32_t lo = load_u16(qs + j), hi = load_u16(qs + j + 2);
      const Floats4 v = load_x4(x + j);
      s0 = fmaf(float(int8_t(lo & 0xff)), v.x, s0);
      s1 = fmaf(float(int8_t(lo >> 8)), v.y, s1);
      s2 = fmaf(float(int8_t(hi & 0xff)), v.z, s2);
      s3 = fmaf(float(int8_t(hi >> 8)), v.w, s3);
    }
    return d * ((s0 + s1) + (s2 + s3));
  } else {
    // Bytes j..j+3 of qs: low nibbles are weights j..j+3, high nibbles weights j+16..j+19.
    constexpr int kBias = kType == DType::Q4_0 ? 8 : 0;
    float x_sum = 0.0f;  // Q4_1 only (the compiler drops it for Q4_0)
    for (int j = 0; j < 16; j += 4) {
      const uint32_t b = load_u16(qs + j) | (load_u16(qs + j + 2) << 16);
      const Floats4 lo = load_x4(x + j);
      const Floats4 hi = load_x4(x + j + 16);
      s0 = fmaf(float(int((b >> 0) & 15) - kBias), lo.x, s0);
      s1 = fmaf(float(int((b >> 8) & 15) - kBias), lo.y, s1);
      s2 = fmaf(float(int((b >> 16) & 15) - kBias), lo.z, s2);
      s3 = fmaf(float(int((b >> 24) & 15) - kBias), lo.w, s3);
      s0 = fmaf(float(int((b >> 4) & 15) - kBias), hi.x, s0);
      s1 = fmaf(float(int((b >> 12) & 15) - kBias), hi.y, s1);
      s2 = fmaf(float(int((b >> 20) & 15) - kBias), hi.z, s2);
      s3 = fmaf(float(int((b >> 28) & 15) - kBias), hi.w, s3);
      if constexpr (kType == DType::Q4_1) x_sum += ((lo.x + lo.y) + (lo.z + lo.w)) + ((hi.x + hi.y) + (hi.z + hi.w));
    }
    const float q_sum = (s0 + s1) + (s2 + s3);
    if constexpr (kType == DType::Q4_1) return fmaf(d, q_sum, f16_bits_to_float(load_u16(block + 2)) * x_sum);
    return d * q_sum;
  }
}

// ---- gemv v2's staging of a row window through shared memory -------------------------------------------
// A warp handles one row kStageBlocks blocks at a time (a window). The window's bytes [begin, end) of the
// matrix are covered by the 16-byte chunks first_chunk .. first_chunk + chunks - 1 (chunk c = matrix bytes
// [16c, 16c + 16), the matrix base 16-byte aligned); the lanes copy those chunks into shared memory with
// one 16-byte load each, and the window's first block then starts `offset` bytes into the staged copy.
constexpr int kStageBlocks = 64;
// The most chunks a window can need: the offset is at most 14 (begin is even), the window's bytes at
// most kStageBlocks * 34.
constexpr int kStageChunks = (14 + kStageBlocks * kMaxBlockBytes + 15) / 16;

struct StagePlan {
  int64_t first_chunk;
  int chunks;
  int offset;
};

INFER_HD StagePlan stage_plan(int64_t row, int64_t row_bytes, int first_block, int n_blocks, int block_bytes) {
  const int64_t begin = row * row_bytes + int64_t(first_block) * block_bytes;
  const int64_t end = begin + int64_t(n_blocks) * block_bytes;
  const int64_t first = begin / 16, last = (end + 15) / 16;  // [first, last)
  return {first, int(last - first), int(begin - first * 16)};
}

// Bytes [16c, 16c + 16) of a matrix of total_bytes bytes into dst (16 bytes): the whole chunk when it
// lies inside the matrix, else its bytes inside and zeros after (only the very last chunk of a matrix
// whose size is not a multiple of 16 is partial; nothing past the allocation is read).
INFER_HD void copy_chunk_bytes(const uint8_t* matrix, int64_t total_bytes, int64_t c, uint8_t* dst) {
  const int64_t start = c * 16;
  for (int i = 0; i < 16; ++i) dst[i] = start + i < total_bytes ? matrix[start + i] : uint8_t(0);
}

}  // namespace infer::cuda::quant
