// kv_store.cu: writing a pass's new keys and values into the KV pool at their slots (Backend::store_kv).
//
// Token t's K row (kv_dim floats) goes to row slot_mapping[t] of the layer's K pool, its V row likewise
// (batch.h: slot = block * block_size + offset in the block).
// Versions:
//   v1_thread_per_element: one thread per (token, element) in a grid-stride loop; consecutive threads
//                          write consecutive floats of a row, so both the reads and the writes coalesce.
//                          A slot outside the pool is skipped rather than written (the host validated the
//                          batch; a kernel cannot throw).
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

}  // namespace

void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
              int kv_dim, int num_slots, cudaStream_t stream) {
  if (n <= 0 || kv_dim <= 0) return;
  const size_t count = size_t(n) * size_t(kv_dim);
  store_kv_v1_thread_per_element<<<grid_for(count, kThreads), kThreads, 0, stream>>>(new_k, new_v, k_pool, v_pool,
                                                                                     slot_mapping, n, kv_dim, num_slots);
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
