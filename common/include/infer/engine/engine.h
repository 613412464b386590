// engine.h: the batching engine (ch06), driven one step() at a time; ch08 and ch09 build on it.
//
//   Engine engine(model, options);
//   RequestId id = engine.add_request(prompt_tokens, params, on_event);  // queued, returns at once
//   while (engine.has_work()) engine.step();                             // one forward pass per step
//
// Each step the scheduler picks the running sequences (decode: one token each) and admits waiting ones
// (prefill, chunked under the per-step token budget), builds one Batch (model/batch.h), runs one
// Transformer::forward over the paged KV cache, samples each sequence with its own sampler and calls
// on_event for every token produced. A request ends on a stop token, max_tokens, abort(), or an error
// that concerns it alone (its blocks are freed at once in every case). Nothing here is global: two
// engines can run side by side. The engine is not thread-safe: one thread calls add_request / abort /
// step (the ch09 server queues requests into that thread).
// (Contract fixed before its implementation lands; see the ch06 issue.)
#pragma once

#include "infer/engine/sampler.h"
#include "infer/model/transformer.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace infer {

using RequestId = uint64_t;

struct RequestParams {
  SamplerConfig sampler;          // each request samples with its own Sampler (its own seeded RNG)
  int max_tokens = 128;           // new tokens at most
  std::vector<int> stop_tokens;   // generation ends after one of these is sampled (it is not emitted)
  bool ignore_eos = false;        // when true, stop_tokens is ignored (benchmarks)
};

enum class FinishReason { none, stop, length, aborted, error };

// What on_event receives: a token (finish == none), or the end of the request (finish != none; token
// is -1 unless the last token and the finish come together). `error` names the problem when finish == error.
struct RequestEvent {
  RequestId id = 0;
  int token = -1;
  FinishReason finish = FinishReason::none;
  std::string error;
};
using RequestCallback = std::function<void(const RequestEvent&)>;

struct EngineOptions {
  int block_size = 16;            // positions per KV block
  int num_blocks = 0;             // KV pool size; 0 = sized from kv_cache_bytes
  uint64_t kv_cache_bytes = 0;    // used when num_blocks == 0; 0 = enough for max_batch full contexts, capped
  int max_batch = 64;             // sequences in one step at most
  int max_step_tokens = 512;      // token budget of one step (decode tokens + prefill chunks)
  bool prefix_caching = true;     // reuse full cached blocks of identical prompt prefixes
  bool chunked_prefill = true;    // split a long prompt over several steps under the budget
};

struct EngineStats {
  uint64_t steps = 0;
  uint64_t prompt_tokens = 0;        // prompt tokens admitted
  uint64_t prefill_tokens = 0;       // prompt tokens actually run (admitted minus prefix-cache hits, plus recomputes)
  uint64_t generated_tokens = 0;
  uint64_t prefix_cache_hit_tokens = 0;
  uint64_t preemptions = 0;
  int running = 0;
  int waiting = 0;
  int blocks_total = 0;
  int blocks_free = 0;
  int peak_blocks_used = 0;
};

class Engine {
 public:
  Engine(Transformer& model, EngineOptions options);
  ~Engine();
  // Queues a request. Throws infer::Error (and queues nothing) for an empty prompt, a prompt + max_tokens
  // beyond the model's context, or one that could never fit the whole block pool; the message names the sizes.
  RequestId add_request(std::vector<int> prompt, RequestParams params, RequestCallback on_event);
  // Ends a request now (waiting or running): frees its blocks, sends finish == aborted. Unknown id: false.
  bool abort(RequestId id);
  // Runs one scheduling step and its forward pass; returns the number of tokens produced.
  int step();
  bool has_work() const;
  EngineStats stats() const;
  const EngineOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infer
