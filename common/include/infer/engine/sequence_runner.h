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
//   PagedSequenceRunner       ch06's PagedKVCache: blocks taken from a BlockPool as the sequence grows and
//                             given back as soon as a rollback leaves them empty (and all of them at the end)
// Several runners (a target and its draft, when their shapes agree) may share one pool and one cache.
#pragma once

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

  // Makes the cache hold a prefix of `sequence` and runs the rest of it but its last `keep_out` tokens
  // (logits of the last one run to `logits`, if any ran): truncates to the longest common prefix of
  // tokens() and `sequence`, then extends (in chunks of at most model().max_tokens()). Returns the tokens
  // run (0: nothing to do).
  int sync(std::span<const int> sequence, int keep_out, float* logits);

 protected:
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

 private:
  KVCache cache_;
  std::vector<float> last_;  // (vocab_size) scratch when only the last row is wanted
};

// Which blocks of a PagedKVCache are free, for sequences run one at a time (ch08). The batching engine's
// BlockManager does the same for many sequences, with reference counts and prefix caching.
class BlockPool {
 public:
  explicit BlockPool(int num_blocks);
  // A free block; throws infer::Error naming the pool's size when none is left.
  int allocate();
  // Gives `block` back; throws infer::Error for a block that is not allocated (a double free).
  void release(int block);
  int free_blocks() const { return int(free_.size()); }
  int num_blocks() const { return int(allocated_.size()); }

 private:
  std::vector<int> free_;        // a stack: the block freed last is reused first
  std::vector<bool> allocated_;  // (num_blocks)
};

// ch06's paged cache: the sequence's block table grows block by block from `pool`; truncate() gives back
// every block past the new length; the destructor gives back the rest.
class PagedSequenceRunner : public SequenceRunner {
 public:
  PagedSequenceRunner(Transformer& model, PagedKVCache& cache, BlockPool& pool);
  ~PagedSequenceRunner() override;
  PagedSequenceRunner(const PagedSequenceRunner&) = delete;
  PagedSequenceRunner& operator=(const PagedSequenceRunner&) = delete;
  ForwardStats extend(std::span<const int> tokens, float* logits, bool all_rows) override;
  void truncate(int length) override;
  // Positions it could hold: what its blocks hold plus every free block of the pool.
  int capacity() const override;
  const std::vector<int>& blocks() const { return blocks_; }

 private:
  PagedKVCache& cache_;
  BlockPool& pool_;
  std::vector<int> blocks_;  // the block table: logical block j is pool block blocks_[j]
};

// Where a runner keeps its K/V: no pool = a contiguous cache of its own (ch05); else blocks of `cache` taken
// from `pool` (ch06), which the runners of one generation (target and draft) may share.
struct KVStorage {
  PagedKVCache* cache = nullptr;
  BlockPool* pool = nullptr;
  bool paged() const { return pool != nullptr; }
};

// A runner for `model` over `storage`; `capacity` sizes the contiguous cache (unused when paged).
std::unique_ptr<SequenceRunner> make_sequence_runner(Transformer& model, int capacity, KVStorage storage = {});

}  // namespace infer
