// engine_transformer.cpp: the Engine over a real Transformer: TransformerRunner and the KV pool's sizing.
// (Kept apart from engine.cpp so that the scheduler, tested with fake runners, links without the model.)
#include "infer/core/error.h"
#include "infer/engine/engine.h"

#include <algorithm>

namespace infer {

TransformerRunner::TransformerRunner(Transformer& model, int num_blocks, int block_size, KVDType kv_dtype)
    : model_(model), cache_(model.backend(), model.config(), num_blocks, block_size, kv_dtype) {}

int TransformerRunner::vocab_size() const { return model_.config().vocab_size; }
int TransformerRunner::context_length() const { return model_.config().max_seq_len; }
int TransformerRunner::max_pass_tokens() const { return model_.max_tokens(); }
int TransformerRunner::num_blocks() const { return cache_.num_blocks(); }
int TransformerRunner::block_size() const { return cache_.block_size(); }
uint64_t TransformerRunner::bytes_per_block() const { return cache_.bytes_per_block(); }

ForwardStats TransformerRunner::forward(const Batch& batch, float* logits_out) {
  return model_.forward(batch, cache_, logits_out);
}

namespace {

// Blocks for options: num_blocks if set, else kv_cache_bytes / bytes per block, else max_batch full
// contexts capped at 1 GiB.
int pool_blocks(const Transformer& model, const EngineOptions& options) {
  if (options.block_size <= 0) fail("engine: block_size must be positive (got {})", options.block_size);
  if (options.num_blocks > 0) return options.num_blocks;
  const ModelConfig& config = model.config();
  const uint64_t per_block = PagedKVCache::bytes_per_position(config, options.kv_dtype) * uint64_t(options.block_size);
  uint64_t bytes = options.kv_cache_bytes;
  if (bytes == 0) {
    const uint64_t contexts = uint64_t(std::max(options.max_batch, 1)) * uint64_t(config.max_seq_len);
    bytes = std::min<uint64_t>(contexts * per_block / uint64_t(options.block_size) + per_block, 1ull << 30);
  }
  const uint64_t blocks = bytes / per_block;
  if (blocks == 0)
    fail("engine: kv_cache_bytes {} is less than one block of {} positions ({} bytes)", bytes, options.block_size,
         per_block);
  return int(std::min<uint64_t>(blocks, uint64_t(1) << 30));
}

}  // namespace

Engine::Engine(Transformer& model, EngineOptions options)
    : Engine(std::make_unique<TransformerRunner>(model, pool_blocks(model, options), options.block_size,
                                                 options.kv_dtype),
             options) {}

}  // namespace infer
