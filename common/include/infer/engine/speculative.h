// speculative.h: speculative decoding (ch08): a cheap draft guesses, the target checks every guess in one pass.
//
// Batch-1 decode reads every weight once per token, while the same read could score several tokens. One
// round, with the sequence x_1..x_n (the target's cache holds x_1..x_(n-1)):
//   1. the draft proposes d_1..d_k (k <= gamma), from distributions q_1..q_k        (draft.h)
//   2. the target runs [x_n, d_1, .., d_k] in ONE pass: k + 1 rows of logits, p_1..p_(k+1), where p_i is
//      the target's filtered next-token distribution after x, d_1..d_(i-1)
//   3. verification, left to right (verify_* below):
//        greedy (temperature 0):  accept d_i while d_i == argmax p_i
//        sampling:                accept d_i with probability min(1, p_i(d_i) / q_i(d_i)); at the first
//                                 rejection draw the replacement from normalize(max(0, p_i - q_i))
//      and one more token from the target comes free: the replacement at the first rejection, or, when
//      all k were accepted, a bonus token drawn from p_(k+1)
//   4. rollback: the target forgets the rejected positions (SequenceRunner::truncate), the draft its own.
// Every round yields between 1 and k + 1 tokens for one target pass. The rule in step 3 makes the
// output distribution exactly the target's (Leviathan et al. 2023, Chen et al. 2023), so the draft
// changes only the speed. With a per-token acceptance rate a and a draft costing c target passes per
// token, a round of gamma guesses yields E = (1 - a^(gamma+1)) / (1 - a) tokens for gamma c + 1 passes:
//   speedup = (1 - a^(gamma+1)) / ((1 - a) (gamma c + 1))                                (Leviathan et al.)
// On a CPU the verification pass of gamma + 1 tokens costs more than one decode step (v > 1 below), so
// the controller uses the measured pass times instead of the "+1".
//
// GammaController chooses gamma each round from the running acceptance rate and the measured costs, and
// switches speculation off when no gamma is predicted to beat plain decoding (and probes now and then, to
// switch it back on when it would pay again). Each switch is logged in SpeculativeStats.
#pragma once

#include "infer/engine/draft.h"
#include "infer/engine/generator.h"
#include "infer/engine/sampler.h"
#include "infer/engine/sequence_runner.h"

#include <span>
#include <string>
#include <vector>

namespace infer {

// ---- verification: the rules of step 3 ------------------------------------------------------------

// Greedy: the number of guesses accepted (the longest prefix with draft[i] == target_argmax[i]).
// target_argmax has draft.size() + 1 entries; the next token is target_argmax[accepted].
int accept_greedy(std::span<const int> draft, std::span<const int> target_argmax);

// Sampling, one guess x: accepted when u < p(x) / q(x), i.e. with probability min(1, p(x) / q(x)).
// `u` is uniform in [0, 1).
bool accept_draft_token(double p_x, double q_x, double u);

// The replacement after a rejection: a draw (with uniform u in [0, 1)) from normalize(max(0, p - q)),
// p and q dense probabilities over the vocabulary. If p - q has no positive mass (p == q up to
// rounding; a rejection is then next to impossible), draws from p instead.
int sample_residual(std::span<const float> p, std::span<const float> q, double u);

// ---- the controller: adaptive gamma and the fallback ----------------------------------------------

struct SpeculativeOptions {
  int gamma = 4;             // guesses per round (the first rounds' value when adaptive)
  int max_gamma = 8;
  bool adaptive = true;      // gamma follows the running acceptance rate and the measured costs
  bool fallback = true;      // switch speculation off while it is predicted not to pay
  int probe_every = 24;      // while off: one speculative round after this many plain steps (doubled after each
                             // failed probe, up to 8x; back to this after a promising one)
  double min_gain = 1.1;     // speculate only when predicted >= min_gain x plain decoding (the prediction, from
                             // the fastest costs seen, ran ~10-25% above the measured speedup in ch08)
  double acceptance_prior = 0.7;  // the acceptance rate assumed before any round was verified
  // Costs measured beforehand (ch08's Part 1), used until the run has measured its own: pass_cost[n - 1] = a target
  // pass over n tokens / a pass over 1 (V(n)), draft_cost = a guess / a one-token target pass (c). With both given
  // the controller chooses gamma from the first speculative round on (no warm-up round at `gamma`).
  std::vector<double> pass_cost;  // empty: unknown
  double draft_cost = -1.0;       // < 0: unknown
  // The sampling acceptance test (accept_draft_token). Replaceable only so that the tests can show a
  // wrong rule changing the output distribution; leave it alone otherwise.
  bool (*accept_rule)(double p_x, double q_x, double u) = accept_draft_token;
};

// A switch of the fallback: speculation went off (or on) after `token` generated tokens.
struct SpeculationSwitch {
  int token = 0;
  bool on = false;
  double acceptance = 0.0;       // the running acceptance rate at that moment
  double predicted_gain = 0.0;   // best predicted rate / plain rate
};

struct SpeculativeStats {
  int rounds = 0;            // speculative rounds (a target pass over guesses)
  int plain_steps = 0;       // target passes without guesses (off, or a draft with nothing to propose)
  int drafted = 0;           // guesses proposed
  int accepted = 0;          // guesses accepted
  int rejected = 0;          // rounds ended by a rejection (the rest ended with all guesses accepted)
  int draft_passes = 0;      // the draft model's passes (0 for prompt lookup)
  double draft_ms = 0.0;     // time spent proposing
  double target_ms = 0.0;    // time spent in target passes (plain and verification)
  double plain_pass_ms = 0.0;    // measured cost of a one-token target pass (the fastest seen)
  double draft_token_ms = 0.0;   // measured cost of one guess (the fastest seen)
  std::vector<int> gamma_rounds;  // gamma_rounds[g]: rounds run with g guesses (g = 0: plain steps)
  std::vector<SpeculationSwitch> switches;

  int target_passes() const { return rounds + plain_steps; }
  // Per-token acceptance rate a: accepted / (accepted + rejected), the guesses compared (a round stops
  // comparing at its first rejection, so guesses after it are neither).
  double acceptance_rate() const { return accepted + rejected > 0 ? double(accepted) / (accepted + rejected) : 0.0; }
  double mean_gamma() const { return rounds > 0 ? double(drafted) / rounds : 0.0; }
};

// The Leviathan et al. prediction: speedup = (1 - a^(gamma+1)) / ((1 - a) (gamma c + 1)).
double predicted_speedup(double acceptance, double gamma, double cost_ratio);
// Expected tokens per round: (1 - a^(gamma+1)) / (1 - a)  (gamma + 1 when a == 1).
double expected_tokens_per_round(double acceptance, double gamma);

class GammaController {
 public:
  explicit GammaController(SpeculativeOptions options);
  // Guesses for the next round (0: a plain step), at most `limit`.
  int next_gamma(int limit, int tokens_so_far, SpeculativeStats& stats);
  // After a round: `width` tokens in the target pass, `drafted` guesses, `accepted` of them, whether one
  // was rejected, and the measured times.
  void record(int width, int drafted, int accepted, bool rejected, double draft_ms, double target_ms);
  double acceptance() const { return accepted_ / compared_; }
  // Predicted target-pass time for `width` tokens (a line through the measured widths).
  double pass_ms(int width) const;
  // Measured cost of a guess (else the prior draft_cost scaled to this run's one-token pass; < 0: unknown).
  double draft_token_ms() const;
  // Predicted tokens per millisecond with `gamma` guesses (gamma = 0: plain decoding).
  double predicted_rate(int gamma) const;

 private:
  SpeculativeOptions options_;
  bool on_ = true;
  int plain_since_probe_ = 0;
  int probe_interval_ = 1;                     // plain steps between probes while off (options.probe_every, doubled
                                               // after each probe that failed)
  double accepted_, compared_;                 // decayed counts: acceptance = accepted / compared
  double draft_token_ms_ = -1.0;               // fastest seen, slowly forgotten; < 0 until measured
  std::vector<double> pass_ms_;                // per width: fastest seen, slowly forgotten; < 0 until measured
  int best_gamma() const;
};

// ---- the generator ----------------------------------------------------------------------------------

// Speculative decoding of one sequence: `target` scores, `draft` guesses. The target runs through its own
// SequenceRunner per call: a contiguous cache sized for the call, or blocks of a paged `storage` (given back
// when the call returns, the draft's too). generate() follows the Generator contract (same tokens as
// CachedGenerator when greedy); stats() describes the last call.
class SpeculativeGenerator : public Generator {
 public:
  SpeculativeGenerator(Transformer& target, Draft& draft, SpeculativeOptions options = {}, KVStorage storage = {});
  GenerationResult generate(const std::vector<int>& prompt, const GenerationOptions& options,
                            const TokenCallback& on_token = {}) override;
  const SpeculativeStats& stats() const { return stats_; }

 private:
  Transformer& target_;
  Draft& draft_;
  SpeculativeOptions options_;
  KVStorage storage_;
  SpeculativeStats stats_;
};

}  // namespace infer
