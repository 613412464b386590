// elementwise.cu: the element-by-element ops of the forward pass.
//
//   silu_mul:          gate = silu(gate) * up = gate / (1 + exp(-gate)) * up   (the SwiGLU FFN)
//   add:               x += y                                                 (the residual stream)
//   convert_from_f32:  fp32 -> fp16/bf16, round to nearest even              (tensor-core GEMM input)
// Versions: v1_grid_stride only: one element per thread per step of a grid-stride loop, which covers
// any count (including more than 2^31 elements) with a bounded grid. These ops move 8-12 bytes per
// element and do almost no arithmetic, so they run at memory speed as written.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

namespace infer::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void silu_mul_v1_grid_stride(float* gate, const float* up, size_t count) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];  // silu(g) = g * sigmoid(g)
  }
}

__global__ void add_v1_grid_stride(float* x, const float* y, size_t count) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

template <typename T>
__device__ T from_float(float value);
template <>
__device__ __half from_float<__half>(float value) { return __float2half_rn(value); }
template <>
__device__ __nv_bfloat16 from_float<__nv_bfloat16>(float value) { return __float2bfloat16_rn(value); }

template <typename T>
__global__ void convert_v1_grid_stride(const float* src, T* dst, size_t count) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<T>(src[i]);
}

}  // namespace

void silu_mul(float* gate, const float* up, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  silu_mul_v1_grid_stride<<<grid_for(count, kThreads), kThreads, 0, stream>>>(gate, up, count);
  CUDA_CHECK_LAUNCH();
}

void add(float* x, const float* y, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  add_v1_grid_stride<<<grid_for(count, kThreads), kThreads, 0, stream>>>(x, y, count);
  CUDA_CHECK_LAUNCH();
}

void convert_from_f32(DType type, const float* src, void* dst, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const unsigned grid = grid_for(count, kThreads);
  if (type == DType::F16) {
    convert_v1_grid_stride<<<grid, kThreads, 0, stream>>>(src, static_cast<__half*>(dst), count);
  } else if (type == DType::BF16) {
    convert_v1_grid_stride<<<grid, kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst), count);
  } else {
    throw_error("cuda convert_from_f32: the target type must be f16 or bf16");
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
