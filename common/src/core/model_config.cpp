// model_config.cpp: parameter counting and validation of ModelConfig.
#include "infer/core/model_config.h"

#include "infer/core/error.h"

namespace infer {

int64_t ModelConfig::n_params() const {
  const int64_t d = dim, h = hidden_dim;
  const int64_t per_layer = 2 * d                      // the two RMSNorm weights
                            + d * q_dim() + 2 * d * kv_dim() + q_dim() * d  // wq, wk, wv, wo
                            + 3 * d * h;               // w1, w2, w3
  const int64_t embedding = int64_t(vocab_size) * d;
  return embedding + n_layers * per_layer + d + (tied_embeddings ? 0 : embedding);
}

void ModelConfig::validate(const std::string& source) const {
  auto check = [&](bool ok, const char* what, int64_t value) {
    if (!ok) fail("{}: invalid model config: {} = {}", source, what, value);
  };
  // Upper bounds are far above any real model; they catch garbage headers before any allocation.
  check(dim > 0 && dim <= (1 << 16), "dim", dim);
  check(n_layers > 0 && n_layers <= 1024, "n_layers", n_layers);
  check(n_heads > 0 && n_heads <= 1024, "n_heads", n_heads);
  check(n_kv_heads > 0 && n_kv_heads <= n_heads, "n_kv_heads", n_kv_heads);
  check(n_heads % n_kv_heads == 0, "n_heads % n_kv_heads (must divide for GQA)", n_heads % n_kv_heads);
  check(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 1024, "head_dim (must be even)", head_dim);
  check(hidden_dim > 0 && hidden_dim <= (1 << 20), "hidden_dim", hidden_dim);
  check(vocab_size > 0 && vocab_size <= (1 << 22), "vocab_size", vocab_size);
  check(max_seq_len > 0 && max_seq_len <= (1 << 24), "max_seq_len", max_seq_len);
  if (!(rope_theta > 0.0f)) fail("{}: invalid model config: rope_theta = {}", source, rope_theta);
  if (!(norm_eps > 0.0f && norm_eps < 1.0f)) fail("{}: invalid model config: norm_eps = {}", source, norm_eps);
  if (architecture != "llama") fail("{}: unsupported architecture '{}' (this engine runs the Llama family)", source, architecture);
}

}  // namespace infer
