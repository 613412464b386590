// cuda_device.cuh (private, device code only): helpers the kernels share.
//
//  - to_float: one stored weight (fp32, fp16, bf16) to fp32. fp16 and bf16 convert exactly, so the
//    CUDA and CPU backends see the same fp32 values of the same stored weights.
//  - warp_sum / warp_max and block_sum / block_max: tree reductions with warp shuffles, then one
//    value per warp through shared memory. blockDim.x must be a multiple of 32 (every launcher uses
//    128 or 256 threads).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>

namespace infer::cuda {

constexpr unsigned kFullWarp = 0xffffffffu;

// ---- element conversion ----------------------------------------------------------------------
__device__ __forceinline__ float to_float(float value) { return value; }
__device__ __forceinline__ float to_float(__half value) { return __half2float(value); }
__device__ __forceinline__ float to_float(__nv_bfloat16 value) { return __bfloat162float(value); }

// ---- reductions ------------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(kFullWarp, value, offset);
  return value;  // every lane holds the warp's sum
}

__device__ __forceinline__ float warp_max(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(kFullWarp, value, offset));
  return value;
}

// Reduces `value` over the whole block with `warp_reduce`; every thread gets the result.
// The trailing __syncthreads lets a kernel call it again (the partials array is reused).
template <typename WarpReduce>
__device__ __forceinline__ float block_reduce(float value, float identity, WarpReduce warp_reduce) {
  __shared__ float partials[32];  // one per warp; blockDim.x <= 1024
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n_warps = (blockDim.x + 31) >> 5;
  value = warp_reduce(value);
  if (lane == 0) partials[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < n_warps ? partials[lane] : identity;
    value = warp_reduce(value);
    if (lane == 0) partials[0] = value;
  }
  __syncthreads();
  const float result = partials[0];
  __syncthreads();
  return result;
}

__device__ __forceinline__ float block_sum(float value) {
  return block_reduce(value, 0.0f, [](float v) { return warp_sum(v); });
}

__device__ __forceinline__ float block_max(float value) {
  return block_reduce(value, -FLT_MAX, [](float v) { return warp_max(v); });
}

// Blocks for a grid-stride loop over `count` elements: enough to fill the GPU, never more than the
// grid limit (count can exceed 2^31 for large activations).
inline unsigned grid_for(size_t count, int threads_per_block) {
  const size_t blocks = (count + size_t(threads_per_block) - 1) / size_t(threads_per_block);
  constexpr size_t kMaxBlocks = 65535u * 8u;  // plenty for any GPU; the loop covers the rest
  return unsigned(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

}  // namespace infer::cuda
