// gemm_quant.cu: y (n, rows) = x (n, cols) . W^T with W in GGUF Q8_0 / Q4_0 / Q4_1 blocks as stored: the
// prefill and batched-decode matmul (n > 1) of quantized weights. x and y fp32, fp32 sums.
//
// Versions (each checked against matmul_quant_reference, gemv_quant.cu, in common/tests_cuda/test_cuda_quant.cpp):
//   v1_smem_tiles:     gemm.cu's v2_tiled with a dequantizing load: a 32 x 32 block computes 32 rows x 32
//                      tokens; per step of 32 columns (exactly one block of each of its 32 rows) every thread
//                      dequantizes one weight into a shared-memory W tile (fp32, padded to 33 columns so the
//                      row-wise reads are conflict-free) and loads one activation into an x tile, then each
//                      thread sums 32 products. W is read from memory once per 32 tokens, as blocks; no
//                      dequantized copy of the matrix exists. CUDA cores, fp32.
//   v2_dequant_cublas: dequantize a tile of up to 32 MiB of W's rows to fp32 into a workspace (one coalesced
//                      pass, dequantize_rows), then cublasGemmEx on that tile (fp32 compute, no TF32: the
//                      backend's math mode), rows tile by tile into y. The exact fp32 values of the blocks
//                      (no fp16 rounding of d * q), so it equals the reference within fp32 summation error.
//
// ---- expected behaviour (the reasoning written before any GPU ran them; measured below)
//  - v1 is gemm.cu v2_tiled's loop with a byte-wise load: 2 shared-memory loads per FMA, about the rate of
//    v2_tiled (a few TFLOP/s on an H100/H200), far below cuBLAS; but it reads W once per 32 tokens as blocks,
//    so for batched decode (n of 2..31) it costs about one pass over the quantized bytes, like the GEMV.
//  - v2 writes and reads 4 bytes per weight for the tile (Q4_0: 7x the block bytes) on top of reading the
//    blocks: worth it once n is large enough for the GEMM to be compute-bound (prefill); fp32 cuBLAS runs at
//    the CUDA-core fp32 rate (~50-60 TFLOP/s on an H100/H200 by the datasheet), not the tensor cores'.
//    An f16/bf16 tile would reach the tensor cores but round each d * q (fp16 keeps 11 bits, q8 x f16 needs
//    up to 19): not built, correctness first.
//  - The backend (cuda_backend.cpp) takes v1 for 2 <= n < 32 and v2 from 32 tokens.
// ---- measured (NVIDIA H200, 2026-11-30, gpu_matmul_bench, 14336 x 4096, n = 128, best of 20): both correct
// (test_cuda_quant.cpp passes), both slow. v1 2.2 ms = 6.8-7.0 TFLOP/s, as expected of a v2_tiled loop; v2
// 0.66 ms = 22.6-22.8 TFLOP/s, against cuBLAS f16 on the tensor cores at 363 TFLOP/s (41 us) on the same
// shape: the fp32 tile and the CUDA cores cost 16x. A dequantize-to-f16/bf16 tile on the tensor cores is next.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"
#include "quant_block_decode.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace infer::cuda {
namespace {

using quant::Block;

// ---- v1: dequantized tiles in shared memory -----------------------------------------------------------------
constexpr int kTile = 32;  // rows x tokens per block; the column step is one 32-weight block

template <DType kType>
__global__ void gemm_quant_v1_smem_tiles(const uint8_t* __restrict__ w, const float* __restrict__ x,
                                         float* __restrict__ y, int rows, int n_blocks, int n) {
  constexpr int kBytes = Block<kType>::kBytes;
  __shared__ float w_tile[kTile][kTile + 1];  // [row - r0][column in the block]
  __shared__ float x_tile[kTile][kTile + 1];  // [token - t0][column in the block]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int r0 = blockIdx.x * kTile, t0 = blockIdx.y * kTile;
  const size_t cols = size_t(n_blocks) * quant::kBlockWeights;
  const size_t row_bytes = size_t(n_blocks) * kBytes;
  const int load_row = r0 + ty, load_token = t0 + ty;
  float sum = 0.0f;  // output (token t0 + ty, row r0 + tx)
  for (int b = 0; b < n_blocks; ++b) {
    // A warp (fixed ty) reads one block of one row and 32 consecutive activations of one token.
    const uint8_t* block = w + size_t(load_row) * row_bytes + size_t(b) * kBytes;  // used only when load_row < rows
    w_tile[ty][tx] = load_row < rows ? quant::block_value<kType>(block, tx) : 0.0f;
    x_tile[ty][tx] = load_token < n ? x[size_t(load_token) * cols + size_t(b) * quant::kBlockWeights + tx] : 0.0f;
    __syncthreads();
    // x_tile[ty][k]: one address per warp (broadcast); w_tile[tx][k]: stride 33 words, 32 different banks.
    for (int k = 0; k < kTile; ++k) sum = fmaf(x_tile[ty][k], w_tile[tx][k], sum);
    __syncthreads();  // the next step overwrites the tiles
  }
  if (t0 + ty < n && r0 + tx < rows) y[size_t(t0 + ty) * size_t(rows) + size_t(r0 + tx)] = sum;
}

// ---- v2: dequantize a tile of rows, then cuBLAS ---------------------------------------------------------------
constexpr size_t kTileBytesV2 = size_t(32) << 20;

// out (count_rows, cols) = rows [first_row, first_row + count_rows) of W as fp32; thread e writes element e.
template <DType kType>
__global__ void dequantize_rows(const uint8_t* __restrict__ w, int n_blocks, int64_t first_row, int64_t count_rows,
                                float* __restrict__ out) {
  constexpr int kBytes = Block<kType>::kBytes;
  const int64_t cols = int64_t(n_blocks) * quant::kBlockWeights;
  const int64_t total = count_rows * cols;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = first_row + e / cols;
    const int64_t c = e % cols;
    const uint8_t* block = w + (r * n_blocks + c / quant::kBlockWeights) * kBytes;
    out[e] = quant::block_value<kType>(block, int(c % quant::kBlockWeights));
  }
}

template <DType kType>
void launch_v1(const Matrix& weight, const float* x, float* y, int n, cudaStream_t stream) {
  if ((n + kTile - 1) / kTile > 65535) throw_error("cuda gemm_quant v1: too many tokens for grid y");
  const dim3 block(kTile, kTile);
  const dim3 grid(unsigned((weight.rows + kTile - 1) / kTile), unsigned((n + kTile - 1) / kTile));
  gemm_quant_v1_smem_tiles<kType><<<grid, block, 0, stream>>>(static_cast<const uint8_t*>(weight.data), x, y,
                                                              weight.rows, weight.cols / quant::kBlockWeights, n);
  CUDA_CHECK_LAUNCH();
}

int v2_tile_rows(const Matrix& weight) {
  const size_t row_floats_bytes = size_t(std::max(weight.cols, 1)) * sizeof(float);
  return int(std::clamp<size_t>(kTileBytesV2 / row_floats_bytes, 1, size_t(std::max(weight.rows, 1))));
}

template <DType kType>
void launch_v2(cublasHandle_t handle, const Matrix& weight, const float* x, float* y, int n, void* workspace,
               cudaStream_t stream) {
  const int tile_rows = v2_tile_rows(weight);
  const int n_blocks = weight.cols / quant::kBlockWeights;
  auto* tile = static_cast<float*>(workspace);
  const float alpha = 1.0f, beta = 0.0f;
  for (int r0 = 0; r0 < weight.rows; r0 += tile_rows) {
    const int count = std::min(tile_rows, weight.rows - r0);
    constexpr int kThreads = 256;
    dequantize_rows<kType><<<grid_for(size_t(count) * size_t(weight.cols), kThreads), kThreads, 0, stream>>>(
        static_cast<const uint8_t*>(weight.data), n_blocks, r0, count, tile);
    CUDA_CHECK_LAUNCH();
    // Column-major view (gemm.cu's matmul_cublas): y^T (rows, n) with ldc = rows; this tile's rows start
    // at y + r0. tile^T is (cols, count) with lda = cols, x^T (cols, n) with ldb = cols.
    CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, count, n, weight.cols, &alpha, tile, CUDA_R_32F,
                              weight.cols, x, CUDA_R_32F, weight.cols, &beta, y + r0, CUDA_R_32F, weight.rows,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

template <DType kType>
void launch(GemmQuantVersion version, cublasHandle_t handle, const Matrix& weight, const float* x, float* y, int n,
            void* workspace, cudaStream_t stream) {
  if (version == GemmQuantVersion::V1SmemTiles) {
    launch_v1<kType>(weight, x, y, n, stream);
  } else {
    launch_v2<kType>(handle, weight, x, y, n, workspace, stream);
  }
}

}  // namespace

const char* gemm_quant_version_name(GemmQuantVersion version) {
  switch (version) {
    case GemmQuantVersion::V1SmemTiles: return "v1_smem_tiles";
    case GemmQuantVersion::V2DequantCublas: return "v2_dequant_cublas";
  }
  return "?";
}

size_t gemm_quant_workspace_bytes(GemmQuantVersion version, const Matrix& weight) {
  if (version != GemmQuantVersion::V2DequantCublas) return 0;
  return size_t(v2_tile_rows(weight)) * size_t(std::max(weight.cols, 1)) * sizeof(float);
}

void gemm_quant(GemmQuantVersion version, cublasHandle_t handle, const Matrix& weight, const float* x, float* y, int n,
                void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  check_quant_matrix("cuda gemm_quant", weight);
  if (n < 0) throw_error("cuda gemm_quant: negative token count " + std::to_string(n));
  if (n == 0 || weight.rows == 0 || weight.cols == 0) return;
  if (version == GemmQuantVersion::V2DequantCublas && workspace_bytes < gemm_quant_workspace_bytes(version, weight))
    throw_error("cuda gemm_quant v2: workspace of " + std::to_string(workspace_bytes) + " bytes, needs " +
                std::to_string(gemm_quant_workspace_bytes(version, weight)));
  switch (weight.dtype) {
    case DType::Q8_0: launch<DType::Q8_0>(version, handle, weight, x, y, n, workspace, stream); return;
    case DType::Q4_0: launch<DType::Q4_0>(version, handle, weight, x, y, n, workspace, stream); return;
    case DType::Q4_1: launch<DType::Q4_1>(version, handle, weight, x, y, n, workspace, stream); return;
    default: break;  // check_quant_matrix refused it
  }
}

}  // namespace infer::cuda
