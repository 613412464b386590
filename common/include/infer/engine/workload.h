// workload.h: seeded serving workloads and what a run of one through the Engine measured (ch06, ch09).
//
//   make_workload      N requests; arrivals all at once or Poisson at a rate; prompt and output lengths
//                      drawn from seeded distributions; an optional shared system prompt of L tokens
//   run_workload       submits each request at its arrival time, steps the engine until all are done,
//                      records every request's tokens and times
//   summarize          throughput, TTFT / TPOT / end-to-end percentiles, KV memory, preemptions, prefix hits
//
// Definitions (all times from the run's start, wall clock):
//   TTFT      first token time - arrival           (queueing + prefill)
//   TPOT      (finish - first token) / (generated - 1), requests with >= 2 tokens (time per output token)
//   e2e       finish - arrival
//   pXX       nearest rank: the value at index ceil(XX/100 * n) - 1 of the sorted values
//   generated tok/s = generated tokens / wall;  total tok/s = (prompt + generated tokens) / wall
//   paged peak KV bytes = peak blocks in use * bytes per block (compare with a contiguous cache, which reserves
//     prompt + max_tokens positions for every running request: ch06_batching prints both)
#pragma once

#include "infer/engine/engine.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace infer {

// A length distribution: fixed (min == max), uniform in [min, max], or geometric with the given mean
// clipped to [min, max] (long-tailed, like chat answers).
struct LengthDistribution {
  enum class Kind { uniform, geometric } kind = Kind::uniform;
  int min = 64;
  int max = 64;
  double mean = 64.0;  // geometric only
  std::string describe() const;
};

struct WorkloadOptions {
  int requests = 64;
  double rate = 0.0;                 // requests per second, Poisson arrivals; 0 = all at once
  LengthDistribution prompt;         // tokens after the shared prefix
  LengthDistribution output;         // max_tokens of each request
  int shared_prefix = 0;             // a system prompt of this many tokens in front of every prompt
  int token_min = 0;                 // prompt token ids are drawn uniformly from [token_min, token_max)
  int token_max = 256;
  uint64_t seed = 1;
};

struct WorkloadRequest {
  double arrival_s = 0.0;
  std::vector<int> prompt;
  int max_tokens = 0;
};

// Throws infer::Error for an empty or inverted range, a non-positive rate or count.
std::vector<WorkloadRequest> make_workload(const WorkloadOptions& options);

struct RequestRecord {
  RequestId id = 0;
  std::vector<int> tokens;          // generated
  FinishReason finish = FinishReason::none;
  std::string error;
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int preemptions = 0;
  double arrival_s = 0, first_token_s = 0, finish_s = 0;  // from the run's start
};

struct Percentiles {
  double p50 = 0, p95 = 0, p99 = 0, mean = 0;
  int count = 0;
};
Percentiles percentiles(std::vector<double> values);  // nearest rank; all 0 for no values

struct RunMetrics {
  double wall_s = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t prefill_tokens = 0;      // prompt tokens run (after prefix hits, with recomputes)
  uint64_t steps = 0;
  double generated_tok_per_s = 0;
  double total_tok_per_s = 0;
  Percentiles ttft_ms, tpot_ms, e2e_ms;
  int peak_blocks = 0;
  int peak_running = 0;
  uint64_t peak_kv_bytes = 0;
  uint64_t kv_bytes_per_position = 0;  // bytes_per_block / block_size (2 * n_layers * kv_dim * 4 for f32)
  uint64_t preemptions = 0;
  uint64_t prefix_hit_tokens = 0;
  double prefix_hit_rate = 0;       // prompt tokens served from the cache / prompt tokens
  uint64_t forward_bytes = 0;
};

struct RunResult {
  std::vector<RequestRecord> requests;  // in workload order
  RunMetrics metrics;
  EngineStats stats;                    // the engine's at the end (blocks_free == blocks_total if all freed)
};

// The per-request parameters used for every request of a run (max_tokens is taken from the workload).
// `progress(done, total)` is called after every step (may be empty).
RunResult run_workload(Engine& engine, const std::vector<WorkloadRequest>& workload, const RequestParams& params,
                       const std::function<void(int done, int total)>& progress = {});

}  // namespace infer
