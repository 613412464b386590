// batch.h: the descriptor of one forward pass over a ragged batch of sequences (ch06).
//
// A pass runs the new tokens of S sequences at once, each sequence at its own position, against one
// paged KV cache (paged_kv_cache.h). Everything the kernels need to find their way is in here and is
// passed to Transformer::forward explicitly; there is no global "current batch".
//
//   tokens        (T)      the new tokens, sequence after sequence (flattened, no padding)
//   positions     (T)      the position of each token in its own sequence
//   slot_mapping  (T)      the pool slot its K/V row goes to: block * block_size + offset in the block
//   query_start   (S + 1)  sequence s owns tokens [query_start[s], query_start[s + 1])
//   context_lens  (S)      positions of sequence s in the cache once this pass has written its rows
//                          (= position of its last new token + 1); its queries attend causally over them
//   block_tables  (S, max_blocks)  the pool block holding logical block j of sequence s; -1 past its end
//   logits_rows   (R)      the token rows whose logits the pass returns, ascending
//
// Example, block_size 4: sequence A prefills 3 tokens into block 7, sequence B (6 tokens cached in
// blocks 2, 5) decodes one:
//   tokens [a0 a1 a2 b6]  positions [0 1 2 6]  slot_mapping [28 29 30 22]  query_start [0 3 4]
//   context_lens [3 7]  block_tables [[7 -1] [2 5]]  logits_rows [2 3]
// ch05's single sequence is the case S = 1.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace infer {

// Which rows of a sequence's new tokens need logits.
enum class LogitsFor {
  none,  // a prefill chunk that is not the prompt's last: nothing is sampled after it
  last,  // the usual case: the next token is sampled after the last new token
  all,   // every new token (speculative verification, perplexity)
};

struct Batch {
  int block_size = 0;
  std::vector<int> tokens;
  std::vector<int> positions;
  std::vector<int> slot_mapping;
  std::vector<int> query_start{0};
  std::vector<int> context_lens;
  int max_blocks = 0;  // columns of block_tables
  std::vector<int> block_tables;
  std::vector<int> logits_rows;

  explicit Batch(int block_size_ = 0) : block_size(block_size_) {}

  int n_tokens() const { return int(tokens.size()); }
  int n_sequences() const { return int(context_lens.size()); }
  // Sequence s's row of block_tables (max_blocks entries, -1 past its last block).
  std::span<const int> block_table(int s) const {
    return std::span<const int>(block_tables).subspan(size_t(s) * max_blocks, size_t(max_blocks));
  }

  // Appends one sequence: `new_tokens` at positions [start_pos, start_pos + n), whose cache blocks
  // (logical order) are `blocks`, which must cover positions [0, start_pos + n). Returns the index
  // of the sequence's first row in logits_rows' output (the rows it asked for follow in order), or
  // -1 when it asked for none. Throws infer::Error naming the problem (no tokens, too few blocks,
  // a negative block id, block_size unset).
  int add_sequence(std::span<const int> new_tokens, int start_pos, std::span<const int> blocks, LogitsFor logits);

  // Checks every invariant above against a pool of `num_blocks` blocks (sizes agree, positions are
  // consecutive per sequence and end at context_len - 1, slots point into the sequence's own blocks,
  // logits_rows ascending and in range); throws infer::Error naming the first violation.
  void validate(int num_blocks) const;
};

}  // namespace infer
