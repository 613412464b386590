// gemv_quant.cu: y (rows) = W (rows, cols) . x (cols) with W in GGUF Q8_0 / Q4_0 / Q4_1 blocks as the file
// stores them (no dequantized copy of the matrix anywhere): the decode matmul (n == 1) of quantized weights.
// x and y are fp32, every sum is fp32. Block layouts and the decoding: quant_block_decode.h.
//
// Versions (llm.c dev/cuda shape; each is checked against the reference in common/tests_cuda/test_cuda_quant.cpp):
//   reference (CPU):      matmul_quant_reference: dequantize_row (dtype.h) each row, then an fp32 dot in
//                         column order: "dequantize + f32 dot", what every version must equal within the
//                         fp32 rounding bound of a cols-term sum.
//   v1_warp_per_row:      one warp per row, lane l takes blocks l, l + 32, ...; each weight dequantized in
//                         registers as dequantize_row does (block_dot_plain) and multiplied with x; the lanes
//                         meet in a shuffle reduction. Byte loads of the blocks (34 / 18 / 20 bytes, 2-byte
//                         aligned: no wider load fits them), scalar loads of x. 8 rows per 256-thread block.
//   v2_staged_16b:        the blocks' bytes move as 16-byte loads: a window of 64 blocks of the row
//                         (2176 B of Q8_0) is copied by the warp's 32 lanes as consecutive, coalesced 16-byte
//                         chunks (__ldcs: streamed, read once) into the warp's slice of shared memory, whatever
//                         the 34/18/20-byte block alignment; then each lane decodes whole blocks from shared
//                         memory (2-byte reads) with the scale factored out of the sum (block_dot_factored)
//                         and x read as 16-byte float4 loads. 8 warps = 8 rows per block, 17.1 KiB of
//                         shared memory per block. Needs 16-byte aligned W and x (gemv_quant_v2_supported);
//                         the backend falls back to v1 otherwise.
//
// ---- expected bandwidth behaviour (the reasoning written before any GPU ran them; measured below)
// Decode reads each weight byte once: Q8_0 8.5 bits per weight, Q4_0 4.5, Q4_1 5, so at the same fraction of
// the bandwidth a token costs 0.27 / 0.14 / 0.16 of fp32's time (0.53 / 0.28 / 0.31 of fp16's).
//  - v1: every byte is fetched by a 1-byte load; a warp's load of byte i of 32 blocks spans ~9 cache lines, so
//    L1 serves the rest of each line, but the load instruction count (34 per Q8_0 block per lane, plus 32 x
//    loads) limits it: expect a fraction of the copy bandwidth (issue-bound, not DRAM-bound).
//  - v2: a lane has ~4-5 independent 16-byte loads in flight per window (138 chunks / 32 lanes), a block
//    8 x 2.2 KB; with several resident blocks per SM that is well above the ~20-30 KB per SM that Little's law
//    asks for at H100/H200 latencies, so large matrices (>= 1056 rows, 132 blocks) should stream near the copy
//    bandwidth. The copy phase and the decode phase of one warp do not overlap (one stage buffer); other warps
//    fill the gaps.
//  - x stays fp32: per weight byte the lanes read 4 / 1.06 = 3.8 (Q8_0) or 4 / 0.56 = 7.1 (Q4_0) bytes of x
//    from L1. At a 4.8 TB/s weight stream that is ~34 TB/s of L1 reads for Q4_0, about the whole L1 bandwidth
//    of an H100/H200 (132 SMs x 128 B/clk x ~2 GHz): Q4 GEMVs may stop short of the DRAM ceiling for that
//    reason. The known fix, not built here: quantize x to int8 per block once per matmul (as the CPU kernels
//    do) and use dp4a, cutting x traffic 4x.
//  - SmolLM2-135M's matrices are small (576 or 1536 rows: 72-192 blocks of 8 rows on 132 SMs, 0.2-0.9 MB each):
//    a few microseconds each, launch latency rather than bandwidth; the classifier (49152 x 576) streams.
// ---- measured (NVIDIA H200, 2026-11-30, gpu_matmul_bench, 14336 x 4096, n = 1, best of 20, % of the 4251 GB/s
// copy): f16 gemv_v3 78%; v1 3.2-5.7%; v2 Q8_0 17.5% (84 us), Q4_1 12.5%, Q4_0 11.0%: the expectation above was
// wrong for every format, not only the Q4 ones. Nsight Compute on v2: L1/TEX throughput 90% (Q8_0) and 96%
// (Q4_0) while DRAM throughput is 16% and 10%; Q8_0's warps stalled on L1 42% of their cycles: the
// shared-memory stage plus the fp32 x reads load L1 more than the weights load DRAM. Next: int8 x (quantized
// once per matmul) and dp4a on blocks read straight into registers, no stage.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"
#include "quant_block_decode.h"

#include <cstdint>
#include <string>
#include <vector>

namespace infer::cuda {
namespace {

using quant::Block;

constexpr int kWarpsPerBlock = 8;  // rows per block
constexpr int kThreads = kWarpsPerBlock * 32;

// ---- v1: one warp per row, dequantize in registers ------------------------------------------------------
template <DType kType>
__global__ void gemv_quant_v1_warp_per_row(const uint8_t* __restrict__ w, const float* __restrict__ x,
                                           float* __restrict__ y, int rows, int n_blocks) {
  constexpr int kBytes = Block<kType>::kBytes;
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;  // the whole warp leaves together: the shuffles below stay full-warp
  const uint8_t* row = w + size_t(r) * size_t(n_blocks) * kBytes;
  float sum = 0.0f;
  for (int b = lane; b < n_blocks; b += 32)
    sum += quant::block_dot_plain<kType>(row + size_t(b) * kBytes, x + size_t(b) * quant::kBlockWeights);
  sum = warp_sum(sum);
  if (lane == 0) y[r] = sum;
}

// ---- v2: 16-byte loads staged through shared memory -------------------------------------------------------
template <DType kType>
__global__ void __launch_bounds__(kThreads) gemv_quant_v2_staged_16b(const uint8_t* __restrict__ w,
                                                                     const float* __restrict__ x,
                                                                     float* __restrict__ y, int rows, int n_blocks) {
  constexpr int kBytes = Block<kType>::kBytes;
  __shared__ uint4 stage[kWarpsPerBlock][quant::kStageChunks];  // one window per warp
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int r = blockIdx.x * kWarpsPerBlock + warp;
  if (r >= rows) return;  // only __syncwarp below (no __syncthreads), so a warp may leave
  const int64_t row_bytes = int64_t(n_blocks) * kBytes;
  const int64_t total_bytes = int64_t(rows) * row_bytes;
  const int64_t whole_chunks = total_bytes / 16;  // chunks entirely inside the matrix
  const uint4* chunks = reinterpret_cast<const uint4*>(w);
  uint4* my_stage = stage[warp];
  const uint8_t* staged = reinterpret_cast<const uint8_t*>(my_stage);
  float sum = 0.0f;
  for (int first = 0; first < n_blocks; first += quant::kStageBlocks) {
    const int count = min(quant::kStageBlocks, n_blocks - first);
    const quant::StagePlan plan = quant::stage_plan(r, row_bytes, first, count, kBytes);
    // Copy: lane l takes chunks l, l + 32, ...: each warp-wide step is 512 consecutive bytes.
#pragma unroll 5
    for (int i = lane; i < plan.chunks; i += 32) {
      const int64_t c = plan.first_chunk + i;
      if (c < whole_chunks) {
        my_stage[i] = __ldcs(chunks + c);
      } else {
        quant::copy_chunk_bytes(w, total_bytes, c, reinterpret_cast<uint8_t*>(my_stage + i));
      }
    }
    __syncwarp();
    // Decode: lane l takes the window's blocks l, l + 32 (64 blocks per window).
    for (int b = lane; b < count; b += 32)
      sum += quant::block_dot_factored<kType>(staged + plan.offset + b * kBytes,
                                              x + size_t(first + b) * quant::kBlockWeights);
    __syncwarp();  // every lane is done reading before the next window overwrites the stage
  }
  sum = warp_sum(sum);
  if (lane == 0) y[r] = sum;
}

template <DType kType>
void launch(GemvQuantVersion version, const Matrix& weight, const float* x, float* y, cudaStream_t stream) {
  const auto* w = static_cast<const uint8_t*>(weight.data);
  const int n_blocks = weight.cols / quant::kBlockWeights;
  const unsigned blocks = unsigned((weight.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  switch (version) {
    case GemvQuantVersion::V1WarpPerRow:
      gemv_quant_v1_warp_per_row<kType><<<blocks, kThreads, 0, stream>>>(w, x, y, weight.rows, n_blocks);
      break;
    case GemvQuantVersion::V2Staged16B:
      gemv_quant_v2_staged_16b<kType><<<blocks, kThreads, 0, stream>>>(w, x, y, weight.rows, n_blocks);
      break;
  }
  CUDA_CHECK_LAUNCH();
}

bool aligned(const void* pointer, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(pointer) % bytes == 0; }

}  // namespace

bool quant_matmul_supported(DType type) { return quant::supported(type); }

void check_quant_matrix(const char* what, const Matrix& weight) {
  if (!quant::supported(weight.dtype))
    throw_error(std::string(what) + ": weights of dtype " + std::string(dtype_name(weight.dtype)) +
                " have no CUDA kernel (q8_0, q4_0 and q4_1 do)");
  if (weight.rows < 0 || weight.cols < 0 || weight.cols % quant::kBlockWeights != 0)
    throw_error(std::string(what) + ": a " + std::string(dtype_name(weight.dtype)) + " matrix needs rows of whole " +
                "32-weight blocks (cols = " + std::to_string(weight.cols) + ")");
  if (!aligned(weight.data, 2)) throw_error(std::string(what) + ": the blocks must be 2-byte aligned");
}

void matmul_quant_reference(const Matrix& weight_host, const float* x_host, float* y_host, int n) {
  check_quant_matrix("matmul_quant_reference", weight_host);
  const int rows = weight_host.rows, cols = weight_host.cols;
  const size_t row_bytes = dtype_row_bytes(weight_host.dtype, cols);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int r = 0; r < rows; ++r) {
    dequantize_row(weight_host.dtype, static_cast<const uint8_t*>(weight_host.data) + size_t(r) * row_bytes, row.data(),
                   cols);
    for (int t = 0; t < n; ++t) {
      const float* xt = x_host + size_t(t) * cols;
      float sum = 0.0f;
      for (int c = 0; c < cols; ++c) sum += row[size_t(c)] * xt[c];
      y_host[size_t(t) * rows + r] = sum;
    }
  }
}

const char* gemv_quant_version_name(GemvQuantVersion version) {
  switch (version) {
    case GemvQuantVersion::V1WarpPerRow: return "v1_warp_per_row";
    case GemvQuantVersion::V2Staged16B: return "v2_staged_16b";
  }
  return "?";
}

bool gemv_quant_v2_supported(const Matrix& weight, const float* x) {
  return quant::supported(weight.dtype) && aligned(weight.data, 16) && aligned(x, 16);
}

void gemv_quant(GemvQuantVersion version, const Matrix& weight, const float* x, float* y, cudaStream_t stream) {
  check_quant_matrix("cuda gemv_quant", weight);
  if (weight.rows == 0 || weight.cols == 0) return;
  if (version == GemvQuantVersion::V2Staged16B && !gemv_quant_v2_supported(weight, x))
    throw_error("cuda gemv_quant v2: needs 16-byte aligned W and x");
  switch (weight.dtype) {
    case DType::Q8_0: launch<DType::Q8_0>(version, weight, x, y, stream); return;
    case DType::Q4_0: launch<DType::Q4_0>(version, weight, x, y, stream); return;
    case DType::Q4_1: launch<DType::Q4_1>(version, weight, x, y, stream); return;
    default: break;  // check_quant_matrix refused it
  }
}

}  // namespace infer::cuda
