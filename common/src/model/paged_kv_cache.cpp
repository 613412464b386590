// paged_kv_cache.cpp: the block pool's storage (paged_kv_cache.h) and ch05's one-sequence cache (kv_cache.h).
#include "infer/model/paged_kv_cache.h"

#include "infer/core/error.h"
#include "infer/core/memory_budget.h"
#include "infer/model/kv_cache.h"

namespace infer {

PagedKVCache::PagedKVCache(Backend& backend, const ModelConfig& config, int num_blocks, int block_size)
    : backend_(&backend), num_blocks_(num_blocks), block_size_(block_size), kv_dim_(config.kv_dim()),
      n_layers_(config.n_layers) {
  if (num_blocks <= 0 || block_size <= 0)
    fail("paged KV cache: num_blocks and block_size must be positive (got {} and {})", num_blocks, block_size);
  if (n_layers_ <= 0 || kv_dim_ <= 0) fail("paged KV cache: the model has {} layers of kv_dim {}", n_layers_, kv_dim_);
  layer_stride_ = size_t(num_blocks) * size_t(block_size) * size_t(kv_dim_);
  // Refused up front when it cannot fit: blocks x (K + V bytes of block_size positions over all layers).
  const uint64_t per_block = bytes_per_block();
  check_fits_in_memory(fmt::format("paged KV cache: {} blocks x {} per block ({} positions each)", num_blocks,
                                   format_bytes(per_block), block_size),
                       per_block * uint64_t(num_blocks), backend.available_memory(), backend.name());
  keys_ = DeviceArray<float>(backend, size_t(n_layers_) * layer_stride_);
  values_ = DeviceArray<float>(backend, size_t(n_layers_) * layer_stride_);
}

uint64_t PagedKVCache::bytes_per_block() const {
  // 2 (K and V) * n_layers * block_size * kv_dim * sizeof(float)
  return 2ull * uint64_t(n_layers_) * uint64_t(block_size_) * uint64_t(kv_dim_) * sizeof(float);
}

// ---- ch05's cache: one sequence, one block of max_seq positions ------------------------------------------
namespace {

// The ch05 check, in its own terms (positions), before the pool is built.
int checked_max_seq(Backend& backend, const ModelConfig& config, int max_seq) {
  if (max_seq <= 0) fail("KV cache: max_seq must be positive (got {})", max_seq);
  const uint64_t per_position = 2ull * uint64_t(config.n_layers) * uint64_t(config.kv_dim()) * sizeof(float);
  check_fits_in_memory(fmt::format("KV cache: {} positions x {} per position", max_seq, format_bytes(per_position)),
                       per_position * uint64_t(max_seq), backend.available_memory(), backend.name());
  return max_seq;
}

}  // namespace

KVCache::KVCache(Backend& backend, const ModelConfig& config, int max_seq)
    : PagedKVCache(backend, config, /*num_blocks=*/1, checked_max_seq(backend, config, max_seq)) {}

uint64_t KVCache::bytes_for(int tokens) const {
  // 2 (K and V) * n_layers * n_kv_heads * head_dim * sizeof(float) * tokens
  return 2ull * uint64_t(n_layers()) * uint64_t(kv_dim()) * sizeof(float) * uint64_t(tokens);
}

}  // namespace infer
