// long_context.h: how prefill and decode speed change with the context length (ch06's long-context rows).
//
// For each context length C: one prefill pass of C prompt tokens (a one-sequence Batch over a PagedKVCache, the
// engine's own path), timed, then `decode_steps` one-token passes with C, C + 1, ... tokens already cached, timed.
// Every measurement is repeated `repeats` times and the fastest kept (on a shared machine the fastest run is the
// one least disturbed). The ratios the acceptance asks for are
//   decode_ratio  = decode tok/s at 2,048 cached tokens / decode tok/s at 32
//   prefill_ratio = prefill tok/s of a 2,048-token prompt / prefill tok/s of a 128-token prompt
// (measure_long_context(model, {32, 128, 2048}) gives all three rows in one run).
#pragma once

#include "infer/model/transformer.h"

#include <cstdint>
#include <span>
#include <vector>

namespace infer {

struct ContextSpeed {
  int context = 0;                  // prompt tokens prefilled, = tokens cached when decode starts
  double prefill_ms = 0.0;          // the prompt's one pass (fastest of the repeats)
  double prefill_tok_per_s = 0.0;   // context / prefill time
  double decode_ms_per_token = 0.0; // one decode step with `context`.. tokens cached (fastest repeat, mean over steps)
  double decode_tok_per_s = 0.0;
  uint64_t decode_kv_bytes = 0;     // K/V bytes one decode step reads and writes (ForwardStats), first step
  uint64_t decode_weight_bytes = 0; // weight bytes of one decode step
  // Process CPU time (all threads) of the same fastest runs: on a machine shared with other work, the work
  // done is steadier than the wall time (with one thread, CPU time ~ the unloaded wall time).
  double prefill_cpu_ms = 0.0;
  double decode_cpu_ms_per_token = 0.0;
};

// `model` must take max(contexts) tokens per pass (Transformer max_tokens) and the model's context must hold
// max(contexts) + decode_steps positions; throws infer::Error naming the sizes otherwise. Tokens are seeded
// random ids (the speed does not depend on them). Progress goes to nowhere: the caller prints.
std::vector<ContextSpeed> measure_long_context(Transformer& model, std::span<const int> contexts, int decode_steps = 16,
                                               int repeats = 2, int block_size = 16, uint64_t seed = 1,
                                               KVDType kv_dtype = KVDType::f32);

}  // namespace infer
