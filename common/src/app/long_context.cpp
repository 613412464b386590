// long_context.cpp: prefill and decode speed against the context length (long_context.h).
#include "infer/app/long_context.h"

#include "infer/core/error.h"
#include "infer/core/timer.h"
#include "infer/model/batch.h"
#include "infer/model/paged_kv_cache.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <numeric>
#include <random>

#include <time.h>

namespace infer {
namespace {

// CPU time of the whole process (every thread), in milliseconds.
double process_cpu_ms() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return double(now.tv_sec) * 1000.0 + double(now.tv_nsec) * 1e-6;
}

}  // namespace

std::vector<ContextSpeed> measure_long_context(Transformer& model, std::span<const int> contexts, int decode_steps,
                                               int repeats, int block_size, uint64_t seed, KVDType kv_dtype) {
  if (contexts.empty()) fail("measure_long_context: no context lengths");
  if (decode_steps <= 0 || repeats <= 0 || block_size <= 0)
    fail("measure_long_context: decode_steps ({}), repeats ({}) and block_size ({}) must be positive", decode_steps,
         repeats, block_size);
  const ModelConfig& config = model.config();
  const int longest = *std::max_element(contexts.begin(), contexts.end());
  if (*std::min_element(contexts.begin(), contexts.end()) <= 0) fail("measure_long_context: a context length is not positive");
  if (longest > model.max_tokens())
    fail("measure_long_context: a {}-token prefill needs a Transformer built for {} tokens per pass (it has {})",
         longest, longest, model.max_tokens());
  if (int64_t(longest) + decode_steps > config.max_seq_len)
    fail("measure_long_context: {} + {} decode positions exceed the model's context of {}", longest, decode_steps,
         config.max_seq_len);

  // One sequence owning blocks 0, 1, 2, ... of a pool just large enough.
  const int total = longest + decode_steps;
  const int num_blocks = (total + block_size - 1) / block_size;
  PagedKVCache cache(model.backend(), config, num_blocks, block_size, kv_dtype);
  std::vector<int> blocks(static_cast<size_t>(num_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, config.vocab_size - 1);
  std::vector<int> tokens(static_cast<size_t>(total));
  for (int& t : tokens) t = token(rng);
  std::vector<float> logits(size_t(config.vocab_size));

  auto pass = [&](int start, int n) {
    Batch batch(block_size);
    batch.add_sequence(std::span<const int>(tokens.data() + start, size_t(n)), start, blocks, LogitsFor::last);
    return model.forward(batch, cache, logits.data());
  };

  std::vector<ContextSpeed> rows;
  for (int context : contexts) {
    ContextSpeed row;
    row.context = context;
    double best_prefill = std::numeric_limits<double>::infinity(), best_decode = best_prefill;
    for (int r = 0; r < repeats; ++r) {
      const auto prefill_start = std::chrono::steady_clock::now();
      const double prefill_cpu_start = process_cpu_ms();
      pass(0, context);
      const double prefill_ms = elapsed_ms(prefill_start);
      if (prefill_ms < best_prefill) {
        best_prefill = prefill_ms;
        row.prefill_cpu_ms = process_cpu_ms() - prefill_cpu_start;
      }
      const auto decode_start = std::chrono::steady_clock::now();
      const double decode_cpu_start = process_cpu_ms();
      for (int step = 0; step < decode_steps; ++step) {
        const ForwardStats stats = pass(context + step, 1);
        if (step == 0) {
          row.decode_kv_bytes = stats.kv_bytes;
          row.decode_weight_bytes = stats.weight_bytes;
        }
      }
      const double decode_ms = elapsed_ms(decode_start) / decode_steps;
      if (decode_ms < best_decode) {
        best_decode = decode_ms;
        row.decode_cpu_ms_per_token = (process_cpu_ms() - decode_cpu_start) / decode_steps;
      }
    }
    row.prefill_ms = best_prefill;
    row.prefill_tok_per_s = 1000.0 * context / best_prefill;
    row.decode_ms_per_token = best_decode;
    row.decode_tok_per_s = 1000.0 / best_decode;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace infer
