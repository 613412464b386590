// verify_student.cpp: ch08 lab: the verification step of speculative decoding.
//
// Built only with -DLAB=ch08 (scripts/lab.sh ch08), where it replaces common/src/engine/speculative_verify.cpp.
// The whole engine then uses your functions: SpeculativeGenerator (common/src/engine/speculative.cpp) calls
// them after every target pass, and the ch08_speculative program runs on them. Read ch08_speculative/lab/README.md.
//
// ---- The setting -------------------------------------------------------------------------------------
// A draft proposed tokens d_1 .. d_k. The target ran [last token, d_1 .. d_k] in one pass, so for every i it
// knows its own next-token distribution p_i after the sequence and d_1 .. d_(i-1). Verification decides how
// many guesses to keep; the token after them always comes from the target.
//
// ---- Exercise 1: greedy (temperature 0) ---------------------------------------------------------------
// accept_greedy(draft, target_argmax): target_argmax[i] is the target's choice after d_1 .. d_i (so it has
// draft.size() + 1 entries; the last is the bonus after all guesses). Return how many guesses to keep: the
// length of the longest prefix where draft[i] == target_argmax[i]. Throw an infer::Error (fail("...")) when
// target_argmax.size() != draft.size() + 1.
//
// ---- Exercise 2: sampling (the rejection-sampling step) ----------------------------------------------
// accept_draft_token(p_x, q_x, u): the draft drew x from q; p_x = p(x), q_x = q(x) > 0, u uniform in [0, 1).
// Accept x with probability min(1, p(x) / q(x)): return whether u says so.
//
// sample_residual(p, q, u): after a rejection, draw the replacement token from
//     r(y) = max(0, p(y) - q(y)) / sum over y' of max(0, p(y') - q(y'))
// using the one uniform u in [0, 1): walk the tokens in id order, adding r's unnormalised mass, and return the
// first token whose cumulative mass exceeds u * (total mass). If the total is 0 (p == q), draw from p the same
// way. p and q have the same size (the vocabulary); throw an infer::Error when they do not, or are empty.
//
// Why these rules: accepted tokens are kept with probability min(p, q) and the replacement makes up exactly the
// missing mass max(0, p - q), so every output token is distributed as p, whatever the draft (Leviathan et al. 2023).
#include "infer/core/error.h"
#include "infer/engine/speculative.h"

namespace infer {

int accept_greedy(std::span<const int> draft, std::span<const int> target_argmax) {
  // TODO(student): exercise 1.
  fail("ch08 lab: accept_greedy is not written yet (exercise 1)");
}

bool accept_draft_token(double p_x, double q_x, double u) {
  // TODO(student): exercise 2.
  fail("ch08 lab: accept_draft_token is not written yet (exercise 2)");
}

int sample_residual(std::span<const float> p, std::span<const float> q, double u) {
  // TODO(student): exercise 2.
  fail("ch08 lab: sample_residual is not written yet (exercise 2)");
}

}  // namespace infer
