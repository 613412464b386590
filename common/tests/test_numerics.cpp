// test_numerics.cpp: NaN/Inf in weights are refused at load naming the tensor; the debug check
// (Transformer::set_check_finite, --check-numerics) names the layer and op where an activation
// first overflows, and stays silent (and changes nothing) on a healthy model.
#include "infer/core/error.h"
#include "infer/model/kv_cache.h"
#include "infer/formats/synthetic.h"
#include "infer/model/transformer.h"
#include "test_util.h"

#include <cmath>
#include <limits>
#include <string>

using namespace infer;

namespace {

SyntheticModel tiny_model() { return make_synthetic_model(synthetic_preset("tiny"), 11); }

// The message Weights throws for `model`, or "" if it loads.
std::string load_error(SyntheticModel model, WeightFormat format) {
  const ModelFile file = model_file_from_synthetic(std::move(model));
  auto backend = make_cpu_backend(1);
  try {
    Weights weights(file, format, *backend);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

// Logits of the prompt's last token, with the debug check on or off.
std::vector<float> run(const ModelFile& file, bool check) {
  auto backend = make_cpu_backend(1);
  Weights weights(file, WeightFormat::F32, *backend);
  const std::vector<int> tokens = {1, 7, 42, 100};
  Transformer transformer(weights, *backend, int(tokens.size()));
  transformer.set_check_finite(check);
  KVCache cache(*backend, file.config, int(tokens.size()));
  std::vector<float> logits(size_t(file.config.vocab_size));
  transformer.forward(tokens, 0, cache, logits.data());
  return logits;
}

}  // namespace

TEST_CASE("weights: NaN and Inf are refused at load, naming the tensor, the count and the first position") {
  SyntheticModel model = tiny_model();
  const int64_t cols = model.shapes.at("blk.1.attn_q.weight")[1];
  std::vector<float>& wq = model.tensors.at("blk.1.attn_q.weight");
  wq[size_t(17 * cols + 5)] = std::numeric_limits<float>::quiet_NaN();
  wq[size_t(30 * cols + 2)] = -std::numeric_limits<float>::infinity();
  for (WeightFormat format : {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16}) {
    CAPTURE(weight_format_name(format));
    const std::string message = load_error(model, format);
    CHECK(message.find("blk.1.attn_q.weight: 2 non-finite") == 0);
    CHECK(message.find("values (first at row 17, col 5)") != std::string::npos);
  }
}

TEST_CASE("weights: a NaN in a norm vector is refused naming it") {
  SyntheticModel model = tiny_model();
  model.tensors.at("blk.0.ffn_norm.weight")[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(load_error(model, WeightFormat::F32) == "blk.0.ffn_norm.weight: 1 non-finite values (first at index 3)");
}

TEST_CASE("weights: a value too large for f16 is refused for f16 storage, accepted for f32 and bf16") {
  SyntheticModel model = tiny_model();
  model.tensors.at("blk.0.ffn_down.weight")[9] = 1e6f;  // > 65504, the largest finite f16
  CHECK(load_error(model, WeightFormat::F16).find("blk.0.ffn_down.weight: 1 non-finite or beyond-f16") == 0);
  CHECK(load_error(model, WeightFormat::F32).empty());
  CHECK(load_error(model, WeightFormat::BF16).empty());
}

TEST_CASE("check_finite: silent on a healthy model, and the logits are unchanged") {
  const ModelFile file = model_file_from_synthetic(tiny_model());
  const std::vector<float> plain = run(file, false);
  std::vector<float> checked;
  CHECK_NOTHROW(checked = run(file, true));
  CHECK(checked == plain);  // the check only reads: bit-identical logits
  for (float x : plain) REQUIRE(std::isfinite(x));
}

TEST_CASE("check_finite: an activation overflowed by a huge norm weight is caught naming the layer and op") {
  // ffn_norm of layer 1 set to 1e30: the normalised input, gate and up are ~1e30 (finite, FLT_MAX
  // is 3.4e38), but silu(gate) * up multiplies two of them (~1e60): the first non-finite activation
  // appears in layer 1 after silu(gate) * up, and every earlier op is clean.
  SyntheticModel model = tiny_model();
  for (float& w : model.tensors.at("blk.1.ffn_norm.weight")) w = 1e30f;
  const ModelFile file = model_file_from_synthetic(std::move(model));

  // Off by default: the forward pass runs through and the overflow reaches the logits silently.
  std::vector<float> logits;
  REQUIRE_NOTHROW(logits = run(file, false));
  bool all_finite = true;
  for (float x : logits) all_finite = all_finite && std::isfinite(x);
  CHECK_FALSE(all_finite);

  try {
    run(file, true);
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CHECK(message.find("layer 1, after silu(gate) * up: ") != std::string::npos);
    CHECK(message.find("non-finite values") != std::string::npos);
  }
}
