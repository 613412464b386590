// kv_cache.h: contiguous per-layer key/value storage.
//
// Layout per layer: (max_seq, n_kv_heads, head_dim) for K and the same for V, fp32. Position p of
// layer l starts at k(l) + p * kv_dim. Size: 2 * n_layers * max_seq * n_kv_heads * head_dim * 4 bytes.
// The storage lives in the backend's memory (GPU memory for CUDA): write it through append(), which
// copies with Backend::copy, never with memcpy.
#pragma once

#include "infer/model/backend.h"
#include "infer/core/model_config.h"

#include <cstdint>

namespace infer {

class KVCache {
 public:
  // Throws infer::Error up front, naming the sizes, when max_seq positions do not fit in
  // backend.available_memory().
  KVCache(Backend& backend, const ModelConfig& config, int max_seq);

  float* k(int layer) { return keys_.data() + size_t(layer) * layer_stride_; }
  float* v(int layer) { return values_.data() + size_t(layer) * layer_stride_; }
  int max_seq() const { return max_seq_; }
  int n_layers() const { return n_layers_; }
  int kv_dim() const { return kv_dim_; }  // n_kv_heads * head_dim: floats per position
  // Writes a pass's new keys and values into layer `layer` at positions [start_pos, start_pos + n):
  //   new_k, new_v (n, n_kv_heads, head_dim) in the backend's memory -> rows start_pos .. start_pos + n - 1
  // and touches nothing else. Throws infer::Error when the layer or the range is outside the cache.
  // (kv_cache_append.cpp; the ch05 lab's exercise 1.)
  void append(int layer, int start_pos, const float* new_k, const float* new_v, int n);
  // Bytes of K and V stored for `tokens` positions over all layers (the ch05 formula).
  uint64_t bytes_for(int tokens) const;
  uint64_t capacity_bytes() const { return keys_.bytes() + values_.bytes(); }

 private:
  Backend* backend_;              // owns the memory below; append() copies through it
  int max_seq_;
  int kv_dim_;
  int n_layers_;
  size_t layer_stride_;          // max_seq * kv_dim floats
  DeviceArray<float> keys_;      // (n_layers, max_seq, n_kv_heads, head_dim)
  DeviceArray<float> values_;    // (n_layers, max_seq, n_kv_heads, head_dim)
};

}  // namespace infer
