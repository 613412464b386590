// sequence_runner.cpp: one sequence's passes with rollback (sequence_runner.h).
#include "infer/engine/sequence_runner.h"

#include "infer/core/error.h"

#include <algorithm>
#include <cstdint>

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

bool SequenceRunner::can_adopt(const SequenceRunner& source, int layers) const {
  const PagedKVCache& mine = kv_cache();
  const PagedKVCache& theirs = source.kv_cache();
  return mine.dtype() == KVDType::f32 && theirs.dtype() == KVDType::f32 && mine.kv_dim() == theirs.kv_dim() &&
         layers >= 1 && layers <= mine.n_layers() && layers <= theirs.n_layers() && &mine.backend() == &theirs.backend();
}

void SequenceRunner::adopt_prefix(const SequenceRunner& source, int length, int layers) {
  if (!can_adopt(source, layers))
    fail("sequence runner: cannot copy {} layers of K/V from that cache (f32 caches of one kv_dim and backend only)", layers);
  if (length < 0 || length > source.length())
    fail("sequence runner: copy {} positions, but the source holds {}", length, source.length());
  if (length > capacity()) fail("sequence runner: {} positions do not fit the cache of {}", length, capacity());
  truncate(0);
  make_room(length);
  tokens_.assign(source.tokens().begin(), source.tokens().begin() + length);
  PagedKVCache& mine = mutable_kv_cache();
  const PagedKVCache& theirs = source.kv_cache();
  Backend& backend = mine.backend();
  const size_t kv_dim = size_t(mine.kv_dim());
  // Runs of positions whose slots are consecutive in both caches (a block, or all of a contiguous cache).
  for (int p = 0; p < length;) {
    int end = p + 1;
    while (end < length && slot(end) == slot(end - 1) + 1 && source.slot(end) == source.slot(end - 1) + 1) ++end;
    const size_t to = size_t(slot(p)) * kv_dim, from = size_t(source.slot(p)) * kv_dim, count = size_t(end - p) * kv_dim;
    for (int l = 0; l < layers; ++l) {
      backend.copy(mine.k(l) + to, theirs.k(l) + from, count);
      backend.copy(mine.v(l) + to, theirs.v(l) + from, count);
    }
    p = end;
  }
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

void ContiguousSequenceRunner::make_room(int /*length*/) {}  // the whole cache is reserved up front

// ---- PagedSequenceRunner ----------------------------------------------------------------------------

int PagedSequenceRunner::slot(int position) const {
  const int block_size = cache_.block_size();
  return blocks()[size_t(position / block_size)] * block_size + position % block_size;
}

void PagedSequenceRunner::make_room(int length) {
  if (!blocks_.can_reserve(id_, length))
    fail("sequence runner: {} positions need {} blocks of {} but the pool has {} free", length,
         blocks_.blocks_for(length) - int(blocks().size()), cache_.block_size(), blocks_.num_free());
  blocks_.reserve(id_, length);
}

PagedSequenceRunner::PagedSequenceRunner(Transformer& model, PagedKVCache& cache, BlockManager& blocks)
    : SequenceRunner(model),
      cache_(cache),
      blocks_(blocks),
      id_(SeqId(reinterpret_cast<uintptr_t>(this))) {  // unique among the live runners sharing `blocks`
  if (blocks.num_blocks() != cache.num_blocks() || blocks.block_size() != cache.block_size())
    fail("sequence runner: the block manager has {} blocks of {}, the cache {} of {}", blocks.num_blocks(),
         blocks.block_size(), cache.num_blocks(), cache.block_size());
  blocks_.allocate(id_, {}, 0);
}

PagedSequenceRunner::~PagedSequenceRunner() { blocks_.free(id_); }

int PagedSequenceRunner::capacity() const {
  return (int(blocks().size()) + blocks_.num_free()) * cache_.block_size();
}

ForwardStats PagedSequenceRunner::extend(std::span<const int> tokens, float* logits, bool all_rows) {
  const int n = int(tokens.size());
  if (n == 0) fail("sequence runner: extend() with no tokens");
  if (!blocks_.can_reserve(id_, length() + n))
    fail("sequence runner: positions [{}, {}) need {} more blocks of {} but the pool has {} free", length(),
         length() + n, blocks_.blocks_for(length() + n) - int(blocks().size()), cache_.block_size(),
         blocks_.num_free());
  blocks_.reserve(id_, length() + n);
  Batch batch(cache_.block_size());
  batch.add_sequence(tokens, length(), blocks(), all_rows ? LogitsFor::all : LogitsFor::last);
  const ForwardStats stats = model_.forward(batch, cache_, logits);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  return stats;
}

void PagedSequenceRunner::truncate(int length) {
  if (length < 0 || length > this->length())
    fail("sequence runner: truncate to {} positions, but the cache holds {}", length, this->length());
  tokens_.resize(size_t(length));
  blocks_.truncate(id_, length);  // blocks past the last one the remaining positions use go back at once
}

std::unique_ptr<SequenceRunner> make_sequence_runner(Transformer& model, int capacity, KVStorage storage) {
  if (!storage.paged()) return std::make_unique<ContiguousSequenceRunner>(model, capacity);
  if (storage.cache == nullptr) fail("sequence runner: a block manager without its paged cache");
  return std::make_unique<PagedSequenceRunner>(model, *storage.cache, *storage.blocks);
}

}  // namespace infer
