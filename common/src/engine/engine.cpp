// engine.cpp: the batching engine (engine.h): request queue, scheduler, one forward pass per step, sampling.
//
// A sequence's state is (tokens, computed): tokens = prompt + generated so far, computed = positions whose
// K/V are in the pool. Each step runs tokens[computed, computed + n) of every scheduled sequence in one
// Batch; when a sequence's pass reaches its last known token, the logits of that row give its next token.
// Decode is the case n = 1; a prefill chunk that stops short of the prompt's end asks for no logits.
// Preemption only resets computed to 0 and frees the blocks: readmission recomputes tokens (the prefix
// cache often still holds most of them).
#include "infer/engine/engine.h"

#include "infer/core/error.h"
#include "infer/engine/draft.h"
#include "infer/engine/speculative.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <unordered_map>
#include <unordered_set>

namespace infer {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::none: return "none";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::aborted: return "aborted";
    case FinishReason::error: return "error";
  }
  return "?";
}

namespace {

struct Sequence {
  RequestId id = 0;
  std::vector<int> tokens;  // prompt + generated
  int computed = 0;         // positions with K/V in the pool (0 while waiting)
  bool admitted_once = false;
  RequestParams params;
  Sampler sampler;
  RequestCallback on_event;
  RequestTimes times;

  Sequence(RequestId id_, std::vector<int> prompt, RequestParams params_, RequestCallback on_event_)
      : id(id_), tokens(std::move(prompt)), params(std::move(params_)), sampler(params.sampler),
        on_event(std::move(on_event_)) {}
};

struct Scheduled {
  Sequence* seq;
  int n;           // new tokens this step (1 + guesses.size() for a speculative round)
  int logits_row;  // index into the step's logits rows, -1 for none
  std::vector<int> guesses;  // a speculative round's draft tokens (empty otherwise)
};

// C(n) of the cost curve (EngineSpeculation::pass_cost): linear between its points, along its last slope past them.
double pass_cost(const std::vector<std::pair<int, double>>& curve, double n) {
  size_t i = 1;
  while (i + 1 < curve.size() && double(curve[i].first) < n) ++i;
  if (curve.size() == 1) return curve.front().second;
  const auto [n0, c0] = curve[i - 1];
  const auto [n1, c1] = curve[i];
  return std::max(c0 + (c1 - c0) * (n - n0) / double(n1 - n0), curve.front().second);
}

void check_speculation(const EngineSpeculation& spec) {
  if (spec.gamma < 1) fail("engine speculation: gamma must be >= 1 (got {})", spec.gamma);
  if (spec.ngram_min < 1 || spec.ngram_max < spec.ngram_min)
    fail("engine speculation: n-gram sizes must satisfy 1 <= min ({}) <= max ({})", spec.ngram_min, spec.ngram_max);
  if (spec.pass_cost.empty() || spec.pass_cost.front().first != 1 || !(spec.pass_cost.front().second > 0.0))
    fail("engine speculation: pass_cost must start with (1, C(1) > 0) (got {} points)", spec.pass_cost.size());
  for (size_t i = 1; i < spec.pass_cost.size(); ++i)
    if (spec.pass_cost[i].first <= spec.pass_cost[i - 1].first || !(spec.pass_cost[i].second >= spec.pass_cost[i - 1].second))
      fail("engine speculation: pass_cost must rise with n (C({}) = {} after C({}) = {})", spec.pass_cost[i].first,
           spec.pass_cost[i].second, spec.pass_cost[i - 1].first, spec.pass_cost[i - 1].second);
  if (!(spec.acceptance_prior > 0.0 && spec.acceptance_prior < 1.0))
    fail("engine speculation: acceptance_prior must be in (0, 1) (got {})", spec.acceptance_prior);
}

}  // namespace

std::vector<std::pair<int, double>> default_pass_cost() { return {{1, 1.0}, {2, 1.3}, {4, 1.45}, {5, 1.5}, {8, 1.85}}; }

double speculation_gain(const EngineSpeculation& spec, int decoding, double acceptance) {
  check_speculation(spec);
  const double b = std::max(decoding, 1);
  return expected_tokens_per_round(acceptance, spec.gamma) * pass_cost(spec.pass_cost, b) /
         pass_cost(spec.pass_cost, b * (1.0 + spec.gamma));
}

int speculation_batch_limit(const EngineSpeculation& spec, double acceptance, int max_batch) {
  if (spec.max_batch > 0) return spec.max_batch;
  for (int b = 1; b <= max_batch; ++b)
    if (speculation_gain(spec, b, acceptance) < spec.min_gain) return b;
  return max_batch + 1;
}

struct Engine::Impl {
  std::unique_ptr<BatchRunner> runner;
  EngineOptions options;
  BlockManager blocks;
  int step_budget;
  RequestId next_id = 1;
  std::unordered_map<RequestId, std::unique_ptr<Sequence>> sequences;
  std::deque<Sequence*> waiting;
  std::deque<Sequence*> static_batch;  // SchedulePolicy::static_batch: the formed batch not yet admitted
  std::vector<Sequence*> running;      // admission order: oldest first
  EngineStats stats;
  std::vector<float> logits;
  std::vector<float> raw_row;  // a logits row before sampling, for requests that ask for logprobs
  std::vector<std::pair<RequestCallback, RequestEvent>> pending_events;
  std::unordered_set<RequestId> aborted_during_dispatch;
  bool dispatching = false;
  // Speculation (EngineOptions::speculation)
  std::unique_ptr<Draft> draft;          // null: off
  bool (*accept_rule)(double, double, double) = accept_draft_token;
  double spec_accepted = 0.0, spec_compared = 0.0;  // decayed counts: the running acceptance rate
  bool speculating_now = false;          // this step's decision
  std::vector<int> verify_history;       // scratch of verify()
  std::vector<int> round_tokens;         // scratch: the tokens a round yields
  std::vector<float> p_dense, q_dense;   // scratch of a rejection (sampling)
  TokenDistribution dist;
  DraftProposal proposal;

  Impl(std::unique_ptr<BatchRunner> runner_, EngineOptions options_)
      : runner(std::move(runner_)), options(std::move(options_)),
        blocks(runner->num_blocks(), runner->block_size(), options.prefix_caching),
        step_budget(std::min(options.max_step_tokens, runner->max_pass_tokens())) {
    options.num_blocks = runner->num_blocks();
    options.block_size = runner->block_size();
    if (options.max_batch < 1) fail("engine: max_batch must be >= 1 (got {})", options.max_batch);
    if (step_budget < 1)
      fail("engine: the step token budget must be >= 1 (max_step_tokens {}, the model takes {} per pass)",
           options.max_step_tokens, runner->max_pass_tokens());
    stats.blocks_total = blocks.num_blocks();
    const EngineSpeculation& spec = options.speculation;
    if (spec.draft != EngineDraft::none) {
      check_speculation(spec);
      draft = std::make_unique<NgramDraft>(spec.ngram_max, spec.ngram_min);
      if (spec.accept_rule != nullptr) accept_rule = spec.accept_rule;
      spec_accepted = spec.acceptance_prior * kPriorWeight;
      spec_compared = kPriorWeight;
      stats.speculating = true;  // on until the policy first switches it off
    }
  }

  static constexpr int kLimitSearch = 1024;     // speculation_batch_limit looks this far at least
  static constexpr double kPriorWeight = 4.0;  // the prior counts as this many compared guesses
  static constexpr double kDecay = 0.98;       // per compared guess: forgets over ~50 guesses (all sequences)

  double acceptance() const { return spec_compared > 0.0 ? spec_accepted / spec_compared : 0.0; }

  // The policy, once per step: speculate while fewer sequences decode than the cost curve's limit.
  void decide_speculation() {
    if (!draft) return;
    int decoding = 0;
    for (const Sequence* seq : running)
      if (seq->computed + 1 == int(seq->tokens.size())) ++decoding;
    // Searched past max_batch so that EngineStats shows where the limit lies, not only that the batch is below it.
    const int limit = speculation_batch_limit(options.speculation, acceptance(), std::max(options.max_batch, kLimitSearch));
    stats.spec_batch_limit = limit;
    if (decoding == 0) return;  // nothing decodes this step: nothing to decide
    const bool on = decoding < limit;
    if (on != stats.speculating) {
      if (on) ++stats.spec_switched_on;
      else ++stats.spec_switched_off;
    }
    stats.speculating = speculating_now = on;
    if (on) ++stats.spec_steps;
  }

  // The guesses of a decoding sequence this step (at most gamma, what is left of max_tokens but one, and what
  // fits the step's budget after its own token), empty when it does not speculate. A request that asked for
  // logprobs decodes plainly: its tokens' log-probabilities come from the raw row of a plain step.
  void propose(Sequence& seq, int budget, std::vector<int>& guesses) {
    guesses.clear();
    if (!speculating_now || seq.params.logprobs >= 0) return;
    const int limit = std::min({options.speculation.gamma, seq.params.max_tokens - seq.times.generated - 1, budget - 1});
    if (limit <= 0) return;
    draft->propose(seq.tokens, limit, seq.sampler, proposal);
    guesses = proposal.tokens;
  }

  // Verifies a round's guesses against its k + 1 rows of logits with the sequence's own sampler: writes the
  // tokens it yields (the accepted guesses, then the target's token) to round_tokens; returns the accepted count.
  int verify(Sequence& seq, std::span<const int> guesses, float* rows) {
    const size_t vocab = size_t(runner->vocab_size());
    const int k = int(guesses.size());
    round_tokens.clear();
    verify_history = seq.tokens;
    for (int i = 0; i <= k; ++i) {
      const std::span<float> row(rows + size_t(i) * vocab, vocab);
      seq.sampler.distribution(row, verify_history, dist);
      if (i == k) {  // every guess accepted: the bonus token
        round_tokens.push_back(seq.sampler.draw(dist));
        return k;
      }
      const int guess = guesses[size_t(i)];
      // A prompt-lookup guess is deterministic: q is its point mass, so min(1, p/q) = p(guess).
      const bool accept = dist.greedy ? dist.candidates.front().second == guess
                                      : accept_rule(dist.probability(guess), 1.0, seq.sampler.uniform());
      if (accept) {
        round_tokens.push_back(guess);
        verify_history.push_back(guess);
        continue;
      }
      if (dist.greedy) {
        round_tokens.push_back(dist.candidates.front().second);
      } else {
        p_dense.resize(vocab);
        q_dense.assign(vocab, 0.0f);
        dist.to_dense(p_dense);
        q_dense[size_t(guess)] = 1.0f;
        round_tokens.push_back(sample_residual(p_dense, q_dense, seq.sampler.uniform()));
      }
      return i;
    }
    return k;  // not reached
  }

  int block_size() const { return blocks.block_size(); }

  void emit(Sequence& seq, int token, FinishReason finish, std::string error = {},
            std::optional<TokenLogprobs> token_logprobs = std::nullopt) {
    RequestEvent event;
    event.id = seq.id;
    event.token = token;
    event.finish = finish;
    event.error = std::move(error);
    event.logprobs = std::move(token_logprobs);
    event.times = seq.times;
    if (seq.on_event) pending_events.emplace_back(seq.on_event, std::move(event));
  }

  // Delivers the queued events. Callbacks may add or abort requests: the list is taken first, an abort
  // issued from a callback delivers its own event right after that callback and drops the aborted
  // request's later events of this step.
  void dispatch_events() {
    dispatching = true;
    struct Reset {
      Impl* e;
      ~Reset() {
        e->dispatching = false;
        e->aborted_during_dispatch.clear();
      }
    } reset{this};
    auto events = std::move(pending_events);
    pending_events.clear();
    for (auto& [callback, event] : events) {
      if (aborted_during_dispatch.count(event.id)) continue;
      callback(event);
      while (!pending_events.empty()) {  // finish events of aborts issued by that callback
        auto more = std::move(pending_events);
        pending_events.clear();
        for (auto& [cb, ev] : more) cb(ev);
      }
    }
  }

  // Ends a sequence: frees its blocks at once, removes it from every queue, sends the finish event.
  void finish(Sequence* seq, FinishReason reason, int token = -1, std::string error = {},
              std::optional<TokenLogprobs> token_logprobs = std::nullopt) {
    blocks.free(seq->id);
    running.erase(std::remove(running.begin(), running.end(), seq), running.end());
    waiting.erase(std::remove(waiting.begin(), waiting.end(), seq), waiting.end());
    static_batch.erase(std::remove(static_batch.begin(), static_batch.end(), seq), static_batch.end());
    seq->times.finish = EngineClock::now();
    emit(*seq, token, reason, std::move(error), std::move(token_logprobs));
    ++stats.finished;
    sequences.erase(seq->id);  // seq is gone after this line
  }

  void preempt(Sequence* seq) {
    blocks.free(seq->id);
    seq->computed = 0;
    ++seq->times.preemptions;
    ++stats.preemptions;
    running.erase(std::remove(running.begin(), running.end(), seq), running.end());
    // Back to the head of its queue: it was admitted before everything still waiting.
    if (options.policy == SchedulePolicy::static_batch)
      static_batch.push_front(seq);
    else
      waiting.push_front(seq);
  }

  std::vector<Scheduled> schedule() {
    std::vector<Scheduled> plan;
    int budget = step_budget;
    bool preempted = false;

    // 1. Running sequences, oldest first: next token (plus the draft's guesses while speculating) or next
    //    prefill chunk.
    decide_speculation();
    for (size_t i = 0; i < running.size() && budget > 0;) {
      Sequence* seq = running[i];
      const int need = int(seq->tokens.size()) - seq->computed;
      int n = options.chunked_prefill ? std::min(need, budget) : need;
      if (n > budget) {  // an unchunked prompt waits for a step with room for all of it
        ++i;
        continue;
      }
      std::vector<int> guesses;
      if (need == 1) {
        propose(*seq, budget, guesses);
        // No room in the pool for its guesses: a plain step rather than a preemption.
        if (!guesses.empty() && !blocks.can_reserve(seq->id, seq->computed + 1 + int(guesses.size()))) guesses.clear();
        n = 1 + int(guesses.size());
      }
      bool self_preempted = false;
      while (!blocks.can_reserve(seq->id, seq->computed + n)) {
        Sequence* victim = running.back();
        preempt(victim);
        preempted = true;
        if (victim == seq) {
          self_preempted = true;
          break;
        }
      }
      if (self_preempted) break;  // it was the newest: nothing after it
      blocks.reserve(seq->id, seq->computed + n);
      plan.push_back({seq, n, -1, std::move(guesses)});
      budget -= n;
      ++i;
    }

    // 2. Waiting requests, first come first served.
    std::deque<Sequence*>& queue = options.policy == SchedulePolicy::static_batch ? static_batch : waiting;
    if (options.policy == SchedulePolicy::static_batch && running.empty() && static_batch.empty()) {
      while (!waiting.empty() && int(static_batch.size()) < options.max_batch) {
        static_batch.push_back(waiting.front());
        waiting.pop_front();
      }
    }
    std::vector<Sequence*> deferred;
    while (!preempted && !queue.empty() && int(running.size()) < options.max_batch && budget > 0) {
      Sequence* seq = queue.front();
      const int cached = blocks.cached_blocks(seq->tokens) * block_size();
      if (options.prefix_caching && prefix_in_flight(*seq, cached)) {
        deferred.push_back(seq);  // its prefix is being computed: admit it once the blocks are cached
        queue.pop_front();
        continue;
      }
      const int need = int(seq->tokens.size()) - cached;
      const int n = options.chunked_prefill ? std::min(need, budget) : need;
      // Unchunked: a prompt larger than what is left of the budget waits, unless the step is empty.
      if (n > budget && !plan.empty()) break;
      if (!blocks.can_allocate(seq->tokens, cached + n)) break;
      const int got = blocks.allocate(seq->id, seq->tokens, cached + n);
      seq->computed = got;
      if (!seq->admitted_once) {
        seq->times.cached_tokens = got;
        seq->admitted_once = true;
      }
      stats.prefix_cache_hit_tokens += uint64_t(got);
      queue.pop_front();
      running.push_back(seq);
      plan.push_back({seq, n, -1, {}});
      budget -= n;
    }
    queue.insert(queue.begin(), deferred.begin(), deferred.end());  // they keep their place
    return plan;
  }

  // Whether a running sequence is prefilling full blocks that `seq` could reuse from the prefix cache once
  // they are computed (requests submitted together with the same system prompt): admitting `seq` now would
  // compute those positions a second time, deferring it one or a few steps turns them into cache hits.
  bool prefix_in_flight(const Sequence& seq, int cached) const {
    const int bs = block_size();
    const int cacheable = int((seq.tokens.size() - 1) / size_t(bs)) * bs;  // the last token is always computed
    if (cacheable <= cached) return false;
    for (const Sequence* other : running) {
      if (other->computed >= int(other->tokens.size())) continue;  // not prefilling
      const size_t limit = std::min<size_t>(size_t(cacheable), other->tokens.size());
      size_t common = 0;
      while (common < limit && seq.tokens[common] == other->tokens[common]) ++common;
      const int shared = int(common) / bs * bs;  // full blocks both have
      if (shared >= cached + bs && other->computed < shared) return true;
    }
    return false;
  }

  // After the pass: verifies a speculative round, rolls back the rejected guesses' positions and emits the
  // tokens it yields (stopping at a stop token or max_tokens like plain decoding). Returns the tokens produced.
  int finish_round(Sequence& seq, std::span<const int> guesses, float* rows) {
    const int k = int(guesses.size());
    const int accepted = verify(seq, guesses, rows);
    ++stats.spec_rounds;
    stats.spec_proposed += uint64_t(k);
    stats.spec_accepted += uint64_t(accepted);
    const int compared = accepted + (accepted < k ? 1 : 0);
    const double keep = std::pow(kDecay, compared);
    spec_accepted = keep * spec_accepted + accepted;
    spec_compared = keep * spec_compared + compared;
    // The K/V now valid: the last token's and the accepted guesses'; the rejected ones' blocks go back.
    seq.computed += 1 + accepted;
    blocks.truncate(seq.id, seq.computed);
    int produced = 0;
    for (const int token : round_tokens) {
      ++produced;
      const RequestParams& params = seq.params;
      if (!params.ignore_eos &&
          std::find(params.stop_tokens.begin(), params.stop_tokens.end(), token) != params.stop_tokens.end()) {
        finish(&seq, FinishReason::stop);
        return produced;
      }
      seq.tokens.push_back(token);
      ++stats.generated_tokens;
      if (seq.times.generated++ == 0) seq.times.first_token = EngineClock::now();
      if (seq.times.generated >= params.max_tokens) {
        finish(&seq, FinishReason::length, token);
        return produced;
      }
      emit(seq, token, FinishReason::none);
    }
    blocks.mark_computed(seq.id, seq.tokens, seq.computed);
    return produced;
  }

  int step() {
    if (running.empty() && waiting.empty() && static_batch.empty()) return 0;
    std::vector<Scheduled> plan = schedule();
    if (plan.empty())
      fail("engine: no sequence could be scheduled ({} running, {} waiting, {} of {} blocks free)", running.size(),
           waiting.size() + static_batch.size(), blocks.num_free(), blocks.num_blocks());
    stats.peak_blocks_used = std::max(stats.peak_blocks_used, blocks.num_used());
    stats.peak_running = std::max(stats.peak_running, int(running.size()));

    Batch batch(block_size());
    int rows = 0;
    std::vector<int> round;  // a speculative round's query tokens: [last token, guesses]
    for (Scheduled& s : plan) {
      Sequence& seq = *s.seq;
      if (!s.guesses.empty()) {
        round.assign(1, seq.tokens.back());
        round.insert(round.end(), s.guesses.begin(), s.guesses.end());
        s.logits_row = batch.add_sequence(round, seq.computed, blocks.block_table(seq.id), LogitsFor::all);
        rows += s.n;
        // A prompt whose last token came in a chunk of its own speculates too; that token is still prefill.
        if (int(seq.tokens.size()) <= seq.times.prompt_tokens) ++stats.prefill_tokens;
        continue;
      }
      const bool last = seq.computed + s.n == int(seq.tokens.size());
      const std::span<const int> fresh(seq.tokens.data() + seq.computed, size_t(s.n));
      const int row = batch.add_sequence(fresh, seq.computed, blocks.block_table(seq.id),
                                         last ? LogitsFor::last : LogitsFor::none);
      s.logits_row = row;
      if (last) ++rows;
      const bool decode = s.n == 1 && int(seq.tokens.size()) > seq.times.prompt_tokens && last;
      if (!decode) stats.prefill_tokens += uint64_t(s.n);
    }
    logits.resize(size_t(std::max(rows, 1)) * size_t(runner->vocab_size()));
    const ForwardStats moved = runner->forward(batch, logits.data());
    stats.forward_bytes += moved.weight_bytes + moved.kv_bytes;
    ++stats.steps;

    int produced = 0;
    const size_t vocab = size_t(runner->vocab_size());
    for (const Scheduled& s : plan) {
      Sequence* seq = s.seq;
      if (!s.guesses.empty()) {
        produced += finish_round(*seq, s.guesses, logits.data() + size_t(s.logits_row) * vocab);
        continue;
      }
      seq->computed += s.n;
      blocks.mark_computed(seq->id, seq->tokens, seq->computed);
      if (s.logits_row < 0) continue;
      const std::span<float> row(logits.data() + size_t(s.logits_row) * vocab, vocab);
      const RequestParams& params = seq->params;
      // Log-probabilities come from the raw row; the sampler modifies it in place (penalties), so a request
      // that asks for them gets a copy first. Requests that do not ask pay nothing here.
      if (params.logprobs >= 0) raw_row.assign(row.begin(), row.end());
      const int token = seq->sampler.sample(row, seq->tokens);
      ++produced;
      if (!params.ignore_eos &&
          std::find(params.stop_tokens.begin(), params.stop_tokens.end(), token) != params.stop_tokens.end()) {
        finish(seq, FinishReason::stop);
        continue;
      }
      seq->tokens.push_back(token);
      ++stats.generated_tokens;
      if (seq->times.generated++ == 0) seq->times.first_token = EngineClock::now();
      std::optional<TokenLogprobs> token_logprobs;
      if (params.logprobs >= 0) token_logprobs = compute_token_logprobs(raw_row, token, params.logprobs);
      if (seq->times.generated >= params.max_tokens) {
        finish(seq, FinishReason::length, token, {}, std::move(token_logprobs));
        continue;
      }
      emit(*seq, token, FinishReason::none, {}, std::move(token_logprobs));
    }
    dispatch_events();
    return produced;
  }
};

Engine::Engine(std::unique_ptr<BatchRunner> runner, EngineOptions options)
    : impl_(std::make_unique<Impl>(std::move(runner), std::move(options))) {}

Engine::~Engine() = default;

RequestId Engine::add_request(std::vector<int> prompt, RequestParams params, RequestCallback on_event) {
  Impl& e = *impl_;
  const BatchRunner& runner = *e.runner;
  if (prompt.empty()) fail("engine: empty prompt (a request needs at least one token)");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= runner.vocab_size())
      fail("engine: prompt token {} is {}, outside the vocabulary of {}", i, prompt[i], runner.vocab_size());
  if (params.max_tokens < 1) fail("engine: max_tokens must be >= 1 (got {})", params.max_tokens);
  if (params.logprobs < -1 || params.logprobs > kMaxTopLogprobs)
    fail("engine: logprobs must be -1 (off) or 0..{} (got {})", kMaxTopLogprobs, params.logprobs);
  const int64_t total = int64_t(prompt.size()) + params.max_tokens;
  if (total > runner.context_length())
    fail("engine: prompt of {} tokens + max_tokens {} = {} positions exceeds the model's context of {}", prompt.size(),
         params.max_tokens, total, runner.context_length());
  const int64_t blocks_needed = (total + e.block_size() - 1) / e.block_size();
  if (blocks_needed > e.blocks.num_blocks())
    fail("engine: prompt of {} tokens + max_tokens {} needs {} blocks of {} positions but the whole KV pool holds {} "
         "blocks ({} positions)",
         prompt.size(), params.max_tokens, blocks_needed, e.block_size(), e.blocks.num_blocks(),
         e.blocks.num_blocks() * e.block_size());
  if (!e.options.chunked_prefill && int64_t(prompt.size()) > e.step_budget)
    fail("engine: prompt of {} tokens exceeds the step budget of {} tokens and chunked prefill is off",
         prompt.size(), e.step_budget);
  const RequestId id = e.next_id++;
  auto seq = std::make_unique<Sequence>(id, std::move(prompt), std::move(params), std::move(on_event));
  seq->times.arrival = EngineClock::now();
  seq->times.prompt_tokens = int(seq->tokens.size());
  e.stats.prompt_tokens += uint64_t(seq->tokens.size());
  e.waiting.push_back(seq.get());
  e.sequences.emplace(id, std::move(seq));
  return id;
}

bool Engine::abort(RequestId id) {
  Impl& e = *impl_;
  const auto found = e.sequences.find(id);
  if (found == e.sequences.end()) return false;
  e.finish(found->second.get(), FinishReason::aborted);
  // Inside a callback, dispatch_events() delivers the event after that callback; outside step(), now.
  if (e.dispatching)
    e.aborted_during_dispatch.insert(id);
  else
    e.dispatch_events();
  return true;
}

int Engine::step() { return impl_->step(); }

bool Engine::has_work() const { return !impl_->running.empty() || !impl_->waiting.empty() || !impl_->static_batch.empty(); }

EngineStats Engine::stats() const {
  EngineStats s = impl_->stats;
  s.running = int(impl_->running.size());
  s.waiting = int(impl_->waiting.size() + impl_->static_batch.size());
  s.blocks_free = impl_->blocks.num_free();
  s.prefix_cache_lookups = impl_->blocks.stats().lookups;
  s.prefix_cache_hit_blocks = impl_->blocks.stats().hit_blocks;
  s.spec_acceptance = impl_->draft ? impl_->acceptance() : 0.0;
  return s;
}

const EngineOptions& Engine::options() const { return impl_->options; }
BatchRunner& Engine::runner() { return *impl_->runner; }
const BlockManager& Engine::block_manager() const { return impl_->blocks; }

}  // namespace infer
