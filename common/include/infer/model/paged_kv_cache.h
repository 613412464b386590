// paged_kv_cache.h: the KV storage of the batching engine (ch06): one pool of fixed-size blocks per layer.
//
// Layout per layer: (num_blocks, block_size, n_kv_heads, head_dim) for K and the same for V, fp32, in the
// backend's memory. Slot s = block * block_size + offset holds one position's K (or V) row of kv_dim floats at
// k(layer) + s * kv_dim. Which blocks belong to which sequence is not stored here: the host-side BlockManager
// (engine/block_manager.h) owns that bookkeeping and hands block tables to each pass through Batch (batch.h).
// A contiguous cache of max_seq positions is the special case of one sequence owning blocks 0, 1, 2, ...
#pragma once

#include "infer/core/model_config.h"
#include "infer/model/backend.h"

#include <cstdint>

namespace infer {

class PagedKVCache {
 public:
  // Throws infer::Error up front, naming the sizes, when the pool does not fit in backend.available_memory(),
  // or when num_blocks / block_size are not positive.
  PagedKVCache(Backend& backend, const ModelConfig& config, int num_blocks, int block_size);

  float* k(int layer) { return keys_.data() + size_t(layer) * layer_stride_; }
  float* v(int layer) { return values_.data() + size_t(layer) * layer_stride_; }
  const float* k(int layer) const { return keys_.data() + size_t(layer) * layer_stride_; }
  const float* v(int layer) const { return values_.data() + size_t(layer) * layer_stride_; }
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int n_layers() const { return n_layers_; }
  int kv_dim() const { return kv_dim_; }  // n_kv_heads * head_dim: floats per slot
  int capacity_tokens() const { return num_blocks_ * block_size_; }
  // Bytes of K and V one block holds over all layers: 2 * n_layers * block_size * kv_dim * 4.
  uint64_t bytes_per_block() const;
  uint64_t capacity_bytes() const { return keys_.bytes() + values_.bytes(); }
  Backend& backend() { return *backend_; }

 private:
  Backend* backend_;
  int num_blocks_;
  int block_size_;
  int kv_dim_;
  int n_layers_;
  size_t layer_stride_;        // num_blocks * block_size * kv_dim floats
  DeviceArray<float> keys_;    // (n_layers, num_blocks, block_size, n_kv_heads, head_dim)
  DeviceArray<float> values_;  // (n_layers, num_blocks, block_size, n_kv_heads, head_dim)
};

}  // namespace infer
