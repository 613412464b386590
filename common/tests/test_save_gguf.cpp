// test_save_gguf.cpp: --save-gguf writes a GGUF that loads back with the same metadata and exactly
// the tensors Weights would hold; the saved Q8_0 model generates what quantizing at load generates.
#include "golden_util.h"
#include "infer/core/error.h"
#include "infer/engine/generator.h"
#include "infer/formats/gguf.h"
#include "infer/formats/synthetic.h"
#include "infer/model/save_gguf.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cstring>

using namespace infer;

namespace {

GgufFile parse(const std::string& path) {
  auto mapping = MappedFile::open(path);
  return parse_gguf(*mapping);
}

// Every tensor of `saved` holds the bytes Weights::target_dtype(format) gives for `source`'s tensor.
void check_tensors(const ModelFile& source, const ModelFile& saved, WeightFormat format) {
  REQUIRE(saved.tensors.size() == source.tensors.size());
  for (const auto& [name, tensor] : source.tensors) {
    CAPTURE(name);
    const TensorView& back = saved.tensor(name);
    CHECK(back.shape == tensor.shape);
    const DType target = tensor.shape.size() == 2 ? Weights::target_dtype(format, tensor.dtype, tensor.shape[1]) : tensor.dtype;
    REQUIRE(back.dtype == target);
    // Expected bytes: each row dequantized and quantized to the target (or the same bytes).
    const int64_t cols = tensor.shape.back(), rows = tensor.n_elements() / cols;
    std::vector<uint8_t> expected(dtype_row_bytes(target, tensor.n_elements()));
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(tensor.dtype, static_cast<const uint8_t*>(tensor.data) + r * dtype_row_bytes(tensor.dtype, cols), row.data(), cols);
      quantize_row(target, row.data(), expected.data() + r * dtype_row_bytes(target, cols), cols);
    }
    REQUIRE(back.n_bytes == expected.size());
    CHECK(std::memcmp(back.data, expected.data(), expected.size()) == 0);
  }
}

}  // namespace

TEST_CASE("save_gguf: a saved GGUF loads back with the same metadata and the quantized tensors") {
  const auto dir = test::scratch_dir("save_gguf");
  const std::string source_path = (dir / "source.gguf").string();
  write_synthetic_gguf(source_path, synthetic_preset("tiny"), 7, DType::F16);
  const ModelFile source = load_gguf(source_path);
  for (WeightFormat format : {WeightFormat::Q8_0, WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q5_0,
                              WeightFormat::Q5_1, WeightFormat::F32, WeightFormat::Native}) {
    CAPTURE(weight_format_name(format));
    const std::string path = (dir / fmt::format("saved_{}.gguf", weight_format_name(format))).string();
    save_gguf(source, format, path);
    const ModelFile saved = load_gguf(path);
    check_tensors(source, saved, format);
    // Metadata: every key of the source with the same value, general.file_type aside.
    const GgufFile a = parse(source_path), b = parse(path);
    for (const auto& [key, value] : a.metadata) {
      CAPTURE(key);
      if (key == "general.file_type") continue;
      const GgufValue* other = b.find(key);
      REQUIRE(other != nullptr);
      CHECK(*other == value);
    }
    CHECK(saved.config.dim == source.config.dim);
    CHECK(saved.config.rope_theta == source.config.rope_theta);
    REQUIRE(saved.tokenizer.has_value());
    CHECK(saved.tokenizer->tokens == source.tokenizer->tokens);
    CHECK(saved.tokenizer->merges == source.tokenizer->merges);
  }
}

TEST_CASE("save_gguf: greedy tokens of the saved Q8_0 model == quantizing to Q8_0 at load") {
  const auto dir = test::scratch_dir("save_gguf_greedy");
  auto backend = make_cpu_backend(2);
  std::string source_path = find_model_file(test::kSmolLM2).string();
  int steps = 12;
  if (source_path.empty()) {
    MESSAGE("note: " << std::string(test::kSmolLM2) << " absent; using a synthetic tiny model instead");
    source_path = (dir / "source.gguf").string();
    write_synthetic_gguf(source_path, synthetic_preset("tiny"), 3, DType::F32);
    steps = 24;
  }
  const ModelFile source = load_gguf(source_path);
  const std::string saved_path = (dir / "q8_0.gguf").string();
  save_gguf(source, WeightFormat::Q8_0, saved_path);
  const ModelFile saved = load_gguf(saved_path);
  const int vocab = source.config.vocab_size;  // the synthetic model's vocabulary is small
  const std::vector<int> prompt = {1, 504 % vocab, 3458 % vocab, 282 % vocab};
  const auto at_load = test::greedy_tokens<CachedGenerator>(source, WeightFormat::Q8_0, *backend, prompt, steps);
  const auto from_file = test::greedy_tokens<CachedGenerator>(saved, WeightFormat::Native, *backend, prompt, steps);
  CHECK(at_load.size() == size_t(steps));
  CHECK(from_file == at_load);
  // And the saved model's matrices are used in place from its mapping where the backend computes on
  // the file's row-major layout; the interleaved layout (the default on AVX-512 VNNI) copies them.
  auto row_major = make_cpu_backend(2, "rows");
  Weights weights(saved, WeightFormat::Native, *row_major);
  CHECK(weights.mapped_bytes() > 0);
  CHECK(weights.layers()[0].wq.dtype == DType::Q8_0);
  CHECK_FALSE(weights.layers()[0].wq.interleaved);
  auto interleaving = make_cpu_backend(2, "interleaved");
  Weights interleaved(saved, WeightFormat::Native, *interleaving);
  CHECK(interleaved.layers()[0].wq.interleaved);
  CHECK(interleaved.mapped_bytes() == 0);
  CHECK_THROWS_AS(make_cpu_backend(2, "columns"), infer::Error);
}
