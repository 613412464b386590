// sequence_runner.cpp: one sequence's passes with rollback (sequence_runner.h).
#include "infer/engine/sequence_runner.h"

#include "infer/core/error.h"

#include <algorithm>

namespace infer {

int SequenceRunner::sync(std::span<const int> sequence, int keep_out, float* logits) {
  // Longest common prefix of what the cache holds and what it should hold.
  const size_t limit = std::min(tokens_.size(), sequence.size());
  size_t common = 0;
  while (common < limit && tokens_[common] == sequence[common]) ++common;
  if (common < tokens_.size()) truncate(int(common));
  const int end = int(sequence.size()) - keep_out;
  if (end <= int(common)) return 0;
  // In chunks the model's activation buffers take (a long prompt on the first call).
  for (int begin = int(common); begin < end;) {
    const int count = std::min(end - begin, model_.max_tokens());
    extend(sequence.subspan(size_t(begin), size_t(count)), logits, /*all_rows=*/false);
    begin += count;
  }
  return end - int(common);
}

ContiguousSequenceRunner::ContiguousSequenceRunner(Transformer& model, int capacity)
    : SequenceRunner(model), cache_(model.backend(), model.config(), capacity) {
  tokens_.reserve(size_t(capacity));
}

ForwardStats ContiguousSequenceRunner::extend(std::span<const int> tokens, float* logits, bool all_rows) {
  const int n = int(tokens.size());
  if (n == 0) fail("sequence runner: extend() with no tokens");
  if (length() + n > capacity())
    fail("sequence runner: positions [{}, {}) do not fit the cache of {} positions", length(), length() + n, capacity());
  ForwardStats stats;
  if (all_rows) {
    last_.resize(size_t(config().vocab_size));
    stats = model_.forward(tokens, length(), cache_, last_.data(), logits);
  } else {
    stats = model_.forward(tokens, length(), cache_, logits);
  }
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  return stats;
}

void ContiguousSequenceRunner::truncate(int length) {
  if (length < 0 || length > this->length())
    fail("sequence runner: truncate to {} positions, but the cache holds {}", length, this->length());
  // The K/V rows past `length` stay in memory until the next extend() overwrites them; attention
  // never reads past the positions a pass declares, so they are already gone as far as the model knows.
  tokens_.resize(size_t(length));
}

// ---- BlockPool --------------------------------------------------------------------------------------

BlockPool::BlockPool(int num_blocks) : allocated_(size_t(std::max(num_blocks, 0)), false) {
  if (num_blocks <= 0) fail("block pool: num_blocks must be positive (got {})", num_blocks);
  for (int block = num_blocks - 1; block >= 0; --block) free_.push_back(block);  // block 0 on top
}

int BlockPool::allocate() {
  if (free_.empty()) fail("block pool: all {} blocks are in use", num_blocks());
  const int block = free_.back();
  free_.pop_back();
  allocated_[size_t(block)] = true;
  return block;
}

void BlockPool::release(int block) {
  if (block < 0 || block >= num_blocks() || !allocated_[size_t(block)])
    fail("block pool: block {} is not allocated (pool of {})", block, num_blocks());
  allocated_[size_t(block)] = false;
  free_.push_back(block);
}

// ---- PagedSequenceRunner ----------------------------------------------------------------------------

PagedSequenceRunner::PagedSequenceRunner(Transformer& model, PagedKVCache& cache, BlockPool& pool)
    : SequenceRunner(model), cache_(cache), pool_(pool) {
  if (pool.num_blocks() != cache.num_blocks())
    fail("sequence runner: the block pool has {} blocks, the cache {}", pool.num_blocks(), cache.num_blocks());
}

PagedSequenceRunner::~PagedSequenceRunner() {
  for (int block : blocks_) pool_.release(block);
}

int PagedSequenceRunner::capacity() const {
  return (int(blocks_.size()) + pool_.free_blocks()) * cache_.block_size();
}

ForwardStats PagedSequenceRunner::extend(std::span<const int> tokens, float* logits, bool all_rows) {
  const int n = int(tokens.size());
  if (n == 0) fail("sequence runner: extend() with no tokens");
  const int block_size = cache_.block_size();
  const int needed = (length() + n + block_size - 1) / block_size;
  if (needed - int(blocks_.size()) > pool_.free_blocks())
    fail("sequence runner: positions [{}, {}) need {} more blocks of {} but the pool has {} free", length(),
         length() + n, needed - int(blocks_.size()), block_size, pool_.free_blocks());
  while (int(blocks_.size()) < needed) blocks_.push_back(pool_.allocate());
  Batch batch(block_size);
  batch.add_sequence(tokens, length(), blocks_, all_rows ? LogitsFor::all : LogitsFor::last);
  const ForwardStats stats = model_.forward(batch, cache_, logits);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  return stats;
}

void PagedSequenceRunner::truncate(int length) {
  if (length < 0 || length > this->length())
    fail("sequence runner: truncate to {} positions, but the cache holds {}", length, this->length());
  tokens_.resize(size_t(length));
  // Blocks past the last one the remaining positions use go back to the pool at once.
  const size_t keep = size_t((length + cache_.block_size() - 1) / cache_.block_size());
  while (blocks_.size() > keep) {
    pool_.release(blocks_.back());
    blocks_.pop_back();
  }
}

std::unique_ptr<SequenceRunner> make_sequence_runner(Transformer& model, int capacity, KVStorage storage) {
  if (!storage.paged()) return std::make_unique<ContiguousSequenceRunner>(model, capacity);
  if (storage.cache == nullptr) fail("sequence runner: a block pool without its paged cache");
  return std::make_unique<PagedSequenceRunner>(model, *storage.cache, *storage.pool);
}

}  // namespace infer
