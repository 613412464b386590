// batch_runner.h: what the batching engine needs from a model: one forward pass over a Batch against the
// KV pool it owns. TransformerRunner is the real one (a Transformer over a PagedKVCache); tests plug in
// small fakes to drive the scheduler, and ch08 can reach the pool through the same interface.
#pragma once

#include "infer/model/batch.h"
#include "infer/model/paged_kv_cache.h"
#include "infer/model/transformer.h"

#include <cstdint>
#include <memory>

namespace infer {

class BatchRunner {
 public:
  virtual ~BatchRunner() = default;
  virtual int vocab_size() const = 0;
  virtual int context_length() const = 0;   // positions one sequence may hold
  virtual int max_pass_tokens() const = 0;  // new tokens one pass may take (all sequences together)
  virtual int num_blocks() const = 0;       // the KV pool
  virtual int block_size() const = 0;
  virtual uint64_t bytes_per_block() const = 0;  // K and V of one block over all layers
  // Writes the logits of batch.logits_rows, in order, to logits_out ((rows, vocab_size) floats, host).
  virtual ForwardStats forward(const Batch& batch, float* logits_out) = 0;
};

// A Transformer over a PagedKVCache of num_blocks x block_size positions in the model's backend.
class TransformerRunner : public BatchRunner {
 public:
  TransformerRunner(Transformer& model, int num_blocks, int block_size, KVDType kv_dtype = KVDType::f32);
  // (Defined in engine_transformer.cpp, out of line, so that code using only the BatchRunner interface
  // links without the model's paged forward pass.)
  int vocab_size() const override;
  int context_length() const override;
  int max_pass_tokens() const override;
  int num_blocks() const override;
  int block_size() const override;
  uint64_t bytes_per_block() const override;
  ForwardStats forward(const Batch& batch, float* logits_out) override;  // model.forward(batch, cache, ...)
  Transformer& model() { return model_; }
  PagedKVCache& cache() { return cache_; }

 private:
  Transformer& model_;
  PagedKVCache cache_;
};

}  // namespace infer
