// sequence_runner.h: one sequence's passes through a model, with rollback (ch08 speculative decoding).
//
// Speculative decoding runs a model over several new tokens at once (the target scores gamma drafted
// tokens plus one in a single pass) and then forgets the positions it rejected. A SequenceRunner owns
// one sequence's KV cache and the tokens whose K/V it holds:
//   extend(tokens)   runs them at positions [length, length + n), keeps their K/V, returns logits
//   truncate(len)    forgets positions >= len: the next extend() overwrites their K/V (and the paged
//                    runner returns the blocks it no longer needs to its pool)
// Rollback never copies or recomputes anything: a causal model's K/V at position p depends only on
// tokens [0, p], so the cached prefix stays valid whatever is dropped after it.
//
// Both kinds of cache run through the one forward pass, Transformer::forward(Batch) (a batch of one sequence):
//   ContiguousSequenceRunner  ch05's KVCache (max_seq positions reserved up front, one block)
//   PagedSequenceRunner       ch06's PagedKVCache: blocks from the engine's BlockManager as the sequence grows,
//                             given back as soon as a rollback leaves them empty (and all of them at the end)
// Several runners (a target and its draft, when their shapes agree) may share one pool and one cache.
#pragma once

#include "infer/engine/block_manager.h"
#include "infer/model/kv_cache.h"
#include "infer/model/transformer.h"

#include <memory>
#include <span>
#include <vector>

namespace infer {

class SequenceRunner {
 public:
  virtual ~SequenceRunner() = default;

  // Runs `tokens` at positions [length(), length() + n) and keeps their K/V. Writes the logits of every
  // new token, (n, vocab_size) floats, to `logits` when all_rows, else only the last token's (vocab_size).
  // Throws infer::Error when the tokens do not fit the cache (capacity()) or the model's buffers.
  virtual ForwardStats extend(std::span<const int> tokens, float* logits, bool all_rows) = 0;
  // Forgets positions >= length (length <= this->length()).
  virtual void truncate(int length) = 0;
  // Positions the cache can hold.
  virtual int capacity() const = 0;

  int length() const { return int(tokens_.size()); }
  // The tokens whose K/V the cache holds, in order.
  const std::vector<int>& tokens() const { return tokens_; }
  const ModelConfig& config() const { return model_.config(); }
  Transformer& model() { return model_; }
  const Transformer& model() const { return model_; }

  // Makes the cache hold a prefix of `sequence` and runs the rest of it but its last `keep_out` tokens
  // (logits of the last one run to `logits`, if any ran): truncates to the longest common prefix of
  // tokens() and `sequence`, then extends (in chunks of at most model().max_tokens()). Returns the tokens
  // run (0: nothing to do).
  int sync(std::span<const int> sequence, int keep_out, float* logits);

  // Makes this cache hold `source`'s first `length` positions, copying their K/V for layers [0, layers)
  // instead of computing them: an early-exit draft over the target's own weights would compute exactly
  // those rows (the same layers, weights and tokens), so it takes them from the target's cache after the
  // target's prefill. Both caches must be f32 with one kv_dim, and layers <= both models' layer counts;
  // infer::Error otherwise (the caller then runs sync() instead: can_adopt says which).
  void adopt_prefix(const SequenceRunner& source, int length, int layers);
  bool can_adopt(const SequenceRunner& source, int layers) const;

  // Where position p of this sequence lives in kv_cache() (p < length()).
  virtual int slot(int position) const = 0;
  virtual const PagedKVCache& kv_cache() const = 0;

 protected:
  virtual PagedKVCache& mutable_kv_cache() = 0;
  // Room for positions [0, length) (a paged runner takes its blocks); the K/V rows are written after.
  virtual void make_room(int length) = 0;
  explicit SequenceRunner(Transformer& model) : model_(model) {}
  Transformer& model_;
  std::vector<int> tokens_;
};

// ch05's contiguous KVCache of `capacity` positions.
class ContiguousSequenceRunner : public SequenceRunner {
 public:
  ContiguousSequenceRunner(Transformer& model, int capacity);
  ForwardStats extend(std::span<const int> tokens, float* logits, bool all_rows) override;
  void truncate(int length) override;
  int capacity() const override { return cache_.max_seq(); }
  int slot(int position) const override { return position; }
  const PagedKVCache& kv_cache() const override { return cache_; }

 private:
  PagedKVCache& mutable_kv_cache() override { return cache_; }
  void make_room(int length) override;
  KVCache cache_;
  std::vector<float> last_;  // (vocab_size) scratch when only the last row is wanted
};

// ch06's paged cache: the sequence is registered with the engine's BlockManager (block_manager.h) for as long
// as the runner lives; its block table grows block by block (reserve), truncate() gives back every block past
// the new length at once (BlockManager::truncate), the destructor frees the rest.
class PagedSequenceRunner : public SequenceRunner {
 public:
  // `blocks` must describe `cache` (same block count and size). Throws infer::Error otherwise.
  PagedSequenceRunner(Transformer& model, PagedKVCache& cache, BlockManager& blocks);
  ~PagedSequenceRunner() override;
  PagedSequenceRunner(const PagedSequenceRunner&) = delete;
  PagedSequenceRunner& operator=(const PagedSequenceRunner&) = delete;
  ForwardStats extend(std::span<const int> tokens, float* logits, bool all_rows) override;
  void truncate(int length) override;
  // Positions it could hold: what its blocks hold plus every free block of the pool.
  int capacity() const override;
  // The block table: logical block j is pool block blocks()[j].
  const std::vector<int>& blocks() const { return blocks_.block_table(id_); }
  int slot(int position) const override;
  const PagedKVCache& kv_cache() const override { return cache_; }

 private:
  PagedKVCache& mutable_kv_cache() override { return cache_; }
  void make_room(int length) override;
  PagedKVCache& cache_;
  BlockManager& blocks_;
  SeqId id_;  // this runner's sequence in the block manager
};

// Where a runner keeps its K/V: no block manager = a contiguous cache of its own (ch05); else blocks of `cache` managed
// by `blocks` (ch06's BlockManager), which the runners of one generation (target and draft) may share.
struct KVStorage {
  PagedKVCache* cache = nullptr;
  BlockManager* blocks = nullptr;
  bool paged() const { return blocks != nullptr; }
};

// A runner for `model` over `storage`; `capacity` sizes the contiguous cache (unused when paged).
std::unique_ptr<SequenceRunner> make_sequence_runner(Transformer& model, int capacity, KVStorage storage = {});

}  // namespace infer
