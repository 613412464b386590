// test_formats_logits.cpp: one set of synthetic weights, every file format, the same logits.
//
// GGUF stores Q/K rows in the Interleaved RoPE order, HF safetensors in the HalfSplit order, and
// llama2.c in the Interleaved order with its own tensor layout. Loading each file and running the
// forward pass must give the same logits: this proves the loaders' name mapping, the Q/K
// permutation and the matching RoPE layout together.
#include "infer/core/error.h"
#include "infer/model/kv_cache.h"
#include "infer/formats/synthetic.h"
#include "infer/model/transformer.h"
#include "test_util.h"

#include <cmath>

using namespace infer;

namespace {

// All-position logits of `tokens` for the model in `file`, fp32 weights on the CPU.
std::vector<float> logits_of(const ModelFile& file, const std::vector<int>& tokens) {
  auto backend = make_cpu_backend(2);
  Weights weights(file, WeightFormat::F32, *backend);
  Transformer transformer(weights, *backend, int(tokens.size()));
  KVCache cache(*backend, file.config, int(tokens.size()));
  std::vector<float> last(file.config.vocab_size), all(tokens.size() * file.config.vocab_size);
  transformer.forward(tokens, 0, cache, last.data(), all.data());
  return all;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  return worst;
}

double max_abs(const std::vector<float>& a) {
  double m = 0.0;
  for (float v : a) m = std::max(m, std::abs(double(v)));
  return m;
}

}  // namespace

TEST_CASE("formats: the same synthetic weights as GGUF, safetensors and llama2.c give the same logits") {
  for (const char* preset : {"tiny", "stories260k"}) {
    CAPTURE(preset);
    const auto dir = test::scratch_dir(std::string("formats_logits_") + preset);
    SyntheticModel model = make_synthetic_model(synthetic_preset(preset), /*seed=*/11);
    write_gguf((dir / "model.gguf").string(), model, DType::F32);
    write_safetensors((dir / "hf").string(), model, DType::F32);
    write_llama2c((dir / "model_v0.bin").string(), model, 0);
    write_llama2c((dir / "model_v1.bin").string(), model, 1);

    const std::vector<int> tokens = {1, 17, 200, 45, 3, 99, 250, 8, 64, 120, 33, 7};
    const ModelFile gguf = load_model_file((dir / "model.gguf").string());
    const ModelFile safetensors = load_model_file((dir / "hf").string());
    CHECK(gguf.config.rope_layout == RopeLayout::Interleaved);
    CHECK(safetensors.config.rope_layout == RopeLayout::HalfSplit);

    const std::vector<float> reference = logits_of(gguf, tokens);
    REQUIRE(max_abs(reference) > 0.1);  // a model whose logits are all ~0 would prove nothing
    // The files hold bit-identical fp32 values; only the order of Q/K dimensions differs, which
    // changes the summation order of the q.k dot products: ~1e-7 relative. 1e-5 of the largest
    // logit catches any permutation or layout bug (those give errors of order 1).
    const double bound = 1e-5 * max_abs(reference);
    CHECK(max_abs_difference(reference, logits_of(safetensors, tokens)) <= bound);
    CHECK(max_abs_difference(reference, logits_of(load_model_file((dir / "model_v0.bin").string()), tokens)) <= bound);
    CHECK(max_abs_difference(reference, logits_of(load_model_file((dir / "model_v1.bin").string()), tokens)) <= bound);
  }
}

TEST_CASE("formats: safetensors with the RoPE layout forced wrong gives different logits") {
  // The converse: if the loader forgot that HF rows are HalfSplit, the test above would fail.
  const auto dir = test::scratch_dir("formats_logits_wrong_layout");
  SyntheticModel model = make_synthetic_model(synthetic_preset("tiny"), /*seed=*/12);
  write_gguf((dir / "model.gguf").string(), model, DType::F32);
  write_safetensors((dir / "hf").string(), model, DType::F32);
  const std::vector<int> tokens = {5, 6, 7, 8, 9, 10};
  ModelFile wrong = load_model_file((dir / "hf").string());
  wrong.config.rope_layout = RopeLayout::Interleaved;
  const std::vector<float> reference = logits_of(load_model_file((dir / "model.gguf").string()), tokens);
  CHECK(max_abs_difference(reference, logits_of(wrong, tokens)) > 1e-2 * max_abs(reference));
}
