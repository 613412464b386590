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
// step (the ch09 server queues requests into that thread). Events are delivered at the end of step(),
// after the engine's state is updated, so a callback may call add_request() or abort().
//
// Scheduling (one step):
//   1. running sequences, oldest first: each gets its next token (decode) or its next prefill chunk under
//      the step's token budget; when the pool has no block for one, the newest running sequence is
//      preempted (its blocks freed, its prompt + generated tokens recomputed when it is readmitted).
//   2. waiting requests, first come first served, while the batch, the budget and the pool allow (and no
//      sequence was preempted this step): each reuses its cached prefix blocks and prefills the rest,
//      chunked under the budget. A request whose next full prefix blocks a running sequence is prefilling
//      right now (the same system prompt, submitted together) waits until they are cached, then reuses them.
//      With SchedulePolicy::static_batch a batch of max_batch requests is formed
//      only when the previous one has entirely finished (the comparison of the chapter).
#pragma once

#include "infer/engine/batch_runner.h"
#include "infer/engine/block_manager.h"
#include "infer/engine/logprobs.h"
#include "infer/engine/sampler.h"
#include "infer/model/transformer.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace infer {

using RequestId = uint64_t;

struct RequestParams {
  SamplerConfig sampler;          // each request samples with its own Sampler (its own seeded RNG)
  int max_tokens = 128;           // new tokens at most
  std::vector<int> stop_tokens;   // generation ends after one of these is sampled (it is not emitted)
  bool ignore_eos = false;        // when true, stop_tokens is ignored (benchmarks)
  // -1: off (the default; the step then does no log-probability work for this request). 0..kMaxTopLogprobs:
  // every token event carries the token's log-probability and this many most likely alternatives, from
  // log_softmax of the raw logits (logprobs.h says why those and not the sampled distribution).
  int logprobs = -1;
};

enum class FinishReason { none, stop, length, aborted, error };
const char* finish_reason_name(FinishReason reason);  // "none", "stop", "length", "aborted", "error"

using EngineClock = std::chrono::steady_clock;

// A request's life, filled as it goes (every event carries the current state).
struct RequestTimes {
  EngineClock::time_point arrival;      // add_request
  EngineClock::time_point first_token;  // first token sampled (valid once generated >= 1)
  EngineClock::time_point finish;       // valid on the finish event
  int prompt_tokens = 0;
  int cached_tokens = 0;       // prompt positions reused from the prefix cache at first admission
  int generated = 0;           // tokens emitted so far
  int preemptions = 0;         // times it was preempted and recomputed
};

// What on_event receives: a token (finish == none), or the end of the request (finish != none). The
// token reaching max_tokens comes with finish == length in the same event; a stop token is not emitted
// (token -1, finish == stop); aborted / error carry token -1. `error` names the problem when finish == error.
// `logprobs` is set on every event with a token when the request asked for them (RequestParams::logprobs >= 0).
struct RequestEvent {
  RequestId id = 0;
  int token = -1;
  FinishReason finish = FinishReason::none;
  std::string error;
  RequestTimes times;
  std::optional<TokenLogprobs> logprobs;
};
using RequestCallback = std::function<void(const RequestEvent&)>;

enum class SchedulePolicy {
  continuous,    // iteration-level: requests join and leave the running batch at every step
  static_batch,  // a batch of up to max_batch requests runs until its longest member ends, then the next
};

// Speculative decoding inside the engine (ch08, issue 13 item 3). While it is on, every decoding sequence asks its
// draft for up to `gamma` guesses and runs [last token, guesses] as 1 + k query tokens of the step's one ragged
// Batch (LogitsFor::all); its own sampler verifies them (greedy: the longest prefix agreeing with the target's
// choice; sampling: accept with min(1, p/q), on rejection draw from normalize(max(0, p - q))), so every request
// gets exactly the tokens (greedy) or the distribution (sampling) of plain decoding. The rejected guesses' K/V
// positions are rolled back with BlockManager::truncate.
//
// Policy: the extra query tokens are nearly free only while a step is bandwidth-bound. A step that decodes B
// sequences plainly runs B tokens; speculating, about B (1 + gamma) tokens yielding E(a, gamma) tokens per
// sequence (expected_tokens_per_round, a = the running acceptance rate of the guesses). With C(n) the cost of
// a pass over n tokens relative to one token (pass_cost: a measured GEMM cost curve), speculation is predicted
// to gain
//     gain(B) = E(a, gamma) * C(B) / C(B (1 + gamma))
// and runs while gain(B) >= min_gain, i.e. while B is below the threshold speculation_batch_limit() derives
// from the curve. Crossing it switches speculation off (or back on), counted in EngineStats.
enum class EngineDraft {
  none,           // plain decoding
  prompt_lookup,  // NgramDraft (draft.h): the continuation of the longest recent n-gram match; no draft model
};

// The default cost curve of EngineSpeculation::pass_cost (see there).
std::vector<std::pair<int, double>> default_pass_cost();

struct EngineSpeculation {
  EngineDraft draft = EngineDraft::none;
  int gamma = 4;                // guesses per sequence and step at most
  int ngram_max = 4;            // prompt lookup's n-gram sizes
  int ngram_min = 2;
  // The cost curve C(n) = (a pass over n tokens) / (a pass over 1), as (n, C(n)) points with n ascending and
  // C(1) = 1 first: linear between the points, along the last two points' slope past the end. Default: the f32
  // GEMM of SmolLM2-135M's 1536 x 576 layer (bench_kernels BM_matmul_batch), 2 threads, on the 2-core AMD EPYC
  // (Zen 5) of 2026-11-30, aligned huge-page weights. Measure your machine's with that benchmark.
  std::vector<std::pair<int, double>> pass_cost = default_pass_cost();
  double min_gain = 1.05;       // speculate only when predicted >= min_gain x plain decoding
  double acceptance_prior = 0.6;  // a before any guess was verified
  int max_batch = 0;            // > 0: speculate while fewer sequences decode than this (ignores the curve)
  // The sampling acceptance test, null = accept_draft_token (speculative.h). Replaceable only so that the tests
  // can show a wrong rule changing the output distribution; leave it alone otherwise.
  bool (*accept_rule)(double p_x, double q_x, double u) = nullptr;
};

struct EngineOptions {
  int block_size = 16;            // positions per KV block
  KVDType kv_dtype = KVDType::f32;  // the pool's element type (ch07: int8, one scale per position and kv head)
  int num_blocks = 0;             // KV pool size; 0 = sized from kv_cache_bytes
  uint64_t kv_cache_bytes = 0;    // used when num_blocks == 0 (blocks of kv_dtype's real bytes); 0 = max_batch
                                  // full contexts, at most 1 GiB
  int max_batch = 64;             // sequences in one step at most
  int max_step_tokens = 512;      // token budget of one step (decode tokens + prefill chunks)
  bool prefix_caching = true;     // reuse full cached blocks of identical prompt prefixes
  bool chunked_prefill = true;    // split a long prompt over several steps under the budget
  SchedulePolicy policy = SchedulePolicy::continuous;
  EngineSpeculation speculation;  // off by default (draft == none)
};

// The predicted gain of speculation with B sequences decoding (see EngineSpeculation), and the threshold: the
// smallest B >= 1 at which the gain falls below min_gain (speculation runs while decoding < the limit), or
// `max_batch` + 1 when it never does up to max_batch. Both throw infer::Error for a malformed cost curve.
double speculation_gain(const EngineSpeculation& spec, int decoding, double acceptance);
int speculation_batch_limit(const EngineSpeculation& spec, double acceptance, int max_batch);

struct EngineStats {
  uint64_t steps = 0;
  uint64_t prompt_tokens = 0;        // prompt tokens admitted
  uint64_t prefill_tokens = 0;       // prompt tokens actually run (admitted minus prefix-cache hits, plus recomputes)
  uint64_t generated_tokens = 0;
  uint64_t prefix_cache_hit_tokens = 0;
  uint64_t preemptions = 0;
  uint64_t finished = 0;             // requests ended (any reason)
  uint64_t prefix_cache_lookups = 0; // full prompt blocks looked up at admission
  uint64_t prefix_cache_hit_blocks = 0;
  uint64_t forward_bytes = 0;        // weight + KV bytes the passes moved (ForwardStats)
  int running = 0;
  int waiting = 0;
  int blocks_total = 0;
  int blocks_free = 0;
  int peak_blocks_used = 0;
  int peak_running = 0;
  // Speculation (EngineOptions::speculation): a round is one sequence's 1 + k query tokens in a step, k >= 1.
  uint64_t spec_rounds = 0;
  uint64_t spec_proposed = 0;        // guesses run
  uint64_t spec_accepted = 0;        // guesses accepted
  uint64_t spec_steps = 0;           // decoding steps with speculation on (whether or not a draft had a guess)
  uint64_t spec_switched_off = 0;    // times the policy switched it off (the batch grew past the limit) ...
  uint64_t spec_switched_on = 0;     // ... and back on
  bool speculating = false;          // the policy's state after the last step (starts on when configured)
  int spec_batch_limit = 0;          // the last threshold: speculation runs while decoding < this (1025: no limit
                                     // found up to 1024 sequences, a flat cost curve)
  double spec_acceptance = 0.0;      // the running acceptance rate the policy uses
};

class Engine {
 public:
  // Builds a TransformerRunner over a PagedKVCache sized by options (num_blocks, or kv_cache_bytes). The
  // step's token budget is capped at model.max_tokens() (the transformer's activation buffers).
  Engine(Transformer& model, EngineOptions options);
  // Any model behind the BatchRunner interface (tests use fakes). options.num_blocks / block_size are
  // taken from the runner.
  Engine(std::unique_ptr<BatchRunner> runner, EngineOptions options);
  ~Engine();
  // Queues a request. Throws infer::Error (and queues nothing) for an empty prompt, a token outside the
  // vocabulary, max_tokens < 1, logprobs outside [-1, kMaxTopLogprobs], a prompt + max_tokens beyond the
  // model's context, or one that could never fit the whole block pool; the message names the sizes.
  RequestId add_request(std::vector<int> prompt, RequestParams params, RequestCallback on_event);
  // Ends a request now (waiting or running): frees its blocks, sends finish == aborted. Unknown id: false.
  bool abort(RequestId id);
  // Runs one scheduling step and its forward pass; returns the number of tokens produced.
  int step();
  bool has_work() const;
  EngineStats stats() const;
  const EngineOptions& options() const;
  // The model and the block bookkeeping, for callers that go below the request level (ch08's rollback,
  // tests asserting that the pool is free).
  BatchRunner& runner();
  const BlockManager& block_manager() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infer
