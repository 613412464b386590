// kv_cache.h: ch05's KV cache, the one-sequence case of the paged pool (paged_kv_cache.h).
//
// One sequence owns the whole pool, and the pool is a single block of max_seq positions, so the layout per
// layer is the contiguous (max_seq, n_kv_heads, head_dim) table of ch05: position p of layer l starts at
// k(l) + p * kv_dim (the same for V). Size: 2 * n_layers * max_seq * n_kv_heads * head_dim * 4 bytes (f32;
// the int8 option stores int8 rows and a scale per position and kv head, see paged_kv_cache.h).
// Transformer::forward(tokens, start_pos, KVCache&, ...) runs a pass over it as a batch of that one sequence
// (slot of position p = p); the K/V of the new tokens are written by Backend::store_kv, which the pass calls.
#pragma once

#include "infer/core/model_config.h"
#include "infer/model/backend.h"
#include "infer/model/paged_kv_cache.h"

#include <cstdint>

namespace infer {

class KVCache : public PagedKVCache {
 public:
  // Throws infer::Error up front, naming the sizes, when max_seq positions do not fit in
  // backend.available_memory().
  KVCache(Backend& backend, const ModelConfig& config, int max_seq, KVDType dtype = KVDType::f32);

  int max_seq() const { return block_size(); }
  // Bytes of K and V stored for `tokens` positions over all layers (the ch05 formula; bytes_per_position()).
  uint64_t bytes_for(int tokens) const;
};

}  // namespace infer
