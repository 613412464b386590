// cached_generator.cpp: CachedGenerator, decoding with a KV cache (ch05).
//
// The naive decoder recomputes every position's keys and values at every step, although a
// position's K/V never change once computed (causal attention: position p only ever sees [0, p]).
// Here they are computed once and kept:
//   prefill:  forward(prompt, start_pos 0)        n = prompt length, GEMM path, K/V of [0, P) cached
//   decode:   forward(last token, start_pos = p)  n = 1, GEMV path, attends over the cached [0, p]
// Each decode step reads every weight once (bytes_per_forward(1)) plus the K/V rows so far, so a
// token costs O(1) in matmul work instead of O(t), and generating T tokens is O(T) instead of O(T^2).
#include "infer/core/error.h"
#include "infer/engine/generator.h"

#include <algorithm>
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

  const int total = int(prompt.size()) + options.max_new_tokens;
  KVCache cache(model_.backend(), model_.config(), std::max(total, 1), kv_dtype_);  // (n_layers, total, n_kv_heads, head_dim)
  return run_decode_loop(
      prompt, options, model_.config().vocab_size,
      [&](int step, const std::vector<int>& sequence, float* logits) {
        // Step 0 is the prefill of the whole prompt; every later step feeds only the token sampled
        // last, at its position (the sequence's last index), attending over the cached ones.
        if (step == 0) return model_.forward(sequence, /*start_pos=*/0, cache, logits);
        return model_.forward(std::span<const int>(&sequence.back(), 1), int(sequence.size()) - 1, cache, logits);
      },
      on_token);
}

}  // namespace infer
