// kv_store.cu: writing a pass's new keys and values into the KV pool at their slots (Backend::store_kv).
//
// Token t's K row (kv_dim floats) goes to row slot_mapping[t] of the layer's K pool, its V row likewise
// (batch.h: slot = block * block_size + offset in the block).
// Versions:
//   v1_thread_per_element: one thread per (token, element) in a grid-stride loop; consecutive threads
//                          write consecutive floats of a row, so both the reads and the writes coalesce.
//                          A slot outside the pool is skipped rather than written (the host validated the
//                          batch; a kernel cannot throw).
//   int8_v1_warp_per_row:  the int8 pool (KVDType::int8): one warp per (token, kv head, K or V) row; the lanes
//                          take the row's max |x| (warp_max), every lane then quantizes its strided values with
//                          scale = max / 127 and writes int8 values; lane 0 writes the scale. The arithmetic
//                          is cpu::quantize_row_int8's (IEEE division, round to nearest even), so the pool
//                          holds the same bytes on both backends (test_cuda_kv_int8.cpp passes on an H200, 2026-11-30).
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

namespace infer::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void store_kv_v1_thread_per_element(const float* new_k, const float* new_v, float* k_pool, float* v_pool,
                                               const int* slot_mapping, int n, int kv_dim, int num_slots) {
  const size_t count = size_t(n) * size_t(kv_dim);
  for (size_t index = size_t(blockIdx.x) * blockDim.x + threadIdx.x; index < count;
       index += size_t(gridDim.x) * blockDim.x) {
    const size_t t = index / size_t(kv_dim), j = index % size_t(kv_dim);
    const int slot = slot_mapping[t];
    if (slot < 0 || slot >= num_slots) continue;
    const size_t row = size_t(slot) * size_t(kv_dim);
    k_pool[row + j] = new_k[index];
    v_pool[row + j] = new_v[index];
  }
}

__global__ void store_kv_int8_v1_warp_per_row(const float* new_k, const float* new_v, Int8KVLayer pool,
                                              const int* slot_mapping, int n, int n_kv_heads, int head_dim,
                                              int num_slots) {
  const int warps_per_block = blockDim.x / 32;
  const size_t row = size_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;  // (token, kv head, K/V)
  const int lane = threadIdx.x % 32;
  if (row >= size_t(n) * n_kv_heads * 2) return;  // uniform per warp: the shuffles below stay full-warp
  const bool is_v = row % 2 == 1;
  const size_t head_row = row / 2;                // token * n_kv_heads + g
  const size_t t = head_row / size_t(n_kv_heads), g = head_row % size_t(n_kv_heads);
  const int slot = slot_mapping[t];
  if (slot < 0 || slot >= num_slots) return;
  const size_t kv_dim = size_t(n_kv_heads) * size_t(head_dim);
  const float* x = (is_v ? new_v : new_k) + t * kv_dim + g * size_t(head_dim);
  int8_t* q = (is_v ? pool.v : pool.k) + size_t(slot) * kv_dim + g * size_t(head_dim);
  float* scale_out = (is_v ? pool.v_scale : pool.k_scale) + size_t(slot) * size_t(n_kv_heads) + g;

  float max_abs = 0.0f;
  bool finite = true;
  for (int d = lane; d < head_dim; d += 32) {
    max_abs = fmaxf(max_abs, fabsf(x[d]));  // fmaxf drops a NaN, isfinite below catches it
    finite = finite && isfinite(x[d]);
  }
  max_abs = warp_max(max_abs);
  finite = __all_sync(kFullWarp, finite);
  const float scale = finite ? max_abs / 127.0f : nanf("");
  for (int d = lane; d < head_dim; d += 32) {
    int8_t value = 0;
    if (finite && scale != 0.0f) value = int8_t(fminf(fmaxf(rintf(__fdiv_rn(x[d], scale)), -127.0f), 127.0f));
    q[d] = value;
  }
  if (lane == 0) *scale_out = scale;
}

}  // namespace

void store_kv_int8(const float* new_k, const float* new_v, const Int8KVLayer& pool, const int* slot_mapping, int n,
                   int n_kv_heads, int head_dim, int num_slots, cudaStream_t stream) {
  if (n <= 0 || n_kv_heads <= 0 || head_dim <= 0) return;
  constexpr int kWarpsPerBlock = kThreads / 32;
  const size_t rows = size_t(n) * size_t(n_kv_heads) * 2;
  const unsigned blocks = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  store_kv_int8_v1_warp_per_row<<<blocks, kThreads, 0, stream>>>(new_k, new_v, pool, slot_mapping, n, n_kv_heads,
                                                                 head_dim, num_slots);
  CUDA_CHECK_LAUNCH();
}

void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
              int kv_dim, int num_slots, cudaStream_t stream) {
  if (n <= 0 || kv_dim <= 0) return;
  const size_t count = size_t(n) * size_t(kv_dim);
  store_kv_v1_thread_per_element<<<grid_for(count, kThreads), kThreads, 0, stream>>>(new_k, new_v, k_pool, v_pool,
                                                                                     slot_mapping, n, kv_dim, num_slots);
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
