// generator.h: decoding loops, one per chapter step. Each streams tokens through a callback and
// reports its timings.
//
// NaiveGenerator (ch03): every new token reruns the forward pass over the whole sequence so far,
// with nothing carried over between steps. Step t costs O(t) matmul rows and O(t^2) attention, so
// generating T tokens costs O(T^2): the baseline every later chapter must beat with the same tokens.
//
// CachedGenerator (ch05): one prefill pass runs the whole prompt through the model at once (the
// GEMM path, causal attention) and leaves every position's K/V in a KVCache; each decode step then
// runs only the newest token (n = 1, the GEMV path) and attends over the cached K/V. A step reads
// the weights once plus the cache rows so far: O(1) matmul work per token, O(t) attention.
#pragma once

#include "infer/engine/sampler.h"
#include "infer/model/transformer.h"

#include <functional>
#include <vector>

namespace infer {

struct GenerationOptions {
  int max_new_tokens = 128;
  SamplerConfig sampler;
  std::vector<int> stop_tokens;  // generation ends after sampling one of these (it is not emitted)
};

struct GenerationResult {
  std::vector<int> tokens;        // generated tokens (prompt excluded, stop token excluded)
  int prompt_tokens = 0;
  double first_token_ms = 0.0;    // time to the first generated token (prefill)
  double total_ms = 0.0;          // wall time of the whole generation
  double prefill_ms = 0.0;        // the prompt's forward pass (+ first sample); == first_token_ms
  double decode_ms = 0.0;         // total_ms - prefill_ms: the one-token steps after it
  // Per generated token i: wall time and bytes_moved (cumulative, from the start) when it was
  // sampled. A run of T tokens is the first T entries of a longer run with the same inputs (greedy),
  // so one run gives the cost of every shorter length.
  std::vector<double> token_ms;
  std::vector<uint64_t> token_bytes;
  uint64_t bytes_moved = 0;       // weight + KV bytes over all forward passes
  bool stopped_by_token = false;
  double ms_per_token() const { return tokens.empty() ? 0.0 : total_ms / double(tokens.size()); }
  double tokens_per_second() const { return total_ms > 0 ? 1000.0 * double(tokens.size()) / total_ms : 0.0; }
  // Decode-only rate: the tokens after the first one (the first comes from the prefill pass).
  double decode_tokens_per_second() const {
    return decode_ms > 0 && tokens.size() > 1 ? 1000.0 * double(tokens.size() - 1) / decode_ms : 0.0;
  }
};

// Throws infer::Error when the prompt is empty, or prompt + max_new_tokens exceeds the model's
// context length or the `buffer_tokens` positions a generator was sized for.
void check_generation_length(const ModelConfig& config, size_t prompt_tokens, int max_new_tokens, int buffer_tokens);

// Receives each generated token as soon as it is sampled; return false to stop early.
using TokenCallback = std::function<bool(int token)>;

// One step of a decoding loop: runs the model so that `logits` (vocab_size floats, host) holds the
// next-token distribution after `sequence` (prompt + tokens generated so far); returns what it moved.
using DecodeStep = std::function<ForwardStats(int step, const std::vector<int>& sequence, float* logits)>;

// The loop every generator shares: step, sample, stop on a stop token, record the timings and bytes,
// stream the token. Generators differ only in their DecodeStep (what they recompute, what they cache).
GenerationResult run_decode_loop(const std::vector<int>& prompt, const GenerationOptions& options, int vocab_size,
                                 const DecodeStep& step_forward, const TokenCallback& on_token);

class Generator {
 public:
  virtual ~Generator() = default;
  virtual GenerationResult generate(const std::vector<int>& prompt, const GenerationOptions& options,
                                    const TokenCallback& on_token = {}) = 0;
};

class NaiveGenerator : public Generator {
 public:
  // kv_dtype: the element type of the pass's scratch cache (int8 gives CachedGenerator's int8 tokens).
  explicit NaiveGenerator(Transformer& model, KVDType kv_dtype = KVDType::f32) : model_(model), kv_dtype_(kv_dtype) {}
  GenerationResult generate(const std::vector<int>& prompt, const GenerationOptions& options,
                            const TokenCallback& on_token = {}) override;

 private:
  Transformer& model_;
  KVDType kv_dtype_;
};

class CachedGenerator : public Generator {
 public:
  // The prompt must fit in one prefill pass: prompt length <= model.max_tokens(). The KV cache is
  // sized per call to prompt + max_new_tokens positions (bounded by the model's context).
  // kv_dtype: the cache's element type (ch07's int8 option; f32 by default).
  explicit CachedGenerator(Transformer& model, KVDType kv_dtype = KVDType::f32) : model_(model), kv_dtype_(kv_dtype) {}
  GenerationResult generate(const std::vector<int>& prompt, const GenerationOptions& options,
                            const TokenCallback& on_token = {}) override;

 private:
  Transformer& model_;
  KVDType kv_dtype_;
};

}  // namespace infer
