// test_gguf.cpp: synthetic models through write_gguf -> load_gguf, and GGUF metadata round-trips.
#include "format_test_helpers.h"
#include "infer/core/error.h"
#include "infer/formats/gguf.h"
#include "infer/formats/model_file.h"
#include "infer/formats/synthetic.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

using namespace infer;

namespace {

void check_same_config(const ModelConfig& loaded, const ModelConfig& source) {
  CHECK(loaded.architecture == "llama");
  CHECK(loaded.dim == source.dim);
  CHECK(loaded.n_layers == source.n_layers);
  CHECK(loaded.n_heads == source.n_heads);
  CHECK(loaded.n_kv_heads == source.n_kv_heads);
  CHECK(loaded.head_dim == source.head_dim);
  CHECK(loaded.hidden_dim == source.hidden_dim);
  CHECK(loaded.vocab_size == source.vocab_size);
  CHECK(loaded.max_seq_len == source.max_seq_len);
  CHECK(loaded.rope_theta == source.rope_theta);  // stored as f32: exact
  CHECK(loaded.norm_eps == source.norm_eps);
  CHECK(loaded.tied_embeddings == source.tied_embeddings);
}

void check_same_tokenizer(const TokenizerData& loaded, const TokenizerData& source) {
  CHECK(loaded.model == source.model);
  CHECK(loaded.pre == source.pre);
  CHECK(loaded.tokens == source.tokens);
  CHECK(loaded.scores == source.scores);
  CHECK(loaded.token_types == source.token_types);
  CHECK(loaded.merges == source.merges);
  CHECK(loaded.bos_id == source.bos_id);
  CHECK(loaded.eos_id == source.eos_id);
  CHECK(loaded.unk_id == source.unk_id);
  CHECK(loaded.add_bos == source.add_bos);
  CHECK(loaded.add_space_prefix == source.add_space_prefix);
  CHECK(loaded.chat_template == source.chat_template);
}

}  // namespace

TEST_CASE("gguf: tiny synthetic model round-trips in every dtype") {
  const auto dir = infer::test::scratch_dir("gguf_roundtrip");
  const SyntheticModel model = make_synthetic_model(synthetic_preset("tiny"), 7);
  for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    CAPTURE(dtype_name(dtype));
    const std::string path = (dir / (std::string(dtype_name(dtype)) + ".gguf")).string();
    write_gguf(path, model, dtype);
    const ModelFile file = load_gguf(path);
    CHECK(file.format == "gguf");
    CHECK(file.config.rope_layout == RopeLayout::Interleaved);
    check_same_config(file.config, model.config);
    REQUIRE(file.tokenizer.has_value());
    check_same_tokenizer(*file.tokenizer, model.tokenizer);

    CHECK(file.tensors.size() == model.tensors.size());
    for (const auto& [name, values] : model.tensors) {
      CAPTURE(name);
      const TensorView& view = file.tensor(name);
      CHECK(view.shape == model.shapes.at(name));
      // 1-D norms stay F32; every tiny matrix has rows of 64 or 96 values, whole blocks of 32.
      const DType expected = view.shape.size() == 1 ? DType::F32 : dtype;
      CHECK(view.dtype == expected);
      infer::test::check_dequantized(view.dtype, view.data, values, name);
    }
    // Dispatch by magic bytes finds the same loader.
    CHECK(load_model_file(path).format == "gguf");
  }
}

TEST_CASE("gguf: shapes are reversed from ggml order, tied models have no output.weight") {
  const auto dir = infer::test::scratch_dir("gguf_tied");
  // stories260k: tied embeddings, hidden 172 (not a multiple of 32, so ffn_down falls back to F32).
  const ModelConfig config = synthetic_preset("stories260k");
  const std::string path = (dir / "stories.gguf").string();
  write_synthetic_gguf(path, config, 3, DType::Q8_0);
  const ModelFile file = load_gguf(path);
  CHECK(file.config.tied_embeddings);
  CHECK_FALSE(file.has("output.weight"));
  CHECK(file.tensor("token_embd.weight").shape == std::vector<int64_t>{512, 64});  // ggml dims [64, 512]
  CHECK(file.tensor("blk.0.ffn_down.weight").shape == std::vector<int64_t>{64, 172});
  CHECK(file.tensor("blk.0.ffn_down.weight").dtype == DType::F32);
  CHECK(file.tensor("blk.0.ffn_gate.weight").dtype == DType::Q8_0);
  // The streamed writer and make_synthetic_model agree value for value.
  const SyntheticModel model = make_synthetic_model(config, 3);
  const TensorView& down = file.tensor("blk.4.ffn_down.weight");
  CHECK(std::memcmp(down.data, model.tensors.at("blk.4.ffn_down.weight").data(), down.n_bytes) == 0);
  CHECK_THROWS_WITH_AS(file.tensor("blk.9.attn_q.weight"), doctest::Contains("'blk.9.attn_q.weight' not found"), infer::Error);
}

TEST_CASE("gguf: metadata of every value type round-trips") {
  const auto dir = infer::test::scratch_dir("gguf_metadata");
  const std::string path = (dir / "metadata.gguf").string();
  using V = GgufValue;
  std::vector<std::pair<std::string, GgufValue>> expected = {
      {"test.u8", V::make_int(GgufType::U8, 200)},
      {"test.i8", V::make_int(GgufType::I8, -100)},
      {"test.u16", V::make_int(GgufType::U16, 60000)},
      {"test.i16", V::make_int(GgufType::I16, -30000)},
      {"test.u32", V::make_int(GgufType::U32, 4000000000)},
      {"test.i32", V::make_int(GgufType::I32, -2000000000)},
      {"test.f32", V::make_float(GgufType::F32, 0.15625)},  // exact in binary32
      {"test.bool", V::make_int(GgufType::BOOL, 1)},
      {"test.string", V::make_string("héllo\nworld")},
      {"test.empty_string", V::make_string("")},
      {"test.u64", V::make_int(GgufType::U64, int64_t(1) << 60)},
      {"test.i64", V::make_int(GgufType::I64, -(int64_t(1) << 60))},
      {"test.f64", V::make_float(GgufType::F64, 3.141592653589793)},
      {"test.array_i32", V::make_array(GgufType::I32, {V::make_int(GgufType::I32, -1), V::make_int(GgufType::I32, 7)})},
      {"test.array_f32", V::make_array(GgufType::F32, {V::make_float(GgufType::F32, 0.5), V::make_float(GgufType::F32, -2.25)})},
      {"test.array_string", V::make_array(GgufType::STRING, {V::make_string("a b"), V::make_string("")})},
      {"test.array_empty", V::make_array(GgufType::U8, {})},
      {"test.nested", V::make_array(GgufType::ARRAY, {V::make_array(GgufType::STRING, {V::make_string("x")}),
                                                      V::make_array(GgufType::U16, {V::make_int(GgufType::U16, 9)})})},
  };
  GgufWriter writer(path, 64);  // non-default alignment: written as general.alignment
  for (const auto& [key, value] : expected) writer.set(key, value);
  writer.add_tensor("one", {2, 3}, DType::F32);
  writer.write_header();
  const float data[6] = {1, 2, 3, 4, 5, 6};
  writer.write_tensor_data(data, sizeof(data));
  writer.finish();

  const auto mapping = MappedFile::open(path);
  const GgufFile gguf = parse_gguf(*mapping);
  CHECK(gguf.version == 3);
  CHECK(gguf.alignment == 64);
  CHECK(gguf.data_offset % 64 == 0);
  REQUIRE(gguf.tensors.size() == 1);
  CHECK(gguf.tensors[0].dims == std::vector<uint64_t>{3, 2});
  CHECK(std::memcmp(mapping->data() + gguf.data_offset, data, sizeof(data)) == 0);
  for (const auto& [key, value] : expected) {
    CAPTURE(key);
    const GgufValue* got = gguf.find(key);
    REQUIRE(got != nullptr);
    CHECK(*got == value);
  }
  // A file without general.architecture is not a model.
  CHECK_THROWS_WITH_AS(load_gguf(path), doctest::Contains("general.architecture is missing"), infer::Error);
}

TEST_CASE("gguf: version 2 is read, version 1 is refused") {
  const auto dir = infer::test::scratch_dir("gguf_versions");
  const std::string path = (dir / "tiny.gguf").string();
  write_synthetic_gguf(path, synthetic_preset("tiny"), 5, DType::F16);
  auto bytes = infer::test::read_bytes(path);
  bytes[4] = 2;  // v2 has the same layout (64-bit counts)
  infer::test::write_bytes(path, bytes);
  CHECK(load_gguf(path).config.dim == 64);
  bytes[4] = 1;
  infer::test::write_bytes(path, bytes);
  CHECK_THROWS_WITH_AS(load_gguf(path), doctest::Contains("GGUF version 1 is not supported"), infer::Error);
}

TEST_CASE("gguf: real SmolLM2-135M-Instruct Q4_1 loads (when fetched)") {
  INFER_MODEL_FILE(path, infer::test::kSmolLM2);
  const ModelFile file = load_model_file(path.string());
  const ModelConfig& c = file.config;
  CHECK(c.dim == 576);
  CHECK(c.n_layers == 30);
  CHECK(c.n_heads == 9);
  CHECK(c.n_kv_heads == 3);
  CHECK(c.head_dim == 64);
  CHECK(c.hidden_dim == 1536);
  CHECK(c.vocab_size == 49152);
  CHECK(c.max_seq_len == 8192);
  CHECK(c.rope_theta == 100000.0f);
  CHECK(c.tied_embeddings);
  REQUIRE(file.tokenizer.has_value());
  CHECK(file.tokenizer->model == "gpt2");
  CHECK(file.tokenizer->pre == "smollm");
  CHECK(file.tokenizer->tokens.size() == 49152);
  CHECK(file.tokenizer->merges.size() == 48900);
  CHECK(file.tokenizer->tokens[file.tokenizer->eos_id] == "<|im_end|>");
  CHECK(file.tensor("blk.0.attn_q.weight").dtype == DType::Q4_1);
  CHECK(file.tensor("token_embd.weight").dtype == DType::Q8_0);
  // Trained weights dequantize to finite values of modest size.
  const TensorView& q = file.tensor("blk.0.attn_q.weight");
  std::vector<float> row(576);
  dequantize_row(q.dtype, q.data, row.data(), 576);
  float max_abs = 0;
  for (float v : row) max_abs = std::max(max_abs, std::fabs(v));
  CHECK(std::isfinite(max_abs));
  CHECK(max_abs > 0.0f);
  CHECK(max_abs < 100.0f);
}
