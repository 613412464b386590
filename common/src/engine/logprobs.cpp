// logprobs.cpp: log_softmax of a raw logit row, for one token and the top-N (logprobs.h).
#include "infer/engine/logprobs.h"

#include "infer/core/error.h"

#include <algorithm>
#include <cmath>

namespace infer {

TokenLogprobs compute_token_logprobs(std::span<const float> logits, int token, int top_n) {
  if (logits.empty()) fail("logprobs: empty logits");
  if (token < 0 || size_t(token) >= logits.size())
    fail("logprobs: token {} is outside the vocabulary of {}", token, logits.size());
  if (top_n < 0 || top_n > kMaxTopLogprobs) fail("logprobs: top_n must be in [0, {}], got {}", kMaxTopLogprobs, top_n);

  // log(sum exp(l - max)) with the max subtracted first: every term is in (0, 1], no overflow.
  float max_logit = -INFINITY;
  for (float l : logits) max_logit = std::max(max_logit, l);
  if (!std::isfinite(max_logit)) fail("logprobs: the logits have no finite maximum (got {})", max_logit);
  double sum = 0.0;
  for (float l : logits) sum += std::exp(double(l) - double(max_logit));
  if (!std::isfinite(sum)) fail("logprobs: the logits contain NaN");
  const double log_normalizer = double(max_logit) + std::log(sum);
  auto logprob = [&](size_t id) { return float(double(logits[id]) - log_normalizer); };

  TokenLogprobs out;
  out.logprob = logprob(size_t(token));
  if (top_n == 0) return out;
  // The top_n largest by one pass with a small sorted list: (logit desc, id asc) is the order; a later id with
  // an equal logit never displaces an earlier one.
  std::vector<std::pair<float, int>> best;
  best.reserve(size_t(top_n) + 1);
  for (size_t id = 0; id < logits.size(); ++id) {
    const float l = logits[id];
    if (int(best.size()) == top_n && !(l > best.back().first)) continue;
    auto at = std::upper_bound(best.begin(), best.end(), l, [](float value, const std::pair<float, int>& entry) {
      return value > entry.first;  // stays after entries with an equal logit (lower ids)
    });
    best.insert(at, {l, int(id)});
    if (int(best.size()) > top_n) best.pop_back();
  }
  out.top.reserve(best.size());
  for (const auto& [l, id] : best) out.top.push_back({id, logprob(size_t(id))});
  return out;
}

}  // namespace infer
