// batch.cpp: building and checking the ragged-batch descriptor (batch.h).
#include "infer/model/batch.h"

#include "infer/core/error.h"

#include <algorithm>

namespace infer {

int Batch::add_sequence(std::span<const int> new_tokens, int start_pos, std::span<const int> blocks, LogitsFor logits) {
  if (block_size <= 0) fail("batch: block_size must be positive (got {})", block_size);
  const int n = int(new_tokens.size());
  if (n == 0) fail("batch: sequence {} has no new tokens", n_sequences());
  if (start_pos < 0) fail("batch: sequence {} starts at negative position {}", n_sequences(), start_pos);
  const int64_t context = int64_t(start_pos) + n;
  const int64_t needed = (context + block_size - 1) / block_size;
  if (int64_t(blocks.size()) < needed)
    fail("batch: sequence {} needs {} blocks of {} for positions [0, {}) but has {}", n_sequences(), needed, block_size,
         context, blocks.size());
  for (int b : blocks)
    if (b < 0) fail("batch: sequence {} has a negative block id {}", n_sequences(), b);

  // Widen block_tables when this sequence has more blocks than any before it (re-pad the rows).
  const int width = std::max(max_blocks, int(blocks.size()));
  if (width != max_blocks) {
    std::vector<int> wider(size_t(n_sequences()) * width, -1);
    for (int s = 0; s < n_sequences(); ++s)
      std::copy_n(block_tables.begin() + ptrdiff_t(s) * max_blocks, max_blocks, wider.begin() + ptrdiff_t(s) * width);
    block_tables = std::move(wider);
    max_blocks = width;
  }
  const size_t row = block_tables.size();
  block_tables.resize(row + size_t(max_blocks), -1);
  std::copy(blocks.begin(), blocks.end(), block_tables.begin() + ptrdiff_t(row));

  const int first_row = n_tokens();
  for (int t = 0; t < n; ++t) {
    const int pos = start_pos + t;
    tokens.push_back(new_tokens[t]);
    positions.push_back(pos);
    slot_mapping.push_back(blocks[size_t(pos / block_size)] * block_size + pos % block_size);
  }
  query_start.push_back(n_tokens());
  context_lens.push_back(int(context));

  const int first_logit = int(logits_rows.size());
  if (logits == LogitsFor::last) logits_rows.push_back(first_row + n - 1);
  if (logits == LogitsFor::all)
    for (int t = 0; t < n; ++t) logits_rows.push_back(first_row + t);
  return logits == LogitsFor::none ? -1 : first_logit;
}

void Batch::validate(int num_blocks) const {
  const int T = n_tokens(), S = n_sequences();
  if (block_size <= 0) fail("batch: block_size must be positive (got {})", block_size);
  if (T == 0 || S == 0) fail("batch: empty ({} tokens, {} sequences)", T, S);
  if (positions.size() != size_t(T) || slot_mapping.size() != size_t(T))
    fail("batch: {} tokens but {} positions and {} slots", T, positions.size(), slot_mapping.size());
  if (query_start.size() != size_t(S) + 1 || query_start.front() != 0 || query_start.back() != T)
    fail("batch: query_start must have {} entries from 0 to {}", S + 1, T);
  if (block_tables.size() != size_t(S) * size_t(max_blocks))
    fail("batch: block_tables has {} entries, expected {} sequences x {}", block_tables.size(), S, max_blocks);
  for (int s = 0; s < S; ++s) {
    const int q0 = query_start[s], q1 = query_start[s + 1];
    if (q1 <= q0) fail("batch: sequence {} has no new tokens", s);
    const int context = context_lens[s];
    if (positions[q1 - 1] != context - 1)
      fail("batch: sequence {}'s last new token is at position {} but its context is {}", s, positions[q1 - 1], context);
    if (int64_t(context) > int64_t(max_blocks) * block_size)
      fail("batch: sequence {}'s context of {} exceeds its {} blocks of {}", s, context, max_blocks, block_size);
    const std::span<const int> table = block_table(s);
    for (int j = 0; j * block_size < context; ++j)
      if (table[j] < 0 || table[j] >= num_blocks)
        fail("batch: sequence {}'s block {} is {}, outside the pool of {} blocks", s, j, table[j], num_blocks);
    for (int t = q0; t < q1; ++t) {
      if (t > q0 && positions[t] != positions[t - 1] + 1)
        fail("batch: sequence {}'s positions are not consecutive at token {}", s, t);
      const int pos = positions[t];
      if (slot_mapping[t] != table[pos / block_size] * block_size + pos % block_size)
        fail("batch: token {} (sequence {}, position {}) maps to slot {}, not its block's slot", t, s, pos,
             slot_mapping[t]);
    }
  }
  for (size_t i = 0; i < logits_rows.size(); ++i)
    if (logits_rows[i] < 0 || logits_rows[i] >= T || (i > 0 && logits_rows[i] <= logits_rows[i - 1]))
      fail("batch: logits_rows[{}] = {} is out of order or outside [0, {})", i, logits_rows[i], T);
}

}  // namespace infer
