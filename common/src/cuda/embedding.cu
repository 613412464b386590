// embedding.cu: token embedding lookup, out (n, dim) = table[tokens[t]] as fp32.
//
// Versions:
//   v1_row_per_block: one block per token copies (and converts) its row; threads stride over dim, so
//                     the reads of a row are coalesced. The lookup moves n * dim elements: nothing to
//                     gain from anything cleverer.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

namespace infer::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void embed_v1_row_per_block(const T* table, const int* tokens, int dim, float* out) {
  const int t = blockIdx.x;                                    // token index in [0, n)
  const T* row = table + size_t(tokens[t]) * size_t(dim);      // (dim)
  float* out_row = out + size_t(t) * size_t(dim);              // (dim)
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out_row[i] = to_float(row[i]);
}

}  // namespace

void embed(const Matrix& table, const int* tokens, int n, float* out, cudaStream_t stream) {
  if (n <= 0) return;
  const dim3 grid{unsigned(n)}, block{unsigned(kThreads)};
  switch (table.dtype) {
    case DType::F32:
      embed_v1_row_per_block<<<grid, block, 0, stream>>>(static_cast<const float*>(table.data), tokens, table.cols, out);
      break;
    case DType::F16:
      embed_v1_row_per_block<<<grid, block, 0, stream>>>(static_cast<const __half*>(table.data), tokens, table.cols, out);
      break;
    case DType::BF16:
      embed_v1_row_per_block<<<grid, block, 0, stream>>>(static_cast<const __nv_bfloat16*>(table.data), tokens,
                                                          table.cols, out);
      break;
    default:
      throw_error("cuda embed: the embedding table must be f32, f16 or bf16 (Weights converts at load)");
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
