// attention.cu: causal multi-head attention with grouped KV heads (GQA), over a contiguous cache.
//
// For query t (absolute position p_t = start_pos + t) and head h, with kv head g = h / group:
//   score[p] = q_t,h . k_p,g / sqrt(head_dim)        for p in [0, p_t]
//   out_t,h  = sum_p softmax(score)[p] * v_p,g
// Versions:
//   v1_block_per_query_head: one block per (token, head). The block copies q into shared memory,
//                            each thread scores a strided set of positions (a head_dim-long dot
//                            product), the softmax takes a block max and a block sum (exp of
//                            score - max, so it cannot overflow) and divides, then each thread owns output
//                            dimensions and sums over positions (coalesced reads of V rows).
//                            The scores live in shared memory: (p_t + 1) floats, so contexts longer
//                            than the device's shared memory per block are refused with a clear
//                            error. Later chapters replace this with tiled (flash) attention.
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

#include <cmath>
#include <string>

namespace infer::cuda {
namespace {

constexpr int kThreads = 128;
constexpr size_t kDefaultSharedBytes = 48 * 1024;  // above this a kernel must opt in

__global__ void attention_v1_block_per_query_head(const float* q, const float* k_cache, const float* v_cache,
                                                  float* out, int start_pos, int n_heads, int n_kv_heads,
                                                  int head_dim, float scale) {
  extern __shared__ float shared[];
  float* q_shared = shared;                  // (head_dim)
  float* scores = shared + head_dim;         // (last + 1)

  const int h = blockIdx.x;                  // query head
  const int t = blockIdx.y;                  // query token in this pass
  const int last = start_pos + t;            // causal: positions [0, last]
  const int g = h / (n_heads / n_kv_heads);  // the kv head this query head reads
  const size_t kv_dim = size_t(n_kv_heads) * size_t(head_dim);
  const float* q_head = q + (size_t(t) * n_heads + h) * size_t(head_dim);

  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) q_shared[i] = q_head[i];
  __syncthreads();

  // ---- scores and their max ----------------------------------------------------------------
  float local_max = -FLT_MAX;
  for (int p = threadIdx.x; p <= last; p += blockDim.x) {
    const float* k_row = k_cache + size_t(p) * kv_dim + size_t(g) * head_dim;  // (head_dim)
    float dot = 0.0f;
    for (int i = 0; i < head_dim; ++i) dot += q_shared[i] * k_row[i];
    scores[p] = dot * scale;
    local_max = fmaxf(local_max, scores[p]);
  }
  const float max_score = block_max(local_max);  // also a barrier: every score is written

  // ---- softmax numerators and their sum -----------------------------------------------------
  float local_sum = 0.0f;
  for (int p = threadIdx.x; p <= last; p += blockDim.x) {
    scores[p] = expf(scores[p] - max_score);
    local_sum += scores[p];
  }
  const float sum = block_sum(local_sum);  // barrier again: every numerator is written
  for (int p = threadIdx.x; p <= last; p += blockDim.x) scores[p] /= sum;  // the softmax weights
  __syncthreads();

  // ---- weighted sum of the values: thread i owns output dimensions i, i + blockDim, ... ------
  const float* v_head = v_cache + size_t(g) * head_dim;  // row p at v_head + p * kv_dim
  float* out_head = out + (size_t(t) * n_heads + h) * size_t(head_dim);
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float acc = 0.0f;
    for (int p = 0; p <= last; ++p) acc += scores[p] * v_head[size_t(p) * kv_dim + i];
    out_head[i] = acc;
  }
}

}  // namespace

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
               int n_heads, int n_kv_heads, int head_dim, cudaStream_t stream) {
  if (n <= 0) return;
  if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || head_dim <= 0 || start_pos < 0)
    throw_error("cuda attention: bad shape (n_heads " + std::to_string(n_heads) + ", n_kv_heads " +
                std::to_string(n_kv_heads) + ", head_dim " + std::to_string(head_dim) + ", start_pos " +
                std::to_string(start_pos) + ")");
  if (n > 65535) throw_error("cuda attention: at most 65535 tokens per pass (grid y), got " + std::to_string(n));
  const int positions = start_pos + n;  // the last query sees them all
  const size_t shared_bytes = (size_t(head_dim) + size_t(positions)) * sizeof(float);  // dynamic: q + scores
  // The block reductions' static shared arrays (a few hundred bytes) count towards the same limit.
  constexpr size_t kStaticReserve = 1024;
  if (shared_bytes + kStaticReserve > kDefaultSharedBytes) {
    int device = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    cudaFuncAttributes attributes{};
    CUDA_CHECK(cudaFuncGetAttributes(&attributes, attention_v1_block_per_query_head));
    if (shared_bytes + attributes.sharedSizeBytes > size_t(optin))
      throw_error("cuda attention v1: " + std::to_string(positions) + " positions need " +
                  std::to_string(shared_bytes / 1024) + " KiB of shared memory for the scores, the device allows " +
                  std::to_string((size_t(optin) - attributes.sharedSizeBytes) / 1024) + " KiB per block");
    CUDA_CHECK(cudaFuncSetAttribute(attention_v1_block_per_query_head, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(shared_bytes)));
  }
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const dim3 grid{unsigned(n_heads), unsigned(n)};  // (heads, tokens)
  attention_v1_block_per_query_head<<<grid, kThreads, shared_bytes, stream>>>(q, k_cache, v_cache, out, start_pos,
                                                                              n_heads, n_kv_heads, head_dim, scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
