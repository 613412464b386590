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

// ---- the batch's int arrays, uploaded once per pass ----------------------------------------------------
BatchView Transformer::upload_batch(const Batch& batch) {
  const int T = batch.n_tokens(), S = batch.n_sequences();
  batch_host_.clear();
  batch_host_.insert(batch_host_.end(), batch.positions.begin(), batch.positions.end());
  batch_host_.insert(batch_host_.end(), batch.slot_mapping.begin(), batch.slot_mapping.end());
  batch_host_.insert(batch_host_.end(), batch.query_start.begin(), batch.query_start.end());
  batch_host_.insert(batch_host_.end(), batch.context_lens.begin(), batch.context_lens.end());
  batch_host_.insert(batch_host_.end(), batch.block_tables.begin(), batch.block_tables.end());
  if (batch_ints_.size() < batch_host_.size()) batch_ints_ = DeviceArray<int>(backend_, batch_host_.size() * 2);
  backend_.upload(batch_ints_.data(), batch_host_.data(), batch_host_.size() * sizeof(int));

  BatchView view;
  view.n_tokens = T;
  view.n_sequences = S;
  view.block_size = batch.block_size;
  view.max_blocks = batch.max_blocks;
  view.max_context = *std::max_element(batch.context_lens.begin(), batch.context_lens.end());
  const int* base = batch_ints_.data();
  view.positions = base;
  view.slot_mapping = base + T;
  view.query_start = base + 2 * size_t(T);
  view.context_lens = view.query_start + (S + 1);
  view.block_tables = view.context_lens + S;
  return view;
}

// ---- the forward pass ----------------------------------------------------------------------------------
ForwardStats Transformer::forward(const Batch& batch, PagedKVCache& cache, float* logits_out) {
  const ModelConfig& c = weights_.config();
  batch.validate(cache.num_blocks());
  const int n = batch.n_tokens();
  if (n > max_tokens_) fail("forward: {} tokens in one pass, but buffers were sized for {}", n, max_tokens_);
  if (cache.n_layers() != c.n_layers || cache.kv_dim() != c.kv_dim())
    fail("forward: the KV cache holds {} layers of kv_dim {}, the model {} of {}", cache.n_layers(), cache.kv_dim(),
         c.n_layers, c.kv_dim());

  Backend& be = backend_;
  const int kv_dim = c.kv_dim();
  ForwardStats stats;
  const BatchView view = upload_batch(batch);

  // ---- token embedding ---------------------------------------------------------------------------
  be.embed(weights_.token_embedding(), batch.tokens.data(), n, x_.data());
  if (check_finite_) check_activation(x_.data(), size_t(n) * c.dim, -1, "token embedding");

  for (int l = 0; l < layers_run(); ++l) {
    const LayerWeights& w = weights_.layers()[l];

    // ---- attention block: x += Wo . attention(rope(Wq xn), rope(Wk xn), Wv xn) -------------------
    be.rmsnorm(x_.data(), w.attn_norm.data(), xb_.data(), n, c.dim, c.norm_eps);
    if (check_finite_) check_activation(xb_.data(), size_t(n) * c.dim, l, "attn_norm");
    {  // Q, K and V read the same xn: one call (on the CPU one parallel region, x quantized once)
      const Matrix* qkv[] = {&w.wq, &w.wk, &w.wv};
      float* outputs[] = {q_.data(), k_.data(), v_.data()};
      be.matmul_many(qkv, 3, xb_.data(), outputs, n);
    }
    if (check_finite_) check_activation(q_.data(), size_t(n) * c.q_dim(), l, "attn_q");
    if (check_finite_) check_activation(k_.data(), size_t(n) * kv_dim, l, "attn_k");
    if (check_finite_) check_activation(v_.data(), size_t(n) * kv_dim, l, "attn_v");
    be.rope(q_.data(), n, c.n_heads, c.head_dim, view.positions, c.rope_theta, c.rope_layout);
    be.rope(k_.data(), n, c.n_kv_heads, c.head_dim, view.positions, c.rope_theta, c.rope_layout);
    if (check_finite_) check_activation(q_.data(), size_t(n) * c.q_dim(), l, "rope(q)");
    if (check_finite_) check_activation(k_.data(), size_t(n) * kv_dim, l, "rope(k)");
    // The new keys/values join the pool at their slots; each query then reads positions [0, its own]
    // of its own sequence through the sequence's block table.
    if (cache.dtype() == KVDType::f32) {
      be.store_kv(k_.data(), v_.data(), cache.k(l), cache.v(l), view.slot_mapping, n, kv_dim, cache.capacity_tokens());
      be.paged_attention(q_.data(), cache.k(l), cache.v(l), att_out_.data(), view, c.n_heads, c.n_kv_heads, c.head_dim);
    } else {  // int8 (ch07): quantized on the way in, dequantized inside the attention kernel
      const Int8KVLayer pool = cache.int8_layer(l);
      be.store_kv_int8(k_.data(), v_.data(), pool, view.slot_mapping, n, c.n_kv_heads, c.head_dim,
                       cache.capacity_tokens());
      be.paged_attention_int8(q_.data(), pool, att_out_.data(), view, c.n_heads, c.n_kv_heads, c.head_dim);
    }
    if (check_finite_) check_activation(att_out_.data(), size_t(n) * c.q_dim(), l, "attention");
    be.matmul(w.wo, att_out_.data(), xb2_.data(), n);
    if (check_finite_) check_activation(xb2_.data(), size_t(n) * c.dim, l, "attn_output");
    be.add(x_.data(), xb2_.data(), size_t(n) * c.dim);
    if (check_finite_) check_activation(x_.data(), size_t(n) * c.dim, l, "attention residual add");

    // ---- feed-forward block: x += W2 . (silu(W1 xn) * W3 xn) ------------------------------------
    be.rmsnorm(x_.data(), w.ffn_norm.data(), xb_.data(), n, c.dim, c.norm_eps);
    if (check_finite_) check_activation(xb_.data(), size_t(n) * c.dim, l, "ffn_norm");
    {
      const Matrix* gate_up[] = {&w.w_gate, &w.w_up};
      float* outputs[] = {gate_.data(), up_.data()};
      be.matmul_many(gate_up, 2, xb_.data(), outputs, n);
    }
    if (check_finite_) check_activation(gate_.data(), size_t(n) * c.hidden_dim, l, "ffn_gate");
    if (check_finite_) check_activation(up_.data(), size_t(n) * c.hidden_dim, l, "ffn_up");
    be.silu_mul(gate_.data(), up_.data(), size_t(n) * c.hidden_dim);
    if (check_finite_) check_activation(gate_.data(), size_t(n) * c.hidden_dim, l, "silu(gate) * up");
    be.matmul(w.w_down, gate_.data(), xb2_.data(), n);
    if (check_finite_) check_activation(xb2_.data(), size_t(n) * c.dim, l, "ffn_down");
    be.add(x_.data(), xb2_.data(), size_t(n) * c.dim);
    if (check_finite_) check_activation(x_.data(), size_t(n) * c.dim, l, "ffn residual add");

    // KV traffic: the n new rows are written; token t reads positions [0, positions[t]] once per kv
    // head (the query heads of a group share them in cache).
    const uint64_t row_bytes = cache.row_bytes();  // one position's K (or V) row of a layer, scales included
    stats.kv_bytes += 2 * row_bytes * uint64_t(n);
    for (int t = 0; t < n; ++t) stats.kv_bytes += 2 * row_bytes * uint64_t(batch.positions[t] + 1);
  }

  // ---- classifier: only the rows whose logits are wanted --------------------------------------------
  // The rows are gathered (runs of consecutive rows in one copy) so the classifier reads its weights once
  // for all of them; every op here is per row, so a row's logits do not depend on which others are there.
  const int rows = int(batch.logits_rows.size());
  if (rows > 0) {
    for (int i = 0; i < rows;) {
      int end = i + 1;
      while (end < rows && batch.logits_rows[end] == batch.logits_rows[end - 1] + 1) ++end;
      be.copy(xb2_.data() + size_t(i) * c.dim, x_.data() + size_t(batch.logits_rows[i]) * c.dim,
              size_t(end - i) * c.dim);
      i = end;
    }
    be.rmsnorm(xb2_.data(), weights_.final_norm(), xb_.data(), rows, c.dim, c.norm_eps);
    if (check_finite_) check_activation(xb_.data(), size_t(rows) * c.dim, -1, "output_norm");
    be.matmul(weights_.classifier(), xb_.data(), logits_.data(), rows);
    if (check_finite_) check_activation(logits_.data(), size_t(rows) * c.vocab_size, -1, "classifier (logits)");
    be.download(logits_out, logits_.data(), size_t(rows) * size_t(c.vocab_size) * sizeof(float));
  }

  stats.weight_bytes = weights_.bytes_per_forward(n);
  for (int l = layers_run(); l < c.n_layers; ++l) {  // early exit: the layers skipped are not read
    const LayerWeights& w = weights_.layers()[l];
    for (const Matrix* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) stats.weight_bytes -= m->n_bytes();
    stats.weight_bytes -= w.attn_norm.bytes() + w.ffn_norm.bytes();
  }
  return stats;
}

void Transformer::set_layer_limit(int layers) {
  if (layers < 0 || layers > config().n_layers)
    fail("Transformer: layer limit {} is outside [0, {}] (0 = every layer)", layers, config().n_layers);
  layer_limit_ = layers;
}

// ---- the one-sequence case (ch05) ----------------------------------------------------------------------
ForwardStats Transformer::forward(std::span<const int> tokens, int start_pos, KVCache& cache, float* logits_out,
                                  float* all_logits) {
  const int n = int(tokens.size());
  if (n <= 0) fail("forward: no tokens");
  if (n > max_tokens_) fail("forward: {} tokens in one pass, but buffers were sized for {}", n, max_tokens_);
  if (start_pos < 0 || int64_t(start_pos) + n > cache.max_seq())
    fail("forward: positions [{}, {}) do not fit the KV cache of {} positions", start_pos, int64_t(start_pos) + n,
         cache.max_seq());
  // The cache's pool is one block of max_seq positions, owned by this sequence: slot of position p = p.
  Batch batch(cache.block_size());
  const int block = 0;
  batch.add_sequence(tokens, start_pos, std::span<const int>(&block, 1),
                     all_logits != nullptr ? LogitsFor::all : LogitsFor::last);
  if (all_logits == nullptr) return forward(batch, cache, logits_out);
  const ForwardStats stats = forward(batch, cache, all_logits);
  const size_t vocab = size_t(config().vocab_size);
  std::copy_n(all_logits + size_t(n - 1) * vocab, vocab, logits_out);
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
