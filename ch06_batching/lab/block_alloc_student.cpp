// block_alloc_student.cpp: ch06 lab: the allocation core of the paged KV cache's block manager.
//
// Built only with -DLAB=ch06 (scripts/lab.sh ch06), where it replaces common/src/engine/block_manager_alloc.cpp.
// The whole engine then runs on your four functions: every admission, every decode step that crosses into a
// new block, every finished, aborted or preempted request. Read ch06_batching/lab/README.md first; the class
// is declared in common/include/infer/engine/block_manager.h (its header comment explains the whole design).
//
// ---- The state you work with (members of BlockManager) --------------------------------------------------
//   blocks_      std::vector<Block>, one per pool block; blocks_[b].ref = how many block tables name block b
//   free_list_   std::list<int>: the blocks with ref 0, front = least recently freed = the next one to hand out.
//                Every block with ref 0 is in it exactly once, no other block is.
//   blocks_[b].free_pos   the std::list iterator of b inside free_list_ (set it when you insert b, so that a
//                prefix-cache hit can take b out of the list in O(1): take_cached_block does that)
//   sequence(seq)  the Sequence of id seq (throws infer::Error for an unknown id); .table is its block table:
//                table[j] = the pool block holding positions j*block_size .. j*block_size + block_size - 1
//   sequences_   std::unordered_map<SeqId, Sequence>
//   recycle(b)   call it on a block you take from the free list: it drops the block's old prefix-cache entry
//   num_free(), blocks_for(positions) = ceil(positions / block_size)
//
// ---- What to implement ----------------------------------------------------------------------------------
// 1. take_free_block(): throw an infer::Error (fail("...")) if the free list is empty; otherwise take the
//    block at the FRONT of free_list_ (least recently freed), recycle() it, set its ref count to 1, return it.
// 2. release(b): the block loses one user. Releasing a block whose ref is already 0 is a bug: throw. When the
//    count reaches 0 the block goes to the BACK of free_list_ (it was just freed: the most recent), and
//    blocks_[b].free_pos must remember where.
// 3. reserve(seq, positions): grow seq's block table until positions [0, positions) have a slot
//    (blocks_for(positions) blocks), taking blocks from the free list; if there are not enough free blocks,
//    throw before taking any. Asking for fewer positions than it already has changes nothing.
// 4. free(seq): release every block of seq's table, LAST block first (so the tail of a cached prompt is
//    reused before its head), then erase the sequence. An unknown id is not an error: do nothing.
#include "infer/core/error.h"
#include "infer/engine/block_manager.h"

namespace infer {

int BlockManager::take_free_block() {
  // TODO(student): exercise 1.
  fail("lab ch06: take_free_block is not implemented yet");
}

void BlockManager::release(int b) {
  // TODO(student): exercise 2.
}

void BlockManager::reserve(SeqId seq, int positions) {
  // TODO(student): exercise 3.
}

void BlockManager::free(SeqId seq) {
  // TODO(student): exercise 4.
}

}  // namespace infer
