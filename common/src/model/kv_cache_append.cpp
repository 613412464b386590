// kv_cache_append.cpp: KVCache::append, writing a pass's new keys and values into the cache.
//
// Layer l's keys are max_seq rows of kv_dim = n_kv_heads * head_dim floats, row p = position p, so
// the n new rows of a pass at start_pos are one contiguous block: rows [start_pos, start_pos + n)
// starting at k(l) + start_pos * kv_dim (the same for V). One Backend::copy per tensor moves the
// block: the cache and the pass's k/v live in the backend's memory (GPU memory for CUDA), where a
// host memcpy cannot reach.
// Its own file so that the ch05 lab can swap in a student's version (ch05_kv_cache/lab/).
#include "infer/core/error.h"
#include "infer/model/kv_cache.h"

#include <cstdint>

namespace infer {

void KVCache::append(int layer, int start_pos, const float* new_k, const float* new_v, int n) {
  if (layer < 0 || layer >= n_layers_) fail("KV cache: layer {} does not exist (the cache has {} layers)", layer, n_layers_);
  if (n < 0 || start_pos < 0 || int64_t(start_pos) + n > max_seq_)
    fail("KV cache: positions [{}, {}) do not fit the cache of {} positions", start_pos, int64_t(start_pos) + n, max_seq_);
  const size_t offset = size_t(start_pos) * kv_dim_;  // the first new row
  const size_t count = size_t(n) * kv_dim_;            // n rows of (n_kv_heads, head_dim)
  backend_->copy(k(layer) + offset, new_k, count);
  backend_->copy(v(layer) + offset, new_v, count);
}

}  // namespace infer
