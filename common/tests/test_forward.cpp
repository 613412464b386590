// test_forward.cpp: the forward pass against a float64 reference written plainly here.
//
// Random models of several shapes (GQA, head_dim not a multiple of 8, hidden_dim odd-sized, both
// RoPE layouts, tied and separate classifier) are built in memory; the engine's fp32 logits must
// match the reference's within a stated bound, all tokens in one pass and token by token.
#include "infer/backend.h"
#include "infer/error.h"
#include "infer/kv_cache.h"
#include "infer/transformer.h"
#include "test_util.h"

#include <cmath>
#include <map>

using namespace infer;

namespace {

// ---- an in-memory model ----------------------------------------------------------------------------
struct RandomModel {
  ModelFile file;
  std::map<std::string, std::vector<double>> weights;  // the same values, in double, for the reference
};

RandomModel make_random_model(const ModelConfig& config, uint64_t seed) {
  RandomModel model;
  model.file.path = "<random model>";
  model.file.format = "memory";
  model.file.config = config;
  uint64_t tensor_seed = seed;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float center, float spread) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    // Uniform in center +- spread; matrices use spread ~ 1/sqrt(fan_in) so activations stay O(1).
    std::vector<float> values = test::random_floats(size_t(n), ++tensor_seed, center - spread, center + spread);
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

Vec ref_matvec(const Vec& w, const Vec& x, int rows, int cols) {
  Vec y(rows, 0.0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) y[r] += w[size_t(r) * cols + c] * x[c];
  return y;
}

Vec ref_rmsnorm(const Vec& x, const Vec& weight, double eps) {
  double ss = 0.0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * weight[i];
  return out;
}

void ref_rope(Vec& x, int n_heads, int head_dim, int pos, double theta, RopeLayout layout) {
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
std::vector<Vec> reference_logits(const RandomModel& model, const std::vector<int>& tokens) {
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

ModelConfig shape(int dim, int n_layers, int n_heads, int n_kv_heads, int head_dim, int hidden_dim, int vocab,
                  RopeLayout layout, bool tied) {
  ModelConfig c;
  c.dim = dim;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.head_dim = head_dim;
  c.hidden_dim = hidden_dim;
  c.vocab_size = vocab;
  c.max_seq_len = 64;
  c.rope_theta = 10000.0f;
  c.rope_layout = layout;
  c.tied_embeddings = tied;
  return c;
}

// Largest |engine - reference| over a row, relative to the row's largest |reference| logit.
double max_relative_error(const float* engine, const Vec& reference) {
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(reference[i]));
    max_diff = std::max(max_diff, std::abs(double(engine[i]) - reference[i]));
  }
  return max_diff / max_ref;
}

}  // namespace

TEST_CASE("forward pass matches a float64 reference on random models of several shapes") {
  const std::vector<ModelConfig> shapes = {
      shape(64, 2, 4, 4, 16, 96, 50, RopeLayout::Interleaved, true),   // plain multi-head attention
      shape(48, 3, 6, 2, 8, 100, 61, RopeLayout::Interleaved, false),  // GQA 3:1, separate classifier
      shape(36, 2, 3, 1, 12, 70, 33, RopeLayout::HalfSplit, true),     // MQA, dims not multiples of 8
      shape(40, 2, 4, 2, 10, 77, 45, RopeLayout::HalfSplit, false),    // head_dim 10, odd hidden_dim
  };
  auto backend = make_cpu_backend(2);
  uint64_t seed = 1000;
  for (const ModelConfig& config : shapes) {
    CAPTURE(config.dim);
    CAPTURE(config.n_kv_heads);
    RandomModel model = make_random_model(config, ++seed);
    Weights weights(model.file, WeightFormat::F32, *backend);
    const std::vector<int> tokens = {1, 7, 3, 30, 12, 0, 29, 5, 17, 2, 31};
    const auto reference = reference_logits(model, tokens);
    const int n = int(tokens.size());

    // All tokens in one pass (the prefill / naive-decoder path: GEMM).
    Transformer transformer(weights, *backend, n);
    KVCache cache(*backend, config, n);
    std::vector<float> last(config.vocab_size), all(size_t(n) * config.vocab_size);
    transformer.forward(tokens, 0, cache, last.data(), all.data());
    // fp32 sums of at most a few hundred terms, 2-3 layers deep: measured <= 7e-7 relative to the
    // largest logit. 1e-5 leaves room for a different summation order, float expf/powf and thread
    // counts, while any indexing or layout bug gives errors of order 1.
    double worst = 0.0;
    for (int t = 0; t < n; ++t) worst = std::max(worst, max_relative_error(all.data() + size_t(t) * config.vocab_size, reference[t]));
    MESSAGE("one pass, dim " << config.dim << ": max relative logit error " << worst);
    CHECK(worst < 1e-5);
    CHECK(max_relative_error(last.data(), reference.back()) < 1e-5);

    // Token by token through the cache (the decode path: GEMV + attention over cached positions).
    KVCache step_cache(*backend, config, n);
    double worst_step = 0.0;
    for (int t = 0; t < n; ++t) {
      transformer.forward(std::span<const int>(&tokens[t], 1), t, step_cache, last.data());
      worst_step = std::max(worst_step, max_relative_error(last.data(), reference[t]));
    }
    MESSAGE("token by token, dim " << config.dim << ": max relative logit error " << worst_step);
    CHECK(worst_step < 1e-5);
  }
}

TEST_CASE("half-precision weights match the reference computed with the same rounded weights") {
  ModelConfig config = shape(64, 2, 8, 4, 8, 96, 70, RopeLayout::Interleaved, false);
  RandomModel model = make_random_model(config, 77);
  // Round the reference's weights exactly as the engine stores them.
  for (auto& [name, values] : model.weights)
    if (model.file.tensor(name).shape.size() == 2)
      for (double& v : values) v = fp16_to_fp32(fp32_to_fp16(float(v)));
  auto backend = make_cpu_backend(2);
  Weights weights(model.file, WeightFormat::F16, *backend);
  const std::vector<int> tokens = {3, 9, 27, 1, 64, 33};
  const auto reference = reference_logits(model, tokens);
  Transformer transformer(weights, *backend, int(tokens.size()));
  KVCache cache(*backend, config, int(tokens.size()));
  std::vector<float> last(config.vocab_size), all(tokens.size() * config.vocab_size);
  transformer.forward(tokens, 0, cache, last.data(), all.data());
  double worst = 0.0;
  for (size_t t = 0; t < tokens.size(); ++t) worst = std::max(worst, max_relative_error(all.data() + t * config.vocab_size, reference[t]));
  MESSAGE("f16 weights: max relative logit error " << worst);
  CHECK(worst < 1e-5);  // same bound as fp32: the weights are identical, only fp32 arithmetic differs
}

TEST_CASE("forward refuses passes that do not fit") {
  ModelConfig config = shape(32, 1, 4, 2, 8, 40, 20, RopeLayout::Interleaved, true);
  RandomModel model = make_random_model(config, 5);
  auto backend = make_cpu_backend(1);
  Weights weights(model.file, WeightFormat::F32, *backend);
  Transformer transformer(weights, *backend, 4);
  KVCache cache(*backend, config, 6);
  std::vector<float> logits(config.vocab_size);
  const std::vector<int> five = {1, 2, 3, 4, 5};
  CHECK_THROWS_AS(transformer.forward(five, 0, cache, logits.data()), Error);  // more than max_tokens
  const std::vector<int> two = {1, 2};
  CHECK_THROWS_AS(transformer.forward(two, 5, cache, logits.data()), Error);   // past the cache
  const std::vector<int> bad = {1, 99};
  CHECK_THROWS_AS(transformer.forward(bad, 0, cache, logits.data()), Error);   // token outside the vocabulary
}
