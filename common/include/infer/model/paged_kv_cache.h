// paged_kv_cache.h: the KV storage of the batching engine (ch06): one pool of fixed-size blocks per layer.
//
// Layout per layer: (num_blocks, block_size, n_kv_heads, head_dim) for K and the same for V, fp32, in the
// backend's memory. Slot s = block * block_size + offset holds one position's K (or V) row of kv_dim floats at
// k(layer) + s * kv_dim. Which blocks belong to which sequence is not stored here: the host-side BlockManager
// (engine/block_manager.h) owns that bookkeeping and hands block tables to each pass through Batch (batch.h).
// A contiguous cache of max_seq positions is the special case of one sequence owning blocks 0, 1, 2, ...
//
// KVDType::int8 (ch07): the same slots, each row of kv_dim int8 values at k_int8(layer).k + s * kv_dim, plus
// one float scale per (slot, kv head) at k_scale + s * n_kv_heads + g (symmetric per token and head, see
// backend.h); the same for V. Bytes per position over all layers:
//   f32:  2 * n_layers * kv_dim * 4
//   int8: 2 * n_layers * (kv_dim * 1 + n_kv_heads * 4)     (SmolLM2-135M: 12,240 vs 46,080 bytes, 26.6%)
#pragma once

#include "infer/core/model_config.h"
#include "infer/model/backend.h"

#include <cstdint>

namespace infer {

class PagedKVCache {
 public:
  // Throws infer::Error up front, naming the sizes, when the pool does not fit in backend.available_memory(),
  // or when num_blocks / block_size are not positive.
  // dtype int8 on a backend without the int8 ops (supports_int8_kv() false): infer::Error naming both.
  PagedKVCache(Backend& backend, const ModelConfig& config, int num_blocks, int block_size,
               KVDType dtype = KVDType::f32);

  KVDType dtype() const { return dtype_; }
  // The f32 pool of a layer (dtype f32; an int8 cache throws infer::Error).
  float* k(int layer) { return keys_.data() + f32_offset(layer); }
  float* v(int layer) { return values_.data() + f32_offset(layer); }
  const float* k(int layer) const { return keys_.data() + f32_offset(layer); }
  const float* v(int layer) const { return values_.data() + f32_offset(layer); }
  // The int8 pool of a layer (dtype int8; an f32 cache throws infer::Error).
  Int8KVLayer int8_layer(int layer);
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int n_layers() const { return n_layers_; }
  int kv_dim() const { return kv_dim_; }  // n_kv_heads * head_dim: floats per slot
  int capacity_tokens() const { return num_blocks_ * block_size_; }
  // Bytes of K and V (scales included) one position holds over all layers (the formulas above).
  uint64_t bytes_per_position() const { return bytes_per_position(n_layers_, kv_dim_, n_kv_heads_, dtype_); }
  static uint64_t bytes_per_position(const ModelConfig& config, KVDType dtype) {
    return bytes_per_position(config.n_layers, config.kv_dim(), config.n_kv_heads, dtype);
  }
  static uint64_t bytes_per_position(int n_layers, int kv_dim, int n_kv_heads, KVDType dtype);
  // Bytes of one position's K row (or V row) of one layer: kv_dim * 4, or kv_dim + n_kv_heads * 4 for int8.
  uint64_t row_bytes() const { return bytes_per_position() / (2ull * uint64_t(n_layers_)); }
  // Bytes of K and V one block holds over all layers: block_size * bytes_per_position().
  uint64_t bytes_per_block() const;
  uint64_t capacity_bytes() const {
    return keys_.bytes() + values_.bytes() + keys8_.bytes() + values8_.bytes() + k_scales_.bytes() + v_scales_.bytes();
  }
  Backend& backend() { return *backend_; }
  const Backend& backend() const { return *backend_; }

 private:
  Backend* backend_;
  int num_blocks_;
  int block_size_;
  int kv_dim_;
  int n_layers_;
  int n_kv_heads_;
  KVDType dtype_;
  size_t layer_stride_;        // num_blocks * block_size * kv_dim values
  // f32: (n_layers, num_blocks, block_size, n_kv_heads, head_dim) each; empty for int8.
  DeviceArray<float> keys_;
  DeviceArray<float> values_;
  // int8: the same shape in int8, and the scales (n_layers, num_blocks, block_size, n_kv_heads); empty for f32.
  DeviceArray<int8_t> keys8_, values8_;
  DeviceArray<float> k_scales_, v_scales_;
  size_t f32_offset(int layer) const;
};

}  // namespace infer
