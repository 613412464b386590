// reference_model.h: random in-memory Llama models and a plain float64 forward pass over them.
//
// make_random_model builds a ModelFile of f32 tensors (GGUF names) from seeded uniform values and keeps
// the same values in double; reference_logits runs the textbook forward pass on them position by
// position in double (no cache, no batching, no threads). Used by test_forward.cpp and by the ch05 lab
// tests, which compare the engine's logits with it.
#pragma once

#include "infer/core/model_config.h"
#include "infer/formats/model_file.h"
#include "test_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace infer::test {

// ---- an in-memory model ----------------------------------------------------------------------------
struct RandomModel {
  ModelFile file;
  std::map<std::string, std::vector<double>> weights;  // the same values, in double, for the reference
};

inline RandomModel make_random_model(const ModelConfig& config, uint64_t seed) {
  RandomModel model;
  model.file.path = "<random model>";
  model.file.format = "memory";
  model.file.config = config;
  uint64_t tensor_seed = seed;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float center, float spread) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    // Uniform in center +- spread; matrices use spread ~ 1/sqrt(fan_in) so activations stay O(1).
    std::vector<float> values = random_floats(size_t(n), ++tensor_seed, center - spread, center + spread);
    auto& bytes = model.file.owned.emplace_back(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    TensorView view{name, DType::F32, shape, bytes.data(), bytes.size()};
    model.file.tensors[name] = view;
    model.weights[name] = std::vector<double>(values.begin(), values.end());
  };
  const int64_t dim = config.dim, hidden = config.hidden_dim, vocab = config.vocab_size;
  const float matrix_spread = 1.7f / std::sqrt(float(dim));
  add("token_embd.weight", {vocab, dim}, 0.0f, 1.0f);
  for (int i = 0; i < config.n_layers; ++i) {
    auto name = [&](const char* what) { return fmt::format("blk.{}.{}.weight", i, what); };
    add(name("attn_norm"), {dim}, 1.0f, 0.2f);
    add(name("attn_q"), {config.q_dim(), dim}, 0.0f, matrix_spread);
    add(name("attn_k"), {config.kv_dim(), dim}, 0.0f, matrix_spread);
    add(name("attn_v"), {config.kv_dim(), dim}, 0.0f, matrix_spread);
    add(name("attn_output"), {dim, config.q_dim()}, 0.0f, 1.7f / std::sqrt(float(config.q_dim())));
    add(name("ffn_norm"), {dim}, 1.0f, 0.2f);
    add(name("ffn_gate"), {hidden, dim}, 0.0f, matrix_spread);
    add(name("ffn_up"), {hidden, dim}, 0.0f, matrix_spread);
    add(name("ffn_down"), {dim, hidden}, 0.0f, 1.7f / std::sqrt(float(hidden)));
  }
  add("output_norm.weight", {dim}, 1.0f, 0.2f);
  if (!config.tied_embeddings) add("output.weight", {vocab, dim}, 0.0f, matrix_spread);
  return model;
}

// ---- the float64 reference --------------------------------------------------------------------------
using Vec = std::vector<double>;

inline Vec ref_matvec(const Vec& w, const Vec& x, int rows, int cols) {
  Vec y(rows, 0.0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) y[r] += w[size_t(r) * cols + c] * x[c];
  return y;
}

inline Vec ref_rmsnorm(const Vec& x, const Vec& weight, double eps) {
  double ss = 0.0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * weight[i];
  return out;
}

inline void ref_rope(Vec& x, int n_heads, int head_dim, int pos, double theta, RopeLayout layout) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < half; ++i) {
      const double angle = pos * std::pow(theta, -2.0 * i / head_dim);
      const int a = layout == RopeLayout::Interleaved ? 2 * i : i;
      const int b = layout == RopeLayout::Interleaved ? 2 * i + 1 : i + half;
      double& xa = x[size_t(h) * head_dim + a];
      double& xb = x[size_t(h) * head_dim + b];
      const double a0 = xa, b0 = xb;
      xa = a0 * std::cos(angle) - b0 * std::sin(angle);
      xb = a0 * std::sin(angle) + b0 * std::cos(angle);
    }
  }
}

// Logits of every position for the token sequence, computed position by position in double.
inline std::vector<Vec> reference_logits(const RandomModel& model, const std::vector<int>& tokens) {
  const ModelConfig& c = model.file.config;
  auto W = [&](const std::string& name) -> const Vec& { return model.weights.at(name); };
  const int group = c.n_heads / c.n_kv_heads;
  std::vector<std::vector<Vec>> keys(c.n_layers), values(c.n_layers);  // [layer][pos] (kv_dim)
  std::vector<Vec> all;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    const Vec& table = W("token_embd.weight");
    Vec x(table.begin() + size_t(tokens[pos]) * c.dim, table.begin() + size_t(tokens[pos] + 1) * c.dim);
    for (int l = 0; l < c.n_layers; ++l) {
      auto name = [&](const char* what) { return fmt::format("blk.{}.{}.weight", l, what); };
      Vec xn = ref_rmsnorm(x, W(name("attn_norm")), c.norm_eps);
      Vec q = ref_matvec(W(name("attn_q")), xn, c.q_dim(), c.dim);
      Vec k = ref_matvec(W(name("attn_k")), xn, c.kv_dim(), c.dim);
      Vec v = ref_matvec(W(name("attn_v")), xn, c.kv_dim(), c.dim);
      ref_rope(q, c.n_heads, c.head_dim, int(pos), c.rope_theta, c.rope_layout);
      ref_rope(k, c.n_kv_heads, c.head_dim, int(pos), c.rope_theta, c.rope_layout);
      keys[l].push_back(k);
      values[l].push_back(v);
      Vec att(c.q_dim(), 0.0);
      for (int h = 0; h < c.n_heads; ++h) {
        const int g = h / group;
        Vec scores(pos + 1);
        double max_score = -1e300;
        for (size_t p = 0; p <= pos; ++p) {
          double s = 0.0;
          for (int i = 0; i < c.head_dim; ++i) s += q[size_t(h) * c.head_dim + i] * keys[l][p][size_t(g) * c.head_dim + i];
          scores[p] = s / std::sqrt(double(c.head_dim));
          max_score = std::max(max_score, scores[p]);
        }
        double sum = 0.0;
        for (double& s : scores) sum += (s = std::exp(s - max_score));
        for (size_t p = 0; p <= pos; ++p)
          for (int i = 0; i < c.head_dim; ++i)
            att[size_t(h) * c.head_dim + i] += scores[p] / sum * values[l][p][size_t(g) * c.head_dim + i];
      }
      Vec o = ref_matvec(W(name("attn_output")), att, c.dim, c.q_dim());
      for (int i = 0; i < c.dim; ++i) x[i] += o[i];
      xn = ref_rmsnorm(x, W(name("ffn_norm")), c.norm_eps);
      Vec gate = ref_matvec(W(name("ffn_gate")), xn, c.hidden_dim, c.dim);
      Vec up = ref_matvec(W(name("ffn_up")), xn, c.hidden_dim, c.dim);
      for (int i = 0; i < c.hidden_dim; ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      Vec down = ref_matvec(W(name("ffn_down")), gate, c.dim, c.hidden_dim);
      for (int i = 0; i < c.dim; ++i) x[i] += down[i];
    }
    Vec xn = ref_rmsnorm(x, W("output_norm.weight"), c.norm_eps);
    all.push_back(ref_matvec(W(c.tied_embeddings ? "token_embd.weight" : "output.weight"), xn, c.vocab_size, c.dim));
  }
  return all;
}

// rope_theta defaults to SmolLM2's 100000, not the original 10000, so that a RoPE that ignores the model's
// theta (hard-coding 10000) fails every comparison with the reference.
inline ModelConfig shape(int dim, int n_layers, int n_heads, int n_kv_heads, int head_dim, int hidden_dim, int vocab,
                  RopeLayout layout, bool tied, float rope_theta = 100000.0f) {
  ModelConfig c;
  c.dim = dim;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.head_dim = head_dim;
  c.hidden_dim = hidden_dim;
  c.vocab_size = vocab;
  c.max_seq_len = 64;
  c.rope_theta = rope_theta;
  c.rope_layout = layout;
  c.tied_embeddings = tied;
  return c;
}

// Largest |engine - reference| over a row, relative to the row's largest |reference| logit.
inline double max_relative_error(const float* engine, const Vec& reference) {
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(reference[i]));
    max_diff = std::max(max_diff, std::abs(double(engine[i]) - reference[i]));
  }
  return max_diff / max_ref;
}

}  // namespace infer::test
