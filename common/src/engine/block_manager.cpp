// block_manager.cpp: block tables and the prefix cache of the paged KV cache (block_manager.h says what each
// piece means). The allocation core (take_free_block, release, reserve, free) is in block_manager_alloc.cpp,
// the ch06 lab's exercise.
#include "infer/engine/block_manager.h"

#include "infer/core/error.h"

#include <algorithm>

namespace infer {

BlockManager::BlockManager(int num_blocks, int block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching) {
  if (num_blocks <= 0 || block_size <= 0)
    fail("block manager: num_blocks ({}) and block_size ({}) must be positive", num_blocks, block_size);
  blocks_.resize(size_t(num_blocks));
  for (int b = 0; b < num_blocks; ++b) blocks_[size_t(b)].free_pos = free_list_.insert(free_list_.end(), b);
}

// A 64-bit mix of the parent's hash and the block's token ids (splitmix64 steps). Deterministic across runs
// and machines; collisions are possible in principle and are caught by the token comparison on a hit.
uint64_t BlockManager::chain_hash(uint64_t parent, std::span<const int> tokens) {
  auto mix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  uint64_t h = mix(parent);
  for (int token : tokens) h = mix(h ^ uint64_t(uint32_t(token)));
  return h;
}

std::vector<int> BlockManager::match_prefix(std::span<const int> tokens) const {
  std::vector<int> matched;
  if (!prefix_caching_ || tokens.empty()) return matched;
  const int max_blocks = int((tokens.size() - 1) / size_t(block_size_));  // keep the last token to compute
  uint64_t hash = kRootHash;
  int parent = -1;
  for (int j = 0; j < max_blocks; ++j) {
    const std::span<const int> block_tokens = tokens.subspan(size_t(j) * block_size_, size_t(block_size_));
    hash = chain_hash(hash, block_tokens);
    const auto found = index_.find(hash);
    if (found == index_.end()) break;
    const Block& block = blocks_[size_t(found->second)];
    const bool same_parent =
        block.parent == parent && (parent < 0 || block.parent_generation == blocks_[size_t(parent)].generation);
    if (!same_parent || !std::equal(block_tokens.begin(), block_tokens.end(), block.tokens.begin(), block.tokens.end()))
      break;  // a hash collision: not the same prefix
    matched.push_back(found->second);
    parent = found->second;
  }
  return matched;
}

int BlockManager::cached_blocks(std::span<const int> tokens) const { return int(match_prefix(tokens).size()); }

bool BlockManager::can_allocate(std::span<const int> tokens, int positions) const {
  const std::vector<int> hits = match_prefix(tokens);
  const int fresh = std::max(0, blocks_for(positions) - int(hits.size()));
  const int hits_in_free_list = int(std::count_if(hits.begin(), hits.end(), [&](int b) { return is_free(b); }));
  return fresh + hits_in_free_list <= num_free();
}

int BlockManager::allocate(SeqId seq, std::span<const int> tokens, int positions) {
  if (has(seq)) fail("block manager: sequence {} is already allocated", seq);
  if (positions < 0) fail("block manager: sequence {} asks for {} positions", seq, positions);
  if (!can_allocate(tokens, positions))
    fail("block manager: sequence {} needs {} blocks for {} positions but only {} of {} are free", seq,
         blocks_for(positions), positions, num_free(), num_blocks());
  const std::vector<int> hits = match_prefix(tokens);
  if (prefix_caching_ && !tokens.empty()) {
    stats_.lookups += uint64_t((tokens.size() - 1) / size_t(block_size_));
    stats_.hit_blocks += hits.size();
    stats_.hit_tokens += uint64_t(hits.size()) * uint64_t(block_size_);
  }
  Sequence& s = sequences_[seq];
  s.admitted_tokens = int(tokens.size());
  for (int block : hits) {
    take_cached_block(block);
    s.table.push_back(block);
  }
  s.registered = int(hits.size());
  while (int(s.table.size()) < blocks_for(positions)) s.table.push_back(take_free_block());
  return int(hits.size()) * block_size_;
}

bool BlockManager::can_reserve(SeqId seq, int positions) const {
  const Sequence& s = sequence(seq);
  return blocks_for(positions) - int(s.table.size()) <= num_free();
}

void BlockManager::mark_computed(SeqId seq, std::span<const int> tokens, int computed) {
  Sequence& s = sequence(seq);
  if (!prefix_caching_) return;
  if (int64_t(tokens.size()) < computed)
    fail("block manager: sequence {} marks {} positions computed but gives {} tokens", seq, computed, tokens.size());
  const int registrable = std::min(computed, s.admitted_tokens) / block_size_;
  for (int j = s.registered; j < registrable && j < int(s.table.size()); ++j) {
    const int parent = j > 0 ? s.table[size_t(j) - 1] : -1;
    // The parent's hash: the chain continues only through registered blocks.
    if (parent >= 0 && !blocks_[size_t(parent)].registered) {
      s.registered = registrable;  // another sequence registered this prefix first; ours stays private
      return;
    }
    const std::span<const int> block_tokens = tokens.subspan(size_t(j) * block_size_, size_t(block_size_));
    const uint64_t hash = chain_hash(parent >= 0 ? blocks_[size_t(parent)].hash : kRootHash, block_tokens);
    Block& block = blocks_[size_t(s.table[size_t(j)])];
    if (index_.count(hash)) {
      s.registered = registrable;
      return;
    }
    block.registered = true;
    block.hash = hash;
    block.parent = parent;
    block.parent_generation = parent >= 0 ? blocks_[size_t(parent)].generation : 0;
    block.tokens.assign(block_tokens.begin(), block_tokens.end());
    index_[hash] = s.table[size_t(j)];
    s.registered = j + 1;
  }
}

void BlockManager::truncate(SeqId seq, int positions) {
  Sequence& s = sequence(seq);
  if (positions < 0) fail("block manager: sequence {} truncated to {} positions", seq, positions);
  const int keep = blocks_for(positions);
  // A registered block is never written again: refuse to cut into one (block keep - 1 partially kept).
  const int first_partial = positions / block_size_;
  if (first_partial < int(s.table.size()) && positions % block_size_ != 0 &&
      blocks_[size_t(s.table[size_t(first_partial)])].registered)
    fail("block manager: truncating sequence {} to {} positions would cut into its cached block {}", seq, positions,
         first_partial);
  if (keep < s.registered)
    fail("block manager: truncating sequence {} to {} positions would drop its cached blocks", seq, positions);
  while (int(s.table.size()) > keep) {
    release(s.table.back());
    s.table.pop_back();
  }
  s.admitted_tokens = std::min(s.admitted_tokens, positions);
}

const std::vector<int>& BlockManager::block_table(SeqId seq) const { return sequence(seq).table; }

void BlockManager::recycle(int b) {
  Block& block = blocks_[size_t(b)];
  ++block.generation;  // whatever pointed at its old content (a cached child's parent link) is now stale
  block.parent = -1;
  if (!block.registered) return;
  // Evict: its old prefix is gone from the cache.
  const auto found = index_.find(block.hash);
  if (found != index_.end() && found->second == b) index_.erase(found);
  block.registered = false;
  block.tokens.clear();
  ++stats_.evictions;
}

void BlockManager::take_cached_block(int b) {
  Block& block = blocks_[size_t(b)];
  if (block.ref == 0) free_list_.erase(block.free_pos);
  ++block.ref;
}

BlockManager::Sequence& BlockManager::sequence(SeqId seq) {
  const auto found = sequences_.find(seq);
  if (found == sequences_.end()) fail("block manager: unknown sequence {}", seq);
  return found->second;
}

const BlockManager::Sequence& BlockManager::sequence(SeqId seq) const {
  const auto found = sequences_.find(seq);
  if (found == sequences_.end()) fail("block manager: unknown sequence {}", seq);
  return found->second;
}

void BlockManager::check_invariants() const {
  std::vector<int> refs(blocks_.size(), 0);
  for (const auto& [id, s] : sequences_) {
    std::vector<int> sorted = s.table;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
      fail("block manager invariant: sequence {} holds a block twice", id);
    for (int b : s.table) {
      if (b < 0 || b >= num_blocks()) fail("block manager invariant: sequence {} holds block {}", id, b);
      ++refs[size_t(b)];
    }
  }
  std::vector<char> in_free_list(blocks_.size(), 0);
  for (int b : free_list_) {
    if (in_free_list[size_t(b)]) fail("block manager invariant: block {} twice in the free list", b);
    in_free_list[size_t(b)] = 1;
  }
  for (int b = 0; b < num_blocks(); ++b) {
    const Block& block = blocks_[size_t(b)];
    if (block.ref != refs[size_t(b)])
      fail("block manager invariant: block {} has ref count {} but {} table entries", b, block.ref, refs[size_t(b)]);
    if ((block.ref == 0) != bool(in_free_list[size_t(b)]))
      fail("block manager invariant: block {} (ref {}) is {} the free list", b, block.ref,
           in_free_list[size_t(b)] ? "in" : "not in");
    if (block.registered && (!index_.count(block.hash) || block.tokens.size() != size_t(block_size_)))
      fail("block manager invariant: registered block {} is not indexed with its tokens", b);
  }
  for (const auto& [hash, b] : index_)
    if (!blocks_[size_t(b)].registered || blocks_[size_t(b)].hash != hash)
      fail("block manager invariant: the index names block {} which is not registered under that hash", b);
}

}  // namespace infer
