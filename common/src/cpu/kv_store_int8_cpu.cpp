// kv_store_int8_cpu.cpp: writing a pass's new keys and values into an int8 KV pool (KVDType::int8, ch07).
//
// The same slots as cpu::store_kv (kv_store_cpu.cpp), but each (token, kv head) row of head_dim floats is
// stored as head_dim int8 values plus one float scale (symmetric, scale = max|x| / 127), so the attention
// kernel (paged_attention_v4_int8) reads a quarter of the bytes plus 4 per row. One scale per row of
// head_dim (64 for SmolLM2) keeps the error of a value at most half its row's step; a row with one large
// value costs its small values precision, which the quality numbers of ch07 measure.
#include "infer/core/error.h"
#include "infer/cpu/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace infer::cpu {

float quantize_row_int8(const float* x, int n, int8_t* q) {
  float max_abs = 0.0f;
  for (int i = 0; i < n; ++i) max_abs = std::max(max_abs, std::fabs(x[i]));  // NaN is dropped by max: checked below
  bool finite = std::isfinite(max_abs);
  for (int i = 0; i < n && finite; ++i) finite = std::isfinite(x[i]);
  if (!finite) {
    std::fill(q, q + n, int8_t(0));
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float scale = max_abs / 127.0f;
  if (scale == 0.0f) {
    std::fill(q, q + n, int8_t(0));
    return 0.0f;
  }
  for (int i = 0; i < n; ++i) {
    // |x / scale| <= 127 up to rounding; the clamp keeps a rounding up to 127.0000x inside int8.
    const float r = std::nearbyint(x[i] / scale);
    q[i] = int8_t(std::clamp(r, -127.0f, 127.0f));
  }
  return scale;
}

void store_kv_int8(const float* new_k, const float* new_v, const Int8KVLayer& pool, const int* slot_mapping, int n,
                   int n_kv_heads, int head_dim, int num_slots) {
  // Every slot is checked before anything is written, so a bad batch leaves the pool as it was.
  for (int t = 0; t < n; ++t)
    if (slot_mapping[t] < 0 || slot_mapping[t] >= num_slots)
      fail("KV store (int8): token {} maps to slot {}, outside the pool of {} slots", t, slot_mapping[t], num_slots);
  const size_t kv_dim = size_t(n_kv_heads) * size_t(head_dim);
  for (int t = 0; t < n; ++t) {
    const size_t slot = size_t(slot_mapping[t]);
    for (int g = 0; g < n_kv_heads; ++g) {
      const size_t src = size_t(t) * kv_dim + size_t(g) * head_dim;
      const size_t dst = slot * kv_dim + size_t(g) * head_dim;
      const size_t scale = slot * size_t(n_kv_heads) + size_t(g);
      pool.k_scale[scale] = quantize_row_int8(new_k + src, head_dim, pool.k + dst);
      pool.v_scale[scale] = quantize_row_int8(new_v + src, head_dim, pool.v + dst);
    }
  }
}

}  // namespace infer::cpu
