// logprobs.h: the log-probability of a generated token and its most likely alternatives (the OpenAI API's
// `logprobs` / `top_logprobs`).
//
// Which distribution: log_softmax of the model's raw logits for that position, before the request's
// penalties, temperature and top-p / top-k / min-p filters. This is what vLLM returns by default (its
// "raw_logprobs" mode: the model's own probabilities, independent of the sampling settings), and it keeps the
// numbers comparable across temperatures (under temperature 0 the sampled distribution is a point mass, whose
// log-probabilities, 0 and -inf, say nothing). A sampled token that a filter would have cut still gets its
// true, finite log-probability.
//
//   logprob(t) = logit(t) - max - log(sum_v exp(logit(v) - max))        (computed in double)
//
// top: the `top_n` largest logprobs, most likely first; ties go to the lower token id (the same total order
// as argmax, so under greedy decoding without penalties the sampled token is top[0]).
#pragma once

#include <span>
#include <vector>

namespace infer {

struct TokenLogprob {
  int token = -1;
  float logprob = 0.0f;
};

inline constexpr int kMaxTopLogprobs = 20;  // the OpenAI API's bound on top_logprobs

struct TokenLogprobs {
  float logprob = 0.0f;              // of the sampled token
  std::vector<TokenLogprob> top;     // top_n entries, most likely first
};

// `logits`: one raw row (vocab values). Throws infer::Error for an empty row, a token outside it, top_n outside
// [0, kMaxTopLogprobs] or a row with no finite maximum (NaN / all -inf).
TokenLogprobs compute_token_logprobs(std::span<const float> logits, int token, int top_n);

}  // namespace infer
