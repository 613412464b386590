// speculative.cpp: the gamma controller and the speculative generator (speculative.h). The verification rules
// are in speculative_verify.cpp (their own file: the ch08 lab swaps it out).
#include "infer/engine/speculative.h"

#include "infer/core/error.h"
#include "infer/core/timer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace infer {

// ---- Predictions ----------------------------------------------------------------------------------

double expected_tokens_per_round(double acceptance, double gamma) {
  if (acceptance >= 1.0) return gamma + 1.0;
  return (1.0 - std::pow(acceptance, gamma + 1.0)) / (1.0 - acceptance);
}

double predicted_speedup(double acceptance, double gamma, double cost_ratio) {
  return expected_tokens_per_round(acceptance, gamma) / (gamma * cost_ratio + 1.0);
}

// ---- GammaController ------------------------------------------------------------------------------

namespace {
constexpr double kPriorWeight = 4.0;   // the prior counts as this many compared guesses
constexpr double kDecay = 0.9;         // per compared guess: the running acceptance forgets over ~10 guesses
// Measured times are a cost plus whatever else the machine was doing: the controller keeps the fastest seen,
// slowly forgotten (x kForget per measurement), so a busy moment does not read as an expensive pass.
constexpr double kForget = 1.02;
constexpr int kWarmupRounds = 1;       // rounds with options.gamma before the controller chooses
constexpr int kRoundsBeforeOff = 2;    // speculative rounds seen before the fallback may switch off: one
                                       // measurement of each cost is too easily a busy moment
constexpr double kOnMargin = 1.05;     // off -> on needs predicted >= min_gain x this (on -> off: < min_gain): a
                                       // draft near break-even (ch08's q4_0 self-draft on open-ended text,
                                       // predicted 0.99) otherwise flipped on after one good probe and off
                                       // again a round later, paying a losing round each time
constexpr int kMaxProbeBackoff = 8;    // while off, a failed probe doubles the wait for the next, up to this
                                       // x probe_every: a draft that never pays (ch08's early exit on code:
                                       // acceptance ~0.1) then costs a few rounds, not one every probe_every
}  // namespace

GammaController::GammaController(SpeculativeOptions options)
    : options_(options),
      accepted_(options.acceptance_prior * kPriorWeight),
      compared_(kPriorWeight),
      pass_ms_(size_t(options.max_gamma) + 2, -1.0) {
  if (options.max_gamma < 1) fail("speculative: max_gamma must be >= 1 (got {})", options.max_gamma);
  if (options.gamma < 0 || options.gamma > options.max_gamma)
    fail("speculative: gamma must be in [0, {}] (got {})", options.max_gamma, options.gamma);
  if (!(options.acceptance_prior > 0.0 && options.acceptance_prior < 1.0))
    fail("speculative: acceptance_prior must be in (0, 1) (got {})", options.acceptance_prior);
  if (options.probe_every < 1) fail("speculative: probe_every must be >= 1 (got {})", options.probe_every);
  if (options.accept_rule == nullptr) fail("speculative: accept_rule is null");
  for (size_t i = 0; i < options.pass_cost.size(); ++i)
    if (!(options.pass_cost[i] > 0.0)) fail("speculative: pass_cost[{}] must be > 0 (got {})", i, options.pass_cost[i]);
}

void GammaController::record(int width, int drafted, int accepted, bool rejected, double draft_ms, double target_ms) {
  if (width >= 1 && size_t(width) < pass_ms_.size()) {
    double& estimate = pass_ms_[size_t(width)];
    estimate = estimate < 0.0 ? target_ms : std::min(target_ms, estimate * kForget);
  }
  if (drafted == 0) return;
  if (!on_) {  // a probe: back to probing often when it looked promising, else wait twice as long
    probe_interval_ = 2 * accepted >= drafted ? options_.probe_every
                                              : std::min(2 * probe_interval_, kMaxProbeBackoff * options_.probe_every);
  }
  const int compared = accepted + (rejected ? 1 : 0);
  const double keep = std::pow(kDecay, compared);
  accepted_ = keep * accepted_ + accepted;
  compared_ = keep * compared_ + compared;
  const double per_token = draft_ms / drafted;
  draft_token_ms_ = draft_token_ms_ < 0.0 ? per_token : std::min(per_token, draft_token_ms_ * kForget);
}

double GammaController::pass_ms(int width) const {
  double estimate;
  if (width >= 1 && size_t(width) < pass_ms_.size() && pass_ms_[size_t(width)] >= 0.0) {
    estimate = pass_ms_[size_t(width)];
  } else if (width >= 1 && size_t(width) <= options_.pass_cost.size() && pass_ms_[1] >= 0.0) {
    estimate = pass_ms_[1] * options_.pass_cost[size_t(width) - 1];  // the prior curve, scaled to this run
  } else {
    // A least-squares line through the measured widths (one measured: flat; none: one unit per pass).
    double n = 0, sum_w = 0, sum_t = 0, sum_ww = 0, sum_wt = 0;
    for (size_t w = 1; w < pass_ms_.size(); ++w) {
      if (pass_ms_[w] < 0.0) continue;
      n += 1;
      sum_w += double(w);
      sum_t += pass_ms_[w];
      sum_ww += double(w) * double(w);
      sum_wt += double(w) * pass_ms_[w];
    }
    if (n == 0) return 1.0;
    const double mean_t = sum_t / n;
    const double slope = n == 1 ? 0.0 : std::max(0.0, (sum_wt - sum_w * sum_t / n) / (sum_ww - sum_w * sum_w / n));
    estimate = mean_t + slope * (double(width) - sum_w / n);
  }
  // A pass over more tokens never costs less: a wider pass measured faster means this width's own
  // measurements caught a busy moment (one plain step measured while another program ran, say).
  for (size_t w = size_t(std::max(width, 1)) + 1; w < pass_ms_.size(); ++w)
    if (pass_ms_[w] >= 0.0) estimate = std::min(estimate, pass_ms_[w]);
  return estimate;
}

double GammaController::draft_token_ms() const {
  if (draft_token_ms_ >= 0.0) return draft_token_ms_;
  if (options_.draft_cost >= 0.0 && pass_ms_[1] >= 0.0) return options_.draft_cost * pass_ms_[1];
  return -1.0;
}

double GammaController::predicted_rate(int gamma) const {
  if (gamma == 0) return 1.0 / pass_ms(1);
  const double draft_ms = std::max(draft_token_ms(), 0.0);
  return expected_tokens_per_round(acceptance(), gamma) / (gamma * draft_ms + pass_ms(gamma + 1));
}

int GammaController::best_gamma() const {
  int best = 1;
  for (int gamma = 2; gamma <= options_.max_gamma; ++gamma)
    if (predicted_rate(gamma) > predicted_rate(best)) best = gamma;
  return best;
}

int GammaController::next_gamma(int limit, int tokens_so_far, SpeculativeStats& stats) {
  if (limit <= 0) return 0;
  const bool measuring = options_.adaptive || options_.fallback;
  // The first step is plain: it measures the one-token pass every prediction is compared with.
  if (measuring && pass_ms_[1] < 0.0) return 0;
  const bool costs_known = !options_.pass_cost.empty() && options_.draft_cost >= 0.0;
  if (!measuring || (stats.rounds < kWarmupRounds && !costs_known)) return std::min(options_.gamma, limit);

  const int gamma = options_.adaptive ? best_gamma() : options_.gamma;
  if (options_.fallback && gamma > 0) {
    const double gain = predicted_rate(gamma) / predicted_rate(0);
    const bool pays = gain >= options_.min_gain * (on_ ? 1.0 : kOnMargin);
    if (on_ != pays && (pays || stats.rounds >= kRoundsBeforeOff)) {
      on_ = !on_;
      plain_since_probe_ = 0;
      // Switching off keeps the probes' back-off: a draft that keeps failing after short on-periods is
      // probed less and less often (a promising probe resets it, record()).
      probe_interval_ = on_ ? options_.probe_every : std::max(probe_interval_, options_.probe_every);
      stats.switches.push_back({tokens_so_far, on_, acceptance(), gain});
    }
    if (!on_) {
      // Off: plain steps, and now and then one probing round so the acceptance rate stays current.
      if (++plain_since_probe_ < probe_interval_) return 0;
      plain_since_probe_ = 0;
    }
  }
  return std::min(gamma, limit);
}

// ---- SpeculativeGenerator ---------------------------------------------------------------------------

SpeculativeGenerator::SpeculativeGenerator(Transformer& target, Draft& draft, SpeculativeOptions options,
                                           KVStorage storage)
    : target_(target), draft_(draft), options_(options), storage_(storage) {
  GammaController check(options_);  // validates the options now rather than at the first generate()
}

GenerationResult SpeculativeGenerator::generate(const std::vector<int>& prompt, const GenerationOptions& options,
                                                const TokenCallback& on_token) {
  const ModelConfig& config = target_.config();
  check_generation_length(config, prompt.size(), options.max_new_tokens, std::numeric_limits<int>::max());
  const size_t vocab = size_t(config.vocab_size);

  stats_ = SpeculativeStats{};
  stats_.gamma_rounds.assign(size_t(options_.max_gamma) + 1, 0);
  GammaController controller(options_);
  // The target's sampler draws the bonus / replacement tokens and the acceptance uniforms; the draft
  // samples its guesses with the same settings and its own RNG stream.
  Sampler sampler(options.sampler);
  SamplerConfig draft_config = options.sampler;
  draft_config.seed = options.sampler.seed ^ 0x9e3779b97f4a7c15ull;
  Sampler draft_sampler(draft_config);
  const int draft_passes_before = draft_.passes();

  // The target's cache holds the sequence but its last token, which opens the next pass. When the call
  // ends (or throws) the target's runner and the draft give back their blocks.
  std::unique_ptr<SequenceRunner> target_runner =
      make_sequence_runner(target_, std::max(int(prompt.size()) + options.max_new_tokens, 1), storage_);
  SequenceRunner& target = *target_runner;
  struct FinishDraft {
    Draft& draft;
    ~FinishDraft() { draft.finish(); }
  } finish_draft{draft_};
  std::vector<int> sequence = prompt;
  std::vector<float> rows;                   // (gamma + 1, vocab) logits of a pass
  std::vector<float> p_dense(vocab), q_dense(vocab);
  std::vector<int> target_argmax, pass, history;  // per-round scratch (capacity kept across rounds)
  DraftProposal proposal;
  TokenDistribution dist;

  GenerationResult result;
  result.prompt_tokens = int(prompt.size());
  const auto start = std::chrono::steady_clock::now();
  bool done = false;
  // Appends an accepted or target-drawn token; false when generation is over (stop token, length, callback).
  auto emit = [&](int token) {
    if (result.tokens.empty()) result.first_token_ms = result.prefill_ms = elapsed_ms(start);
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end()) {
      result.stopped_by_token = true;
      return false;
    }
    sequence.push_back(token);
    result.tokens.push_back(token);
    result.token_ms.push_back(elapsed_ms(start));
    result.token_bytes.push_back(result.bytes_moved);
    if (on_token && !on_token(token)) return false;
    return int(result.tokens.size()) < options.max_new_tokens;
  };

  // Prefill the prompt in chunks the target's buffers take, and draw the first token from its last row,
  // as plain decoding does: the cache then holds the sequence (prompt + first token) but its last token.
  // (Prefilling all but the last prompt token and running that one as the first step cost one more pass
  // over the weights per generation: ch08 measured the speculative prefill ~14 ms slower than plain.)
  const size_t prefill = options.max_new_tokens > 0 ? prompt.size() : prompt.size() - 1;
  for (size_t begin = 0; begin < prefill;) {
    const size_t count = std::min(prefill - begin, size_t(target_.max_tokens()));
    rows.resize(vocab);
    const ForwardStats forward = target.extend(std::span<const int>(prompt).subspan(begin, count), rows.data(), false);
    result.bytes_moved += forward.weight_bytes + forward.kv_bytes;
    begin += count;
  }
  // The draft's own prefill (an early-exit draft copies its layers' K/V from the target's cache instead):
  // part of the time to the first token, not of a guess's cost.
  draft_.begin(prompt, target);

  done = options.max_new_tokens == 0;
  if (!done) {
    sampler.distribution(std::span<float>(rows).first(vocab), sequence, dist);
    done = !emit(sampler.draw(dist));
  }
  while (!done) {
    // ---- 1. the draft guesses (at most what is left to generate, and what one pass can take) --------
    const int left = options.max_new_tokens - int(result.tokens.size());
    const int limit = std::min({left - 1, options_.max_gamma, target_.max_tokens() - 1});
    const int gamma = controller.next_gamma(limit, int(result.tokens.size()), stats_);
    const auto draft_start = std::chrono::steady_clock::now();
    proposal.clear();
    if (gamma > 0) draft_.propose(sequence, gamma, draft_sampler, proposal);
    const double draft_ms = elapsed_ms(draft_start);
    const int k = int(proposal.tokens.size());
    if (k > gamma) fail("speculative: the draft proposed {} tokens, {} were asked for", k, gamma);

    // ---- 2. one target pass over [last token, d_1 .. d_k] --------------------------------------------
    const auto target_start = std::chrono::steady_clock::now();
    pass.assign(1, sequence.back());
    pass.insert(pass.end(), proposal.tokens.begin(), proposal.tokens.end());
    rows.resize(pass.size() * vocab);
    const ForwardStats forward = target.extend(pass, rows.data(), /*all_rows=*/true);
    result.bytes_moved += forward.weight_bytes + forward.kv_bytes;
    const double target_ms = elapsed_ms(target_start);
    auto row = [&](int i) { return std::span<float>(rows).subspan(size_t(i) * vocab, vocab); };

    // ---- 3. verification ----------------------------------------------------------------------------
    int accepted = 0;
    bool rejected = false;
    if (options.sampler.temperature == 0.0f) {
      // Greedy: the target's choice after each prefix (penalties see the guesses before it), then the
      // longest agreeing prefix; the target's choice after it is the next token.
      target_argmax.clear();
      history = sequence;
      for (int i = 0; i <= k; ++i) {
        sampler.distribution(row(i), history, dist);
        target_argmax.push_back(dist.candidates.front().second);
        if (i < k) history.push_back(proposal.tokens[size_t(i)]);
      }
      accepted = accept_greedy(proposal.tokens, target_argmax);
      rejected = accepted < k;
      for (int i = 0; i < accepted && !done; ++i) done = !emit(proposal.tokens[size_t(i)]);
      if (!done) done = !emit(target_argmax[size_t(accepted)]);
    } else {
      // Sampling: accept d_i with probability min(1, p(d_i) / q(d_i)); the first rejection draws from
      // normalize(max(0, p - q)); all accepted: a bonus token from p_(k+1).
      for (int i = 0; i <= k && !done; ++i) {
        sampler.distribution(row(i), sequence, dist);
        if (i == k) {
          done = !emit(sampler.draw(dist));
          break;
        }
        const int guess = proposal.tokens[size_t(i)];
        const double q_guess = proposal.q.empty() ? 1.0 : double(proposal.q[size_t(i) * vocab + size_t(guess)]);
        if (options_.accept_rule(dist.probability(guess), q_guess, sampler.uniform())) {
          ++accepted;
          done = !emit(guess);
          continue;
        }
        rejected = true;
        dist.to_dense(p_dense);
        if (proposal.q.empty()) {
          std::fill(q_dense.begin(), q_dense.end(), 0.0f);
          q_dense[size_t(guess)] = 1.0f;  // a deterministic guess: q is its point mass
        } else {
          std::copy_n(proposal.q.begin() + ptrdiff_t(size_t(i) * vocab), vocab, q_dense.begin());
        }
        done = !emit(sample_residual(p_dense, q_dense, sampler.uniform()));
        break;
      }
    }

    // ---- 4. rollback: the target keeps the sequence but its last token (the draft syncs at its next turn)
    target.truncate(std::min(target.length(), int(sequence.size()) - 1));

    controller.record(k + 1, k, accepted, rejected, draft_ms, target_ms);
    stats_.draft_ms += draft_ms;
    stats_.target_ms += target_ms;
    ++stats_.gamma_rounds[size_t(k)];
    if (k == 0) {
      ++stats_.plain_steps;
    } else {
      ++stats_.rounds;
      stats_.drafted += k;
      stats_.accepted += accepted;
      stats_.rejected += rejected ? 1 : 0;
    }
  }
  stats_.draft_passes = draft_.passes() - draft_passes_before;
  stats_.plain_pass_ms = controller.pass_ms(1);
  stats_.draft_token_ms = std::max(controller.draft_token_ms(), 0.0);
  result.total_ms = elapsed_ms(start);
  result.decode_ms = result.total_ms - result.prefill_ms;
  return result;
}

}  // namespace infer
