// generator.cpp: NaiveGenerator, the book's baseline decoder (no KV cache carried between steps).
#include "infer/engine/generator.h"

#include "infer/core/error.h"
#include "infer/core/timer.h"

#include <algorithm>
#include <chrono>

namespace infer {

// Checks that prompt + new tokens fit the model's context and the transformer's buffers.
void check_generation_length(const ModelConfig& config, size_t prompt_tokens, int max_new_tokens, int buffer_tokens) {
  if (prompt_tokens == 0) fail("generate: the prompt is empty (a model needs at least one token, e.g. BOS)");
  if (max_new_tokens < 0) fail("generate: max_new_tokens must be >= 0 (got {})", max_new_tokens);
  const int64_t total = int64_t(prompt_tokens) + max_new_tokens;
  const int context = config.max_seq_len;
  if (total > context)
    fail("generate: prompt of {} tokens + {} new tokens = {} exceeds the model's context length of {}",
         prompt_tokens, max_new_tokens, total, context);
  if (total > buffer_tokens)
    fail("generate: prompt of {} tokens + {} new tokens = {} exceeds the {} positions this generator was sized for",
         prompt_tokens, max_new_tokens, total, buffer_tokens);
}

GenerationResult run_decode_loop(const std::vector<int>& prompt, const GenerationOptions& options, int vocab_size,
                                 const DecodeStep& step_forward, const TokenCallback& on_token) {
  GenerationResult result;
  result.prompt_tokens = int(prompt.size());
  Sampler sampler(options.sampler);
  std::vector<int> sequence = prompt;  // prompt + generated: the model's input and the sampler's history
  sequence.reserve(prompt.size() + size_t(std::max(options.max_new_tokens, 0)));
  std::vector<float> logits(static_cast<size_t>(vocab_size));

  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < options.max_new_tokens; ++step) {
    const ForwardStats stats = step_forward(step, sequence, logits.data());
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

GenerationResult NaiveGenerator::generate(const std::vector<int>& prompt, const GenerationOptions& options,
                                          const TokenCallback& on_token) {
  check_generation_length(model_.config(), prompt.size(), options.max_new_tokens, model_.max_tokens());
  const int total = int(prompt.size()) + options.max_new_tokens;
  // The cache here is only the forward pass's scratch for one step: every step rewrites it from
  // position 0, so nothing computed for the previous token is reused. That is the point.
  KVCache scratch(model_.backend(), model_.config(), std::max(total, 1), kv_dtype_);
  return run_decode_loop(
      prompt, options, model_.config().vocab_size,
      [&](int /*step*/, const std::vector<int>& sequence, float* logits) {
        return model_.forward(sequence, /*start_pos=*/0, scratch, logits);  // the whole sequence, every step
      },
      on_token);
}

}  // namespace infer
