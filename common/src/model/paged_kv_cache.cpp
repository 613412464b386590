// paged_kv_cache.cpp: the block pool's storage (paged_kv_cache.h) and ch05's one-sequence cache (kv_cache.h).
#include "infer/model/paged_kv_cache.h"

#include "infer/core/error.h"
#include "infer/core/memory_budget.h"
#include "infer/model/kv_cache.h"

namespace infer {

PagedKVCache::PagedKVCache(Backend& backend, const ModelConfig& config, int num_blocks, int block_size,
                           KVDType dtype)
    : backend_(&backend), num_blocks_(num_blocks), block_size_(block_size), kv_dim_(config.kv_dim()),
      n_layers_(config.n_layers), n_kv_heads_(config.n_kv_heads), dtype_(dtype) {
  if (num_blocks <= 0 || block_size <= 0)
    fail("paged KV cache: num_blocks and block_size must be positive (got {} and {})", num_blocks, block_size);
  if (n_layers_ <= 0 || kv_dim_ <= 0) fail("paged KV cache: the model has {} layers of kv_dim {}", n_layers_, kv_dim_);
  if (dtype == KVDType::int8 && !backend.supports_int8_kv())
    fail("{}: the int8 KV cache (--kv-cache int8) is not implemented on this backend; use --kv-cache f32",
         backend.name());
  layer_stride_ = size_t(num_blocks) * size_t(block_size) * size_t(kv_dim_);
  // Refused up front when it cannot fit: blocks x (K + V bytes of block_size positions over all layers).
  const uint64_t per_block = bytes_per_block();
  check_fits_in_memory(fmt::format("paged KV cache: {} blocks x {} per block ({} positions each, {})", num_blocks,
                                   format_bytes(per_block), block_size, kv_dtype_name(dtype)),
                       per_block * uint64_t(num_blocks), backend.available_memory(), backend.name());
  const size_t values = size_t(n_layers_) * layer_stride_;
  if (dtype == KVDType::f32) {
    keys_ = DeviceArray<float>(backend, values);
    values_ = DeviceArray<float>(backend, values);
  } else {
    const size_t scales = size_t(n_layers_) * size_t(num_blocks) * size_t(block_size) * size_t(n_kv_heads_);
    keys8_ = DeviceArray<int8_t>(backend, values);
    values8_ = DeviceArray<int8_t>(backend, values);
    k_scales_ = DeviceArray<float>(backend, scales);
    v_scales_ = DeviceArray<float>(backend, scales);
  }
}

uint64_t PagedKVCache::bytes_per_position(int n_layers, int kv_dim, int n_kv_heads, KVDType dtype) {
  // f32:  2 (K and V) * n_layers * kv_dim * sizeof(float)
  // int8: 2 (K and V) * n_layers * (kv_dim * sizeof(int8_t) + n_kv_heads * sizeof(float))
  const uint64_t row = dtype == KVDType::f32 ? uint64_t(kv_dim) * sizeof(float)
                                             : uint64_t(kv_dim) + uint64_t(n_kv_heads) * sizeof(float);
  return 2ull * uint64_t(n_layers) * row;
}

uint64_t PagedKVCache::bytes_per_block() const { return uint64_t(block_size_) * bytes_per_position(); }

size_t PagedKVCache::f32_offset(int layer) const {
  if (dtype_ != KVDType::f32) fail("paged KV cache: k()/v() give the f32 pool, but this cache is {}", kv_dtype_name(dtype_));
  return size_t(layer) * layer_stride_;
}

Int8KVLayer PagedKVCache::int8_layer(int layer) {
  if (dtype_ != KVDType::int8) fail("paged KV cache: int8_layer() of a {} cache", kv_dtype_name(dtype_));
  const size_t scale_stride = layer_stride_ / size_t(kv_dim_) * size_t(n_kv_heads_);
  return Int8KVLayer{keys8_.data() + size_t(layer) * layer_stride_, values8_.data() + size_t(layer) * layer_stride_,
                     k_scales_.data() + size_t(layer) * scale_stride, v_scales_.data() + size_t(layer) * scale_stride};
}

// ---- ch05's cache: one sequence, one block of max_seq positions ------------------------------------------
namespace {

// The ch05 check, in its own terms (positions), before the pool is built.
int checked_max_seq(Backend& backend, const ModelConfig& config, int max_seq, KVDType dtype) {
  if (max_seq <= 0) fail("KV cache: max_seq must be positive (got {})", max_seq);
  const uint64_t per_position = PagedKVCache::bytes_per_position(config, dtype);
  check_fits_in_memory(fmt::format("KV cache: {} positions x {} per position", max_seq, format_bytes(per_position)),
                       per_position * uint64_t(max_seq), backend.available_memory(), backend.name());
  return max_seq;
}

}  // namespace

KVCache::KVCache(Backend& backend, const ModelConfig& config, int max_seq, KVDType dtype)
    : PagedKVCache(backend, config, /*num_blocks=*/1, checked_max_seq(backend, config, max_seq, dtype), dtype) {}

uint64_t KVCache::bytes_for(int tokens) const {
  // f32: 2 (K and V) * n_layers * n_kv_heads * head_dim * sizeof(float) * tokens (int8: see bytes_per_position)
  return bytes_per_position() * uint64_t(tokens);
}

}  // namespace infer
