// gemv.cu: y (rows) = W (rows, cols) . x (cols), the decode matmul (n == 1), fp32 accumulation.
//
// Decode reads every weight once and does 2 FLOPs with it, so this kernel is judged in GB/s against
// the device's bandwidth, not in FLOP/s. Weights are fp32, fp16 or bf16; x and y are fp32.
// Versions:
//   v1_thread_per_row: the readable reference: thread r computes the dot product of row r. Adjacent
//                      threads read addresses `cols` elements apart, so each warp load touches 32
//                      different cache lines: uncoalesced, a small fraction of the bandwidth.
//   v2_warp_per_row:   one warp per row; lane l reads elements l, l + 32, ...: one warp load is 32
//                      consecutive elements (coalesced). The 32 partial sums meet in a shuffle
//                      reduction. 8 warps (rows) per block.
//   v3_vectorized:     v2 with 16-byte loads (4 fp32 or 8 fp16/bf16 weights per lane per load): fewer
//                      load instructions in flight for the same bytes, which is what it takes to get
//                      close to peak bandwidth. Needs whole 16-byte chunks per row and aligned W and x.
//                      The chunk loop is unrolled 4 times so each lane has 4 independent 16-byte
//                      weight loads in flight (the sum still adds the chunks in order: same result),
//                      and the weights are read with __ldcs (evict-first: each weight is used once)
//                      so they do not push x, which every warp of the SM re-reads, out of L1.
//
// ---- what v3 should reach at batch 1 (reasoning; the H100/H200 runs of scripts/gpu_check.sh measure it)
// Little's law: to stream at B bytes/s with a memory latency L, B * L bytes must be in flight. For an
// H100 (3.35 TB/s peak, ~0.6-0.8 us loaded latency) that is ~2-2.7 MB, ~15-20 KB per SM over 132 SMs.
// A v3 warp with 4 unrolled 16-byte loads per lane has 2 KB in flight; a block (8 warps, 8 rows) 16 KB.
//  - Large matrices (Llama-3-8B's 4096 x 14336 FFN, any classifier: >= 4096 rows = 512 blocks) give
//    every SM several resident blocks (up to 8 at 256 threads): 30+ KB in flight per SM, enough to
//    run near the copy bandwidth, i.e. ~85-90% of the datasheet peak.
//  - Few rows starve it: TinyLlama's K/V projections (256 rows = 32 blocks) occupy 32 of 132 SMs.
//    They are 1 MB each (f16) and take a few microseconds whatever the kernel: launch latency, not
//    bandwidth. Splitting a row over several warps (split-K) would help only such small matrices.
//  - x (fp32, cols floats) is read by every warp; it stays in L1 (8-56 KB), so DRAM sees the
//    weights once. L1 traffic is 2x the weight bytes for fp16 weights (fp32 x), well under L1's
//    ~30 TB/s aggregate.
//  - Per token the forward pass issues ~19 launches and copies per layer (TinyLlama: ~420); at 2-4 us
//    of host time each that is ~0.8-1.7 ms of CPU time per token against ~0.7 ms of GPU time to read
//    TinyLlama's 2.2 GB of f16 weights: small models are launch-bound (expect 50-70% of the copy
//    bandwidth), Llama-3-8B (16 GB f16: ~5 ms of reads for ~2 ms of launches, overlapped) is
//    bandwidth-bound (expect 80-90%). CUDA graphs (one launch per token) remove the launch cost.
// A decode step allocates nothing (the backend's scratch buffers only grow) and synchronises once,
// when download() fetches the logits.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

#include <cstdint>
#include <string>

namespace infer::cuda {
namespace {

constexpr int kThreadsV1 = 128;
constexpr int kWarpsPerBlock = 8;  // v2, v3: rows per block
constexpr int kThreadsWarpRows = kWarpsPerBlock * 32;

// ---- v1: one thread per row ---------------------------------------------------------------------
template <typename T>
__global__ void gemv_v1_thread_per_row(const T* w, const float* x, float* y, int rows, int cols) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const T* row = w + size_t(r) * size_t(cols);  // (cols)
  float sum = 0.0f;
  for (int c = 0; c < cols; ++c) sum += to_float(row[c]) * x[c];
  y[r] = sum;
}

// ---- v2: one warp per row -----------------------------------------------------------------------
template <typename T>
__global__ void gemv_v2_warp_per_row(const T* w, const float* x, float* y, int rows, int cols) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;  // a whole warp leaves together, so the shuffles below stay full-warp
  const T* row = w + size_t(r) * size_t(cols);
  float sum = 0.0f;
  for (int c = lane; c < cols; c += 32) sum += to_float(row[c]) * x[c];
  sum = warp_sum(sum);
  if (lane == 0) y[r] = sum;
}

// ---- v3: one warp per row, 16-byte loads ----------------------------------------------------------
// Dot product of one 16-byte chunk of weights with the matching x values.
// The weights are read with __ldcs (streaming, evict-first); x with ordinary loads (it is reused).
__device__ __forceinline__ float chunk_dot(const float* w, const float* x) {
  const float4 a = __ldcs(reinterpret_cast<const float4*>(w));
  const float4 b = *reinterpret_cast<const float4*>(x);
  return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}
__device__ __forceinline__ float chunk_dot(const __half* w, const float* x) {
  const uint4 raw = __ldcs(reinterpret_cast<const uint4*>(w));  // 8 halves
  const __half2* pairs = reinterpret_cast<const __half2*>(&raw);
  const float4 x0 = *reinterpret_cast<const float4*>(x);
  const float4 x1 = *reinterpret_cast<const float4*>(x + 4);
  const float2 w0 = __half22float2(pairs[0]), w1 = __half22float2(pairs[1]);
  const float2 w2 = __half22float2(pairs[2]), w3 = __half22float2(pairs[3]);
  return w0.x * x0.x + w0.y * x0.y + w1.x * x0.z + w1.y * x0.w + w2.x * x1.x + w2.y * x1.y + w3.x * x1.z + w3.y * x1.w;
}
__device__ __forceinline__ float chunk_dot(const __nv_bfloat16* w, const float* x) {
  const uint4 raw = __ldcs(reinterpret_cast<const uint4*>(w));  // 8 bf16
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
  const float4 x0 = *reinterpret_cast<const float4*>(x);
  const float4 x1 = *reinterpret_cast<const float4*>(x + 4);
  const float2 w0 = __bfloat1622float2(pairs[0]), w1 = __bfloat1622float2(pairs[1]);
  const float2 w2 = __bfloat1622float2(pairs[2]), w3 = __bfloat1622float2(pairs[3]);
  return w0.x * x0.x + w0.y * x0.y + w1.x * x0.z + w1.y * x0.w + w2.x * x1.x + w2.y * x1.y + w3.x * x1.z + w3.y * x1.w;
}

template <typename T>
__global__ void gemv_v3_vectorized(const T* __restrict__ w, const float* __restrict__ x, float* __restrict__ y,
                                   int rows, int cols) {
  constexpr int kPerChunk = 16 / int(sizeof(T));  // weights per 16-byte load
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const T* row = w + size_t(r) * size_t(cols);
  const int chunks = cols / kPerChunk;  // exact: checked by gemv_v3_supported
  float sum = 0.0f;
  // Unrolled: the 4 loads are issued before the first FMA needs its data (memory-level parallelism).
#pragma unroll 4
  for (int chunk = lane; chunk < chunks; chunk += 32) sum += chunk_dot(row + chunk * kPerChunk, x + chunk * kPerChunk);
  sum = warp_sum(sum);
  if (lane == 0) y[r] = sum;
}

// ---- dispatch -------------------------------------------------------------------------------------
template <typename T>
void launch(GemvVersion version, const T* w, const float* x, float* y, int rows, int cols, cudaStream_t stream) {
  const unsigned warp_blocks = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  switch (version) {
    case GemvVersion::V1ThreadPerRow:
      gemv_v1_thread_per_row<<<unsigned((rows + kThreadsV1 - 1) / kThreadsV1), kThreadsV1, 0, stream>>>(w, x, y, rows, cols);
      break;
    case GemvVersion::V2WarpPerRow:
      gemv_v2_warp_per_row<<<warp_blocks, kThreadsWarpRows, 0, stream>>>(w, x, y, rows, cols);
      break;
    case GemvVersion::V3Vectorized:
      gemv_v3_vectorized<<<warp_blocks, kThreadsWarpRows, 0, stream>>>(w, x, y, rows, cols);
      break;
  }
  CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

}  // namespace

const char* gemv_version_name(GemvVersion version) {
  switch (version) {
    case GemvVersion::V1ThreadPerRow: return "v1_thread_per_row";
    case GemvVersion::V2WarpPerRow: return "v2_warp_per_row";
    case GemvVersion::V3Vectorized: return "v3_vectorized";
  }
  return "?";
}

bool gemv_v3_supported(const Matrix& weight, const float* x) {
  const size_t element_bytes = weight.dtype == DType::F32 ? 4 : 2;
  // Every row must start on a 16-byte boundary: the row length in bytes is a multiple of 16.
  return (size_t(weight.cols) * element_bytes) % 16 == 0 && aligned16(weight.data) && aligned16(x);
}

void gemv(GemvVersion version, const Matrix& weight, const float* x, float* y, cudaStream_t stream) {
  if (weight.rows <= 0 || weight.cols <= 0) return;
  if (version == GemvVersion::V3Vectorized && !gemv_v3_supported(weight, x))
    throw_error("cuda gemv v3: needs rows of whole 16-byte chunks and 16-byte aligned W and x (cols = " +
                std::to_string(weight.cols) + ")");
  switch (weight.dtype) {
    case DType::F32:
      launch(version, static_cast<const float*>(weight.data), x, y, weight.rows, weight.cols, stream);
      return;
    case DType::F16:
      launch(version, static_cast<const __half*>(weight.data), x, y, weight.rows, weight.cols, stream);
      return;
    case DType::BF16:
      launch(version, static_cast<const __nv_bfloat16*>(weight.data), x, y, weight.rows, weight.cols, stream);
      return;
    default:
      throw_error("cuda gemv: weights must be f32, f16 or bf16 (Weights converts at load)");
  }
}

}  // namespace infer::cuda
