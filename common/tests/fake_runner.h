// fake_runner.h: a tiny stand-in model for the engine's scheduler tests.
//
// It keeps a fake KV pool: each slot holds what a real pass would derive from the token written there
// (here: token id and position). The "logits" after position p are a pseudo-random function of everything
// the sequence's block table leads to in slots [0, p], so a wrong block table, a prefix hit on the wrong
// block, a stale block after preemption or a slot overwritten by another sequence changes the output. The
// reference (fake_reference_tokens) computes the same function from the token list alone, without any cache:
// what a request decoded alone must produce.
#pragma once

#include "infer/core/error.h"
#include "infer/engine/batch_runner.h"
#include "infer/engine/sampler.h"

#include <cstdint>
#include <vector>

namespace infer::test {

inline uint64_t fake_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline int64_t fake_slot_value(int token, int position) { return int64_t(token) * 1000003 + position; }

// The logits after a context whose slot values fold to `h`.
inline void fake_logits(uint64_t h, int vocab, float* out) {
  for (int v = 0; v < vocab; ++v) out[v] = float(fake_mix(h ^ (uint64_t(v) << 40)) % 10007) / 1000.0f;
}

class FakeRunner : public BatchRunner {
 public:
  FakeRunner(int num_blocks, int block_size, int vocab = 50, int context = 512, int max_pass = 4096)
      : num_blocks_(num_blocks), block_size_(block_size), vocab_(vocab), context_(context), max_pass_(max_pass),
        slots_(size_t(num_blocks) * block_size, -1) {}
  int vocab_size() const override { return vocab_; }
  int context_length() const override { return context_; }
  int max_pass_tokens() const override { return max_pass_; }
  int num_blocks() const override { return num_blocks_; }
  int block_size() const override { return block_size_; }
  uint64_t bytes_per_block() const override { return uint64_t(block_size_) * 8; }

  ForwardStats forward(const Batch& batch, float* logits_out) override {
    batch.validate(num_blocks_);
    ++passes;
    max_sequences_seen = std::max(max_sequences_seen, batch.n_sequences());
    max_tokens_seen = std::max(max_tokens_seen, batch.n_tokens());
    // Write every new token's slot first (a real pass writes K/V before attending), then read.
    for (int t = 0; t < batch.n_tokens(); ++t) slots_[size_t(batch.slot_mapping[t])] = fake_slot_value(batch.tokens[t], batch.positions[t]);
    size_t row = 0;
    for (int s = 0; s < batch.n_sequences(); ++s) {
      for (int t = batch.query_start[s]; t < batch.query_start[s + 1]; ++t) {
        if (row >= batch.logits_rows.size() || batch.logits_rows[row] != t) continue;
        const std::span<const int> table = batch.block_table(s);
        uint64_t h = 0;
        for (int p = 0; p <= batch.positions[t]; ++p)
          h = fake_mix(h ^ uint64_t(slots_[size_t(table[size_t(p / block_size_)]) * block_size_ + p % block_size_]));
        fake_logits(h, vocab_, logits_out + row * size_t(vocab_));
        ++row;
      }
    }
    return {};
  }

  int passes = 0;
  int max_sequences_seen = 0;
  int max_tokens_seen = 0;

 private:
  int num_blocks_, block_size_, vocab_, context_, max_pass_;
  std::vector<int64_t> slots_;
};

// What a request produces decoded alone: the same logits function over its own tokens, sampled with its
// own Sampler, stopping like the engine does (stop tokens unless ignore_eos, max_tokens).
inline std::vector<int> fake_reference_tokens(std::vector<int> prompt, int vocab, int max_tokens,
                                              const SamplerConfig& config, const std::vector<int>& stop_tokens = {}) {
  Sampler sampler(config);
  std::vector<int> out;
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::vector<int> seq = prompt;
  while (int(out.size()) < max_tokens) {
    uint64_t h = 0;
    for (int p = 0; p < int(seq.size()); ++p) h = fake_mix(h ^ uint64_t(fake_slot_value(seq[size_t(p)], p)));
    fake_logits(h, vocab, logits.data());
    const int token = sampler.sample(logits, seq);
    if (std::find(stop_tokens.begin(), stop_tokens.end(), token) != stop_tokens.end()) break;
    out.push_back(token);
    seq.push_back(token);
  }
  return out;
}

}  // namespace infer::test
