// cached_generator.cpp: CachedGenerator, decoding with a KV cache (ch05).
//
// The naive decoder recomputes every position's keys and values at every step, although a
// position's K/V never change once computed (causal attention: position p only ever sees [0, p]).
// Here they are computed once and kept:
//   prefill:  forward(prompt, start_pos 0)        n = prompt length, GEMM path, K/V of [0, P) cached
//   decode:   forward(last token, start_pos = p)  n = 1, GEMV path, attends over the cached [0, p]
// Each decode step reads every weight once (bytes_per_forward(1)) plus the K/V rows so far, so a
// token costs O(1) in matmul work instead of O(t), and generating T tokens is O(T) instead of O(T^2).
#include "infer/error.h"
#include "infer/generator.h"
#include "infer/timer.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace infer {

GenerationResult CachedGenerator::generate(const std::vector<int>& prompt, const GenerationOptions& options,
                                           const TokenCallback& on_token) {
  // The cache is sized per call, so only the model's context bounds prompt + new tokens; the
  // activation buffers bound the prompt, which goes through in one pass.
  check_generation_length(model_.config(), prompt.size(), options.max_new_tokens, std::numeric_limits<int>::max());
  if (prompt.size() > size_t(model_.max_tokens()))
    fail("generate: the prompt has {} tokens but the transformer's buffers take {} per pass (prefill runs the "
         "whole prompt at once; build the Transformer with max_tokens >= the prompt length)",
         prompt.size(), model_.max_tokens());

  GenerationResult result;
  result.prompt_tokens = int(prompt.size());
  if (options.max_new_tokens == 0) return result;

  const int total = int(prompt.size()) + options.max_new_tokens;
  Sampler sampler(options.sampler);
  KVCache cache(model_.backend(), model_.config(), total);  // (n_layers, total, n_kv_heads, head_dim)
  std::vector<int> sequence = prompt;                       // prompt + generated: the sampler's history
  sequence.reserve(size_t(total));
  std::vector<float> logits(size_t(model_.config().vocab_size));

  const auto start = std::chrono::steady_clock::now();
  int position = int(prompt.size());  // where the next token fed to the model goes
  for (int step = 0; step < options.max_new_tokens; ++step) {
    // Step 0 is the prefill of the whole prompt; every later step feeds only the token sampled last.
    const ForwardStats stats = step == 0 ? model_.forward(prompt, /*start_pos=*/0, cache, logits.data())
                                         : model_.forward(std::span<const int>(&sequence.back(), 1), position++,
                                                          cache, logits.data());
    result.bytes_moved += stats.weight_bytes + stats.kv_bytes;
    const int next = sampler.sample(logits, sequence);
    if (step == 0) result.first_token_ms = result.prefill_ms = elapsed_ms(start);
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end()) {
      result.stopped_by_token = true;
      break;
    }
    sequence.push_back(next);
    result.tokens.push_back(next);
    result.token_ms.push_back(elapsed_ms(start));
    result.token_bytes.push_back(result.bytes_moved);
    if (on_token && !on_token(next)) break;
  }
  result.total_ms = elapsed_ms(start);
  result.decode_ms = result.total_ms - result.prefill_ms;
  return result;
}

}  // namespace infer
