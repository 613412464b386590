// test_synthetic.cpp: presets, deterministic weights, the byte-level vocabulary and the llama2.c
// layouts of the synthetic-model writer.
#include "format_test_helpers.h"
#include "infer/core/error.h"
#include "infer/formats/synthetic.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

using namespace infer;

TEST_CASE("synthetic: presets have the real models' shapes") {
  for (const char* name : {"tiny", "stories260k", "smollm2-135m", "tinyllama-1.1b", "llama3-8b"}) {
    CAPTURE(name);
    CHECK_NOTHROW(synthetic_preset(name).validate(name));
  }
  // Parameter counts published for the real models.
  CHECK(synthetic_preset("smollm2-135m").n_params() == 134515008);
  CHECK(synthetic_preset("tinyllama-1.1b").n_params() == 1100048384);
  CHECK(synthetic_preset("llama3-8b").n_params() == 8030261248);
  CHECK_THROWS_WITH_AS(synthetic_preset("gpt5"), doctest::Contains("unknown synthetic preset 'gpt5'"), infer::Error);
}

TEST_CASE("synthetic: weights are deterministic, per tensor, and scaled by fan-in") {
  const ModelConfig config = synthetic_preset("tiny");
  const SyntheticModel a = make_synthetic_model(config, 5);
  const SyntheticModel b = make_synthetic_model(config, 5);
  const SyntheticModel c = make_synthetic_model(config, 6);
  CHECK(a.tensors == b.tensors);
  CHECK(a.tensors.at("blk.0.attn_q.weight") != c.tensors.at("blk.0.attn_q.weight"));
  CHECK(a.tensors.at("blk.0.attn_q.weight") != a.tensors.at("blk.1.attn_q.weight"));  // own stream per tensor
  CHECK(synthetic_tensor(config, 5, "blk.1.ffn_down.weight") == a.tensors.at("blk.1.ffn_down.weight"));

  for (const auto& [name, values] : a.tensors) {
    CAPTURE(name);
    const auto& shape = a.shapes.at(name);
    double sum = 0, sum_squares = 0;
    for (float v : values) {
      sum += v;
      sum_squares += double(v) * v;
    }
    const double n = double(values.size());
    const double mean = sum / n, std_dev = std::sqrt(sum_squares / n - mean * mean);
    if (shape.size() == 1) {
      // Norm gains: 1 + uniform(-0.1, 0.1).
      for (float v : values) CHECK((v >= 0.9f && v <= 1.1f));
      CHECK(std::fabs(mean - 1.0) < 0.02);  // 64 samples of std 0.058: mean within ~3 sigma
    } else {
      // std 1/sqrt(fan_in); with >= 4096 samples the estimate is within 5% (its relative error ~1/sqrt(2n)).
      const double expected = 1.0 / std::sqrt(double(shape.back()));
      CHECK(std::fabs(std_dev / expected - 1.0) < 0.05);
      CHECK(std::fabs(mean) < 0.1 * expected);
    }
  }
}

TEST_CASE("synthetic: byte-level vocabulary") {
  const TokenizerData data = synthetic_tokenizer(300);
  CHECK(data.model == "gpt2");
  CHECK(data.tokens.size() == 300);
  CHECK(data.token_types.size() == 300);
  const std::set<std::string> unique(data.tokens.begin(), data.tokens.end());
  CHECK(unique.size() == 300);
  CHECK(data.tokens[3 + ' '] == "\xc4\xa0");   // space -> U+0120 'Ġ' (GPT-2 bytes_to_unicode)
  CHECK(data.tokens[3 + 'a'] == "a");          // printable ASCII maps to itself
  CHECK(data.tokens[3 + 0] == "\xc4\x80");     // byte 0 -> U+0100
  CHECK(data.tokens[data.bos_id] == "<|im_start|>");
  CHECK(data.tokens[data.eos_id] == "<|im_end|>");
  CHECK(data.token_types[data.eos_id] == 3);
  // Every merge joins two existing tokens into an existing token.
  for (const std::string& merge : data.merges) {
    const size_t space = merge.find(' ');
    REQUIRE(space != std::string::npos);
    CHECK(unique.count(merge.substr(0, space)) == 1);
    CHECK(unique.count(merge.substr(space + 1)) == 1);
    CHECK(unique.count(merge.substr(0, space) + merge.substr(space + 1)) == 1);
  }
  CHECK_THROWS_WITH_AS(synthetic_tokenizer(260), doctest::Contains("vocab_size 260 is too small"), infer::Error);
}

TEST_CASE("synthetic: llama2.c layouts match the real stories260K files") {
  const auto dir = infer::test::scratch_dir("synthetic_llama2c");
  const ModelConfig config = synthetic_preset("stories260k");
  const std::string v0 = (dir / "v0.bin").string(), v1 = (dir / "v1.bin").string();
  write_synthetic_llama2c(v0, config, 1, 0);
  write_synthetic_llama2c(v1, config, 1, 1);
  // Sizes from SOURCE.txt: 28 + 4 * 264128 (v0, with RoPE tables) and 256 + 4 * 260032 (v1).
  CHECK(std::filesystem::file_size(v0) == 1056540);
  CHECK(std::filesystem::file_size(v1) == 1040384);

  INFER_MODEL_FILE(real_v0_path, "stories260K/stories260K.bin");
  INFER_MODEL_FILE(real_v1_path, "stories260K/stories260K_v1.bin");
  const auto ours_v0 = infer::test::read_bytes(v0), real_v0 = infer::test::read_bytes(real_v0_path);
  const auto ours_v1 = infer::test::read_bytes(v1), real_v1 = infer::test::read_bytes(real_v1_path);
  CHECK(std::memcmp(ours_v0.data(), real_v0.data(), 28) == 0);   // same 7-int header
  CHECK(std::memcmp(ours_v1.data(), real_v1.data(), 256) == 0);  // same magic, version, config, flag, padding
  // The RoPE tables sit just before the end (tied: no wcls): 2 x (seq 512, head_dim/2 4) floats.
  const size_t table_floats = 2 * 512 * 4, table_begin = ours_v0.size() - 4 * table_floats;
  std::vector<float> ours(table_floats), real(table_floats);
  std::memcpy(ours.data(), ours_v0.data() + table_begin, 4 * table_floats);
  std::memcpy(real.data(), real_v0.data() + table_begin, 4 * table_floats);
  float worst = 0;
  for (size_t i = 0; i < table_floats; ++i) worst = std::max(worst, std::fabs(ours[i] - real[i]));
  // The exporter computed the angles p * freq in float32 (error up to ~511 * 2^-24 rad); ours in double.
  CHECK(worst < 1e-4f);
}
