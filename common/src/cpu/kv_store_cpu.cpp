// kv_store_cpu.cpp: cpu::store_kv, writing a pass's new keys and values into the KV pool.
//
// Each new token t owns one slot of the pool, slot_mapping[t] (batch.h): its K row (kv_dim = n_kv_heads *
// head_dim floats) goes to row slot_mapping[t] of the layer's K pool, its V row likewise. For ch05's single
// sequence, whose cache is blocks 0, 1, 2, ... in order, the slot of position p is p, so a pass at start_pos
// writes rows [start_pos, start_pos + n); with ch06's paged pool the rows land wherever the block table says.
// Its own file so that the ch05 lab can swap in a student's version (ch05_kv_cache/lab/).
#include "infer/core/error.h"
#include "infer/cpu/cpu_kernels.h"

#include <cstring>

namespace infer::cpu {

void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
              int kv_dim, int num_slots) {
  // Every slot is checked before anything is written, so a bad batch leaves the pool as it was.
  for (int t = 0; t < n; ++t)
    if (slot_mapping[t] < 0 || slot_mapping[t] >= num_slots)
      fail("KV store: token {} maps to slot {}, outside the pool of {} slots", t, slot_mapping[t], num_slots);
  const size_t row_bytes = size_t(kv_dim) * sizeof(float);
  for (int t = 0; t < n; ++t) {
    const size_t row = size_t(slot_mapping[t]) * size_t(kv_dim);
    std::memcpy(k_pool + row, new_k + size_t(t) * kv_dim, row_bytes);
    std::memcpy(v_pool + row, new_v + size_t(t) * kv_dim, row_bytes);
  }
}

}  // namespace infer::cpu
