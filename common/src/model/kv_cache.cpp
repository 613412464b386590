// kv_cache.cpp: contiguous KV cache allocation and its size formula.
#include "infer/model/kv_cache.h"

#include "infer/core/error.h"
#include "infer/core/memory_budget.h"

namespace infer {

KVCache::KVCache(Backend& backend, const ModelConfig& config, int max_seq)
    : backend_(&backend), max_seq_(max_seq), kv_dim_(config.kv_dim()), n_layers_(config.n_layers),
      layer_stride_(size_t(max_seq) * config.kv_dim()) {
  if (max_seq <= 0) fail("KV cache: max_seq must be positive (got {})", max_seq);
  // Refused up front when it cannot fit: positions x (K + V bytes per position over all layers).
  const uint64_t per_position = bytes_for(1);
  check_fits_in_memory(fmt::format("KV cache: {} positions x {} per position", max_seq, format_bytes(per_position)),
                       per_position * uint64_t(max_seq), backend.available_memory(), backend.name());
  keys_ = DeviceArray<float>(backend, size_t(n_layers_) * layer_stride_);
  values_ = DeviceArray<float>(backend, size_t(n_layers_) * layer_stride_);
}

uint64_t KVCache::bytes_for(int tokens) const {
  // 2 (K and V) * n_layers * n_kv_heads * head_dim * sizeof(float) * tokens
  return 2ull * n_layers_ * kv_dim_ * sizeof(float) * uint64_t(tokens);
}

}  // namespace infer
