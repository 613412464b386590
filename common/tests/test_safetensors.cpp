// test_safetensors.cpp: synthetic models through write_safetensors -> load_safetensors, the Q/K row
// permutation between the two RoPE layouts, shards, and malformed headers.
#include "format_test_helpers.h"
#include "infer/core/error.h"
#include "infer/formats/model_file.h"
#include "infer/formats/safetensors.h"
#include "infer/formats/synthetic.h"
#include "test_util.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace infer;
namespace fs = std::filesystem;

namespace {

struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// A minimal safetensors writer for hand-built files. The header is not padded, so data offsets can
// be misaligned (the loader must cope).
void write_raw_safetensors(const fs::path& path, const std::vector<RawTensor>& tensors) {
  nlohmann::ordered_json header;
  uint64_t offset = 0;
  for (const auto& tensor : tensors) {
    header[tensor.name] = {{"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + tensor.bytes.size()}}};
    offset += tensor.bytes.size();
  }
  const std::string text = header.dump();
  std::vector<uint8_t> file(8);
  const uint64_t length = text.size();
  std::memcpy(file.data(), &length, 8);
  file.insert(file.end(), text.begin(), text.end());
  for (const auto& tensor : tensors) file.insert(file.end(), tensor.bytes.begin(), tensor.bytes.end());
  infer::test::write_bytes(path, file);
}

// RoPE on one head as model_config.h defines the two layouts; frequency of pair i is theta^(-2i/d).
void rope_interleaved(std::vector<double>& x, int position, double theta) {
  const int d = int(x.size());
  for (int i = 0; i < d / 2; ++i) {
    const double angle = position * std::pow(theta, -2.0 * i / d);
    const double a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * std::cos(angle) - b * std::sin(angle);
    x[2 * i + 1] = a * std::sin(angle) + b * std::cos(angle);
  }
}
void rope_half_split(std::vector<double>& x, int position, double theta) {
  const int d = int(x.size());
  for (int i = 0; i < d / 2; ++i) {
    const double angle = position * std::pow(theta, -2.0 * i / d);
    const double a = x[i], b = x[i + d / 2];
    x[i] = a * std::cos(angle) - b * std::sin(angle);
    x[i + d / 2] = a * std::sin(angle) + b * std::cos(angle);
  }
}

bool is_qk(const std::string& name) { return name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight"); }

}  // namespace

TEST_CASE("safetensors: Q/K row permutation on a tensor with known values") {
  // 2 heads of head_dim 4, one column; each row holds its own Interleaved row index.
  const float rows[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  const auto half_split = permute_rows_interleaved_to_half_split(rows, 8, sizeof(float), 4);
  float permuted[8];
  std::memcpy(permuted, half_split.data(), sizeof(permuted));
  // Per head: HalfSplit rows (0, 1, 2, 3) = Interleaved rows (0, 2, 1, 3).
  const float expected[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int i = 0; i < 8; ++i) CHECK(permuted[i] == expected[i]);
  const auto back = permute_rows_half_split_to_interleaved(half_split.data(), 8, sizeof(float), 4);
  CHECK(std::memcmp(back.data(), rows, sizeof(rows)) == 0);
  CHECK_THROWS_AS(permute_rows_interleaved_to_half_split(rows, 6, sizeof(float), 4), infer::Error);  // 6 rows: not whole heads
}

TEST_CASE("safetensors: the permutation turns Interleaved RoPE into HalfSplit RoPE") {
  // q = W x: rotating the output of the Interleaved W with Interleaved RoPE must give the same pairs
  // as rotating the output of the permuted W with HalfSplit RoPE, then un-permuting.
  const int head_dim = 16;
  const auto values = infer::test::random_floats(head_dim, 21);
  for (int position : {0, 1, 7, 100}) {
    std::vector<double> interleaved(values.begin(), values.end());
    const auto permuted_bytes = permute_rows_interleaved_to_half_split(values.data(), head_dim, sizeof(float), head_dim);
    std::vector<float> permuted(head_dim);
    std::memcpy(permuted.data(), permuted_bytes.data(), permuted_bytes.size());
    std::vector<double> half_split(permuted.begin(), permuted.end());
    rope_interleaved(interleaved, position, 10000.0);
    rope_half_split(half_split, position, 10000.0);
    for (int j = 0; j < head_dim / 2; ++j) {
      // Both computed in double from the same floats: agreement to 1e-12 (rounding only).
      CHECK(std::fabs(half_split[j] - interleaved[2 * j]) < 1e-12);
      CHECK(std::fabs(half_split[j + head_dim / 2] - interleaved[2 * j + 1]) < 1e-12);
    }
  }
}

TEST_CASE("safetensors: tiny synthetic model round-trips in F32, F16, BF16") {
  const SyntheticModel model = make_synthetic_model(synthetic_preset("tiny"), 9);
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    CAPTURE(dtype_name(dtype));
    const auto dir = infer::test::scratch_dir(std::string("safetensors_roundtrip_") + std::string(dtype_name(dtype)));
    write_safetensors(dir.string(), model, dtype);
    for (const std::string& path : {dir.string(), (dir / "model.safetensors").string()}) {
      CAPTURE(path);
      const ModelFile file = load_model_file(path);  // directory or file: found by magic / kind
      CHECK(file.format == "safetensors");
      CHECK(file.config.rope_layout == RopeLayout::HalfSplit);
      CHECK(file.config.dim == 64);
      CHECK(file.config.n_kv_heads == 2);
      CHECK(file.config.head_dim == 16);
      CHECK(file.config.hidden_dim == 96);
      CHECK(file.config.vocab_size == 300);
      CHECK(file.config.max_seq_len == 256);
      CHECK(file.config.rope_theta == model.config.rope_theta);
      CHECK(file.config.norm_eps == model.config.norm_eps);
      CHECK_FALSE(file.config.tied_embeddings);
      CHECK_FALSE(file.tokenizer.has_value());
      CHECK(file.tensors.size() == model.tensors.size());
      for (const auto& [name, values] : model.tensors) {
        CAPTURE(name);
        const TensorView& view = file.tensor(name);
        CHECK(view.shape == model.shapes.at(name));
        CHECK(view.dtype == dtype);
        // Q/K are stored in HF's HalfSplit order: bring them back to compare with the source.
        std::vector<uint8_t> restored;
        const void* data = view.data;
        if (is_qk(name)) {
          restored = permute_rows_half_split_to_interleaved(view.data, view.shape[0],
                                                            int64_t(dtype_row_bytes(dtype, view.shape[1])), 16);
          data = restored.data();
        }
        infer::test::check_dequantized(dtype, data, values, name);  // F32: bound 0, exact
      }
    }
  }
}

TEST_CASE("safetensors: tied embeddings, shards with and without index, misaligned data") {
  const auto dir = infer::test::scratch_dir("safetensors_shards");
  const ModelConfig config = synthetic_preset("stories260k");  // tied: no lm_head written
  write_synthetic_safetensors((dir / "single").string(), config, 4, DType::F32);
  const ModelFile single = load_safetensors((dir / "single").string());
  CHECK(single.config.tied_embeddings);
  CHECK_FALSE(single.has("output.weight"));

  // Re-split the same tensors into two shards by hand (unpadded headers: data misaligned).
  std::vector<RawTensor> first, second;
  size_t index = 0;
  for (const auto& [name, view] : single.tensors) {
    RawTensor raw{hf_name_from_canonical(name), "F32", view.shape,
                  std::vector<uint8_t>(static_cast<const uint8_t*>(view.data), static_cast<const uint8_t*>(view.data) + view.n_bytes)};
    (index++ % 2 == 0 ? first : second).push_back(std::move(raw));
  }
  first.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {4}, std::vector<uint8_t>(16, 0)});  // ignored
  for (const bool with_index : {false, true}) {
    CAPTURE(with_index);
    const fs::path sharded = dir / (with_index ? "sharded_index" : "sharded_glob");
    fs::create_directories(sharded);
    fs::copy_file(dir / "single" / "config.json", sharded / "config.json");
    write_raw_safetensors(sharded / "model-00001-of-00002.safetensors", first);
    write_raw_safetensors(sharded / "model-00002-of-00002.safetensors", second);
    if (with_index) {
      nlohmann::json weight_map;
      for (const auto& t : first) weight_map[t.name] = "model-00001-of-00002.safetensors";
      for (const auto& t : second) weight_map[t.name] = "model-00002-of-00002.safetensors";
      std::ofstream(sharded / "model.safetensors.index.json") << nlohmann::json{{"weight_map", weight_map}}.dump();
    }
    const ModelFile file = load_model_file(sharded.string());
    CHECK(file.tensors.size() == single.tensors.size());
    for (const auto& [name, view] : single.tensors) {
      CAPTURE(name);
      REQUIRE(file.has(name));
      CHECK(reinterpret_cast<uintptr_t>(file.tensor(name).data) % alignof(float) == 0);  // copied when misaligned
      CHECK(std::memcmp(file.tensor(name).data, view.data, view.n_bytes) == 0);
    }
  }
}

TEST_CASE("safetensors: malformed files name the file, tensor and problem") {
  const auto dir = infer::test::scratch_dir("safetensors_errors");
  write_synthetic_safetensors(dir.string(), synthetic_preset("tiny"), 1, DType::F32);
  const fs::path config_path = dir / "config.json";
  const std::string good_config = [&] {
    std::ifstream in(config_path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();

  SUBCASE("unsupported dtype") {
    write_raw_safetensors(dir / "model.safetensors", {{"model.embed_tokens.weight", "I64", {2}, std::vector<uint8_t>(16, 1)}});
    CHECK_THROWS_WITH_AS(load_safetensors(dir.string()),
                         doctest::Contains("tensor 'model.embed_tokens.weight' has unsupported dtype 'I64'"), infer::Error);
  }
  SUBCASE("data_offsets inconsistent with the shape") {
    write_raw_safetensors(dir / "model.safetensors", {{"model.norm.weight", "F32", {5}, std::vector<uint8_t>(16, 1)}});
    CHECK_THROWS_WITH_AS(load_safetensors(dir.string()), doctest::Contains("span 16 bytes but its shape and dtype need 20"), infer::Error);
  }
  SUBCASE("unsupported architecture") {
    auto config = nlohmann::json::parse(good_config);
    config["model_type"] = "gpt2";
    std::ofstream(config_path) << config.dump();
    CHECK_THROWS_WITH_AS(load_safetensors(dir.string()), doctest::Contains("unsupported architecture 'gpt2'"), infer::Error);
  }
  SUBCASE("wrong type in config.json") {
    auto config = nlohmann::json::parse(good_config);
    config["hidden_size"] = "sixty-four";
    std::ofstream(config_path) << config.dump();
    CHECK_THROWS_WITH_AS(load_safetensors(dir.string()), doctest::Contains("'hidden_size' must be an integer"), infer::Error);
  }
  SUBCASE("missing config.json") {
    fs::remove(config_path);
    CHECK_THROWS_WITH_AS(load_safetensors(dir.string()), doctest::Contains("config.json not found"), infer::Error);
  }
}
