// embedding.cu: token embedding lookup, out (n, dim) = table[tokens[t]] as fp32.
//
// Versions:
//   v1_row_per_block: one block per token copies (and converts) its row; threads stride over dim, so
//                     the reads of a row are coalesced. The lookup moves n * dim elements: nothing to
//                     gain from anything cleverer.
//   v1 for Q8_0/Q4_0/Q4_1 tables (kept as blocks by Weights): thread i decodes weight i of the row from its
//                     block with quant_block_decode.h's block_value, the value dequantize_row gives.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"
#include "quant_block_decode.h"

#include <cstdint>
#include <string>

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

template <DType kType>
__global__ void embed_v1_quant_row_per_block(const uint8_t* table, const int* tokens, int dim, float* out) {
  constexpr int kBytes = quant::Block<kType>::kBytes;
  const int t = blockIdx.x;
  const uint8_t* row = table + size_t(tokens[t]) * size_t(dim / quant::kBlockWeights) * kBytes;
  float* out_row = out + size_t(t) * size_t(dim);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    out_row[i] = quant::block_value<kType>(row + size_t(i / quant::kBlockWeights) * kBytes, i % quant::kBlockWeights);
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
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1: {
      check_quant_matrix("cuda embed", table);
      const auto* bytes = static_cast<const uint8_t*>(table.data);
      if (table.dtype == DType::Q8_0)
        embed_v1_quant_row_per_block<DType::Q8_0><<<grid, block, 0, stream>>>(bytes, tokens, table.cols, out);
      else if (table.dtype == DType::Q4_0)
        embed_v1_quant_row_per_block<DType::Q4_0><<<grid, block, 0, stream>>>(bytes, tokens, table.cols, out);
      else
        embed_v1_quant_row_per_block<DType::Q4_1><<<grid, block, 0, stream>>>(bytes, tokens, table.cols, out);
      break;
    }
    default:
      throw_error("cuda embed: the embedding table must be f32, f16, bf16, q8_0, q4_0 or q4_1, not " +
                  std::string(dtype_name(table.dtype)));
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
