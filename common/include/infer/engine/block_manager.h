// block_manager.h: the host-side bookkeeping of the paged KV cache (ch06): which pool block holds which
// positions of which sequence. The storage itself is PagedKVCache (model/paged_kv_cache.h); this class never
// touches it, it only hands out block ids.
//
//   free list     blocks nobody uses, least recently freed first (the next one allocate() takes)
//   ref counts    how many sequences use a block (more than one when they share a cached prefix)
//   block tables  per sequence, the pool block of logical block 0, 1, 2, ... (positions j*bs .. j*bs+bs-1)
//
// Prefix caching: once every position of a block is computed, the block is registered under a chained hash
//   hash(block j) = mix(hash(block j-1), token ids of block j)        (hash(block -1) = a fixed seed)
// so equal hashes mean equal token prefixes (up to collisions, which are checked: see below). A request
// admitted later walks its prompt block by block and reuses every leading full block found in the table:
// ref count + 1, no prefill for those positions. A block is only reused after its token ids are compared
// and its parent is the block matched just before it (with the same reallocation generation), so a hash
// collision can never hand out the wrong K/V. When its last user frees it, a registered block goes to the
// back of the free list but stays in the table: it is found (and taken back out of the free list) until
// allocate() reuses it for something else, least recently freed first (LRU).
//
// Only blocks whose tokens were all given at admission are registered (the prompt, and for a sequence
// readmitted after preemption its prompt plus what it had generated): truncate() (rollback of speculative
// tokens, ch08) never cuts into a registered block.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace infer {

using SeqId = uint64_t;

struct BlockManagerStats {
  uint64_t lookups = 0;          // full blocks looked up at admission
  uint64_t hit_blocks = 0;       // ... of which found in the cache
  uint64_t hit_tokens = 0;       // prefill tokens saved (hit_blocks * block_size)
  uint64_t evictions = 0;        // registered blocks reused for something else
};

class BlockManager {
 public:
  // Throws infer::Error unless num_blocks and block_size are positive.
  BlockManager(int num_blocks, int block_size, bool prefix_caching);

  int num_blocks() const { return int(blocks_.size()); }
  int block_size() const { return block_size_; }
  int num_free() const { return int(free_list_.size()); }
  int num_used() const { return num_blocks() - num_free(); }
  bool prefix_caching() const { return prefix_caching_; }
  int blocks_for(int64_t positions) const { return int((positions + block_size_ - 1) / block_size_); }

  // ---- admission --------------------------------------------------------------------------------
  // Leading full blocks of `tokens` found in the prefix cache (0 when caching is off). At most
  // (tokens.size() - 1) / block_size: the last token is always computed, so a pass has a row to sample.
  int cached_blocks(std::span<const int> tokens) const;
  // Whether allocate(seq, tokens, positions) would succeed now.
  bool can_allocate(std::span<const int> tokens, int positions) const;
  // Registers a new sequence whose known tokens are `tokens`, reusing the cached leading blocks and
  // allocating fresh ones so that positions [0, positions) have a slot (positions >= the cached ones; a
  // chunked prefill asks for its first chunk only and grows with reserve()). Returns the number of cached
  // positions (a multiple of block_size): the sequence's computation starts there. Throws infer::Error if
  // the sequence exists or the blocks do not fit (check can_allocate first).
  int allocate(SeqId seq, std::span<const int> tokens, int positions);

  // ---- growth, bookkeeping, release -------------------------------------------------------------
  // Whether `seq` can grow to `positions` slots with the free blocks left.
  bool can_reserve(SeqId seq, int positions) const;
  // Allocates blocks until positions [0, positions) have a slot (nothing when they already do).
  void reserve(SeqId seq, int positions);
  // Tells the manager that positions [0, computed) of `seq` hold K/V (after a forward pass); registers the
  // full blocks among them that lie within the tokens given at allocate(). `tokens` are the sequence's
  // token ids (at least `computed` of them).
  void mark_computed(SeqId seq, std::span<const int> tokens, int computed);
  // Frees the blocks past the first `positions` positions (speculative rollback). Throws infer::Error if
  // that would cut into a registered (possibly shared) block.
  void truncate(SeqId seq, int positions);
  // Releases every block of `seq` (ref count - 1 each; last block first, so the tail of a prefix is evicted
  // before its head) and forgets the sequence. Unknown id: no-op.
  void free(SeqId seq);

  bool has(SeqId seq) const { return sequences_.count(seq) != 0; }
  const std::vector<int>& block_table(SeqId seq) const;
  int ref_count(int block) const { return blocks_.at(size_t(block)).ref; }
  bool is_free(int block) const { return blocks_.at(size_t(block)).ref == 0; }
  int num_sequences() const { return int(sequences_.size()); }
  const BlockManagerStats& stats() const { return stats_; }

  // Checks every invariant (ref counts = number of table entries naming the block, free list = exactly the
  // blocks with ref 0, no duplicates, the hash index points at registered blocks); throws infer::Error
  // naming the first violation. For tests; O(blocks + table entries).
  void check_invariants() const;

  static uint64_t chain_hash(uint64_t parent, std::span<const int> tokens);
  static constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ull;

 private:
  struct Block {
    int ref = 0;
    uint64_t generation = 0;   // + 1 each time the block is handed out fresh (its old content is gone)
    bool registered = false;   // in the hash index
    uint64_t hash = 0;
    int parent = -1;           // the block before it in the prefix it was registered for (-1: first)
    uint64_t parent_generation = 0;
    std::vector<int> tokens;   // its token ids, compared on every hit
    std::list<int>::iterator free_pos;
  };
  struct Sequence {
    std::vector<int> table;    // pool block of each logical block
    int admitted_tokens = 0;   // tokens given at allocate(): blocks within them may be registered
    int registered = 0;        // leading blocks registered (or matched) so far
  };

  // Walks the cache for `tokens`' leading full blocks; returns the matched block ids.
  std::vector<int> match_prefix(std::span<const int> tokens) const;
  // The allocation core (block_manager_alloc.cpp, the ch06 lab):
  int take_free_block();       // the least recently freed block, recycled, ref 1
  void release(int block);     // ref - 1; at 0 the block joins the back of the free list
  // Prefix cache side (block_manager.cpp):
  void recycle(int block);     // a free block is handed out fresh: drop its cache entry, bump its generation
  void take_cached_block(int block);  // a registered block hit at admission: ref + 1 (out of the free list if free)
  Sequence& sequence(SeqId seq);
  const Sequence& sequence(SeqId seq) const;

  int block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::list<int> free_list_;   // front: least recently freed
  std::unordered_map<uint64_t, int> index_;  // chained hash -> registered block
  std::unordered_map<SeqId, Sequence> sequences_;
  BlockManagerStats stats_;
};

}  // namespace infer
