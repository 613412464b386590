// batch_view_util.h: the kernels' view of a host-side Batch (CPU: backend memory is host memory), for the tests
// that call attention kernels directly.
#pragma once

#include "infer/model/backend.h"
#include "infer/model/batch.h"

#include <algorithm>

namespace infer::test {

inline BatchView view_of(const Batch& b) {
  BatchView v;
  v.n_tokens = b.n_tokens();
  v.n_sequences = b.n_sequences();
  v.block_size = b.block_size;
  v.max_blocks = b.max_blocks;
  v.max_context = *std::max_element(b.context_lens.begin(), b.context_lens.end());
  v.positions = b.positions.data();
  v.slot_mapping = b.slot_mapping.data();
  v.query_start = b.query_start.data();
  v.context_lens = b.context_lens.data();
  v.block_tables = b.block_tables.data();
  return v;
}

}  // namespace infer::test
