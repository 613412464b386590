// block_manager_alloc.cpp: the allocation core of the BlockManager: taking a block from the free list,
// releasing one, growing a sequence's block table, freeing a sequence. (The ch06 lab's exercise:
// ch06_batching/lab/block_alloc_student.cpp replaces this file with -DLAB=ch06.)
//
//   free list   std::list<int> free_list_: front = least recently freed, the next block to hand out; a block
//               with ref 0 is in it exactly once (Block::free_pos is its position, for O(1) removal on a hit)
//   ref count   Block::ref: the number of block tables that name the block
#include "infer/core/error.h"
#include "infer/engine/block_manager.h"

namespace infer {

int BlockManager::take_free_block() {
  if (free_list_.empty()) fail("block manager: no free block ({} in use)", num_blocks());
  const int b = free_list_.front();
  free_list_.pop_front();
  recycle(b);  // its old contents (and prefix-cache entry) are gone
  blocks_[size_t(b)].ref = 1;
  return b;
}

void BlockManager::release(int b) {
  Block& block = blocks_[size_t(b)];
  if (block.ref <= 0) fail("block manager: block {} released more often than taken", b);
  if (--block.ref == 0) block.free_pos = free_list_.insert(free_list_.end(), b);
}

void BlockManager::reserve(SeqId seq, int positions) {
  Sequence& s = sequence(seq);
  const int needed = blocks_for(positions) - int(s.table.size());
  if (needed > num_free())
    fail("block manager: sequence {} needs {} more blocks for {} positions but only {} are free", seq, needed,
         positions, num_free());
  for (int i = 0; i < needed; ++i) s.table.push_back(take_free_block());
}

void BlockManager::free(SeqId seq) {
  const auto found = sequences_.find(seq);
  if (found == sequences_.end()) return;
  // Last block first: the tail of a cached prefix goes to the free list (and is evicted) before its head.
  const std::vector<int>& table = found->second.table;
  for (auto it = table.rbegin(); it != table.rend(); ++it) release(*it);
  sequences_.erase(found);
}

}  // namespace infer
