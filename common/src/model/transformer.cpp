// transformer.cpp: the Llama forward pass, written once against Backend.
#include "infer/model/transformer.h"

#include "infer/core/error.h"

#include <algorithm>
#include <cmath>

namespace infer {

Transformer::Transformer(const Weights& weights, Backend& backend, int max_tokens)
    : weights_(weights), backend_(backend), max_tokens_(max_tokens) {
  const ModelConfig& c = weights.config();
  if (max_tokens <= 0) fail("Transformer: max_tokens must be positive (got {})", max_tokens);
  const size_t n = size_t(max_tokens);
  x_ = DeviceArray<float>(backend, n * c.dim);          // (n, dim) residual stream
  xb_ = DeviceArray<float>(backend, n * c.dim);         // (n, dim) normalised input of a block
  xb2_ = DeviceArray<float>(backend, n * c.dim);        // (n, dim) output of a block
  q_ = DeviceArray<float>(backend, n * c.q_dim());      // (n, n_heads, head_dim)
  k_ = DeviceArray<float>(backend, n * c.kv_dim());     // (n, n_kv_heads, head_dim)
  v_ = DeviceArray<float>(backend, n * c.kv_dim());     // (n, n_kv_heads, head_dim)
  att_out_ = DeviceArray<float>(backend, n * c.q_dim());// (n, n_heads, head_dim)
  gate_ = DeviceArray<float>(backend, n * c.hidden_dim);// (n, hidden_dim)
  up_ = DeviceArray<float>(backend, n * c.hidden_dim);  // (n, hidden_dim)
  logits_ = DeviceArray<float>(backend, n * c.vocab_size);  // (n, vocab_size)
}

ForwardStats Transformer::forward(std::span<const int> tokens, int start_pos, KVCache& cache, float* logits_out,
                                  float* all_logits) {
  const ModelConfig& c = weights_.config();
  const int n = int(tokens.size());
  if (n <= 0) fail("forward: no tokens");
  if (n > max_tokens_) fail("forward: {} tokens in one pass, but buffers were sized for {}", n, max_tokens_);
  if (start_pos < 0 || start_pos + n > cache.max_seq())
    fail("forward: positions [{}, {}) do not fit the KV cache of {} positions", start_pos, start_pos + n, cache.max_seq());

  Backend& be = backend_;
  const int kv_dim = c.kv_dim();
  ForwardStats stats;

  // ---- token embedding ---------------------------------------------------------------------------
  be.embed(weights_.token_embedding(), tokens.data(), n, x_.data());
  if (check_finite_) check_activation(x_.data(), size_t(n) * c.dim, -1, "token embedding");

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = weights_.layers()[l];

    // ---- attention block: x += Wo . attention(rope(Wq xn), rope(Wk xn), Wv xn) -------------------
    be.rmsnorm(x_.data(), w.attn_norm.data(), xb_.data(), n, c.dim, c.norm_eps);
    if (check_finite_) check_activation(xb_.data(), size_t(n) * c.dim, l, "attn_norm");
    be.matmul(w.wq, xb_.data(), q_.data(), n);
    be.matmul(w.wk, xb_.data(), k_.data(), n);
    be.matmul(w.wv, xb_.data(), v_.data(), n);
    if (check_finite_) check_activation(q_.data(), size_t(n) * c.q_dim(), l, "attn_q");
    if (check_finite_) check_activation(k_.data(), size_t(n) * kv_dim, l, "attn_k");
    if (check_finite_) check_activation(v_.data(), size_t(n) * kv_dim, l, "attn_v");
    be.rope(q_.data(), n, c.n_heads, c.head_dim, start_pos, c.rope_theta, c.rope_layout);
    be.rope(k_.data(), n, c.n_kv_heads, c.head_dim, start_pos, c.rope_theta, c.rope_layout);
    if (check_finite_) check_activation(q_.data(), size_t(n) * c.q_dim(), l, "rope(q)");
    if (check_finite_) check_activation(k_.data(), size_t(n) * kv_dim, l, "rope(k)");
    // The new keys/values join the cache at their positions; attention then reads [0, start_pos + n).
    cache.append(l, start_pos, k_.data(), v_.data(), n);
    be.attention(q_.data(), cache.k(l), cache.v(l), att_out_.data(), n, start_pos, c.n_heads, c.n_kv_heads, c.head_dim);
    if (check_finite_) check_activation(att_out_.data(), size_t(n) * c.q_dim(), l, "attention");
    be.matmul(w.wo, att_out_.data(), xb2_.data(), n);
    if (check_finite_) check_activation(xb2_.data(), size_t(n) * c.dim, l, "attn_output");
    be.add(x_.data(), xb2_.data(), size_t(n) * c.dim);
    if (check_finite_) check_activation(x_.data(), size_t(n) * c.dim, l, "attention residual add");

    // ---- feed-forward block: x += W2 . (silu(W1 xn) * W3 xn) ------------------------------------
    be.rmsnorm(x_.data(), w.ffn_norm.data(), xb_.data(), n, c.dim, c.norm_eps);
    if (check_finite_) check_activation(xb_.data(), size_t(n) * c.dim, l, "ffn_norm");
    be.matmul(w.w_gate, xb_.data(), gate_.data(), n);
    be.matmul(w.w_up, xb_.data(), up_.data(), n);
    if (check_finite_) check_activation(gate_.data(), size_t(n) * c.hidden_dim, l, "ffn_gate");
    if (check_finite_) check_activation(up_.data(), size_t(n) * c.hidden_dim, l, "ffn_up");
    be.silu_mul(gate_.data(), up_.data(), size_t(n) * c.hidden_dim);
    if (check_finite_) check_activation(gate_.data(), size_t(n) * c.hidden_dim, l, "silu(gate) * up");
    be.matmul(w.w_down, gate_.data(), xb2_.data(), n);
    if (check_finite_) check_activation(xb2_.data(), size_t(n) * c.dim, l, "ffn_down");
    be.add(x_.data(), xb2_.data(), size_t(n) * c.dim);
    if (check_finite_) check_activation(x_.data(), size_t(n) * c.dim, l, "ffn residual add");

    // KV traffic: the n new rows are written; query t reads positions [0, start_pos + t] once per
    // kv head (the query heads of a group share them in cache).
    const uint64_t row_bytes = uint64_t(kv_dim) * sizeof(float);
    stats.kv_bytes += 2 * row_bytes * uint64_t(n);
    for (int t = 0; t < n; ++t) stats.kv_bytes += 2 * row_bytes * uint64_t(start_pos + t + 1);
  }

  // ---- classifier: only the rows whose logits are wanted --------------------------------------------
  const int first = all_logits != nullptr ? 0 : n - 1;
  const int rows = n - first;
  be.rmsnorm(x_.data() + size_t(first) * c.dim, weights_.final_norm(), xb_.data(), rows, c.dim, c.norm_eps);
  if (check_finite_) check_activation(xb_.data(), size_t(rows) * c.dim, -1, "output_norm");
  be.matmul(weights_.classifier(), xb_.data(), logits_.data(), rows);
  if (check_finite_) check_activation(logits_.data(), size_t(rows) * c.vocab_size, -1, "classifier (logits)");
  const size_t vocab = size_t(c.vocab_size);
  if (all_logits != nullptr) be.download(all_logits, logits_.data(), size_t(rows) * vocab * sizeof(float));
  be.download(logits_out, logits_.data() + size_t(rows - 1) * vocab, vocab * sizeof(float));

  stats.weight_bytes = weights_.bytes_per_forward(n);
  return stats;
}

// ---- debug check: NaN/Inf in an activation ----------------------------------------------------------
void Transformer::check_activation(const float* data, size_t count, int layer, const char* op) {
  check_host_.resize(count);
  backend_.download(check_host_.data(), data, count * sizeof(float));
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(check_host_[i]) && bad++ == 0) first = i;
  }
  if (bad == 0) return;
  const std::string where = layer >= 0 ? fmt::format("layer {}", layer) : std::string("outside the layers");
  fail("forward (--check-numerics): {}, after {}: {} non-finite values (first at index {} of {}, value {})", where, op,
       bad, first, count, check_host_[first]);
}

}  // namespace infer
