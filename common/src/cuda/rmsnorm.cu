// rmsnorm.cu: RMSNorm, out = x / sqrt(mean(x^2) + eps) * weight, per row (no mean, no bias).
//
// Versions:
//   v1_row_per_block: one block per row; each thread sums the squares of a strided slice, a block
//                     reduction (warp shuffles) gives the row's sum, then every thread scales its
//                     slice. x is read twice, from L2 the second time; n rows run in parallel.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

namespace infer::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rmsnorm_v1_row_per_block(const float* x, const float* weight, float* out, int dim, float eps) {
  const float* row = x + size_t(blockIdx.x) * size_t(dim);   // (dim)
  float* out_row = out + size_t(blockIdx.x) * size_t(dim);   // (dim)
  float sum_squares = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) sum_squares += row[i] * row[i];
  sum_squares = block_sum(sum_squares);
  // 1 / sqrtf (both correctly rounded without fast math), as the CPU computes it; rsqrtf is ~2 ulp.
  const float scale = 1.0f / sqrtf(sum_squares / float(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out_row[i] = row[i] * scale * weight[i];
}

}  // namespace

void rmsnorm(const float* x, const float* weight, float* out, int n, int dim, float eps, cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  rmsnorm_v1_row_per_block<<<unsigned(n), kThreads, 0, stream>>>(x, weight, out, dim, eps);
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
