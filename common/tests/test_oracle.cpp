// test_oracle.cpp: the engine against llama.cpp's own numbers for the default model (oracle_util.h), so
// the real-model checks do not only compare the engine with itself:
//  - every tensor of the shipped SmolLM2-135M-Instruct Q4_1 file dequantizes to exactly llama.cpp's
//    float32 bytes (272 sha256 of smollm2-oracle/Q4_1.dequantized.tsv);
//  - greedy decoding with f32 weights reproduces llama.cpp's four continuations
//    (smollm2-oracle/greedy_f32.jsonl) through the naive and the cached generators.
// Each test names the file it misses (skipped on a reader's machine, failed in CI: test_util.h).
#include "golden_util.h"
#include "infer/engine/generator.h"
#include "infer/formats/model_file.h"
#include "infer/tokenizer/tokenizer.h"
#include "oracle_util.h"
#include "sha256.h"

#include <map>

using namespace infer;

TEST_CASE("oracle: the test's sha256 matches the FIPS 180-4 examples") {
  CHECK(test::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(test::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  // 56 bytes: padding spills
  CHECK(test::sha256_hex(two_blocks.data(), two_blocks.size()) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // A million 'a', fed in uneven pieces (the buffered and the direct paths of update).
  test::Sha256 hash;
  const std::string piece(997, 'a');
  size_t fed = 0;
  while (fed < 1000000) {
    const size_t n = std::min(piece.size() - (fed % 7), size_t(1000000) - fed);
    hash.update(piece.data(), n);
    fed += n;
  }
  CHECK(hash.hex_digest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("oracle: every tensor of the Q4_1 file dequantizes to llama.cpp's exact float32 bytes") {
  INFER_MODEL_FILE(model_path, test::kSmolLM2);
  INFER_MODEL_FILE(hashes_path, test::kOracleQ4_1Hashes);
  const std::vector<test::OracleTensor> oracle = test::read_oracle_hashes(hashes_path);
  const ModelFile file = load_model_file(model_path.string());
  CHECK(oracle.size() == 272);
  CHECK(file.tensors.size() == oracle.size());  // no tensor of the file goes unchecked

  std::map<std::string, int> matched_by_type;
  int matched = 0;
  for (const test::OracleTensor& expected : oracle) {
    CAPTURE(expected.name);
    REQUIRE_MESSAGE(file.has(expected.name), "the oracle lists " << expected.name << ", which the file lacks");
    const TensorView& tensor = file.tensor(expected.name);
    std::string type(dtype_name(tensor.dtype));
    for (char& c : type) c = char(std::toupper(static_cast<unsigned char>(c)));
    CHECK(type == expected.type);
    CHECK(test::gguf_shape(tensor) == expected.shape);
    const std::string got = test::dequantized_sha256(tensor);
    if (got == expected.sha256) {
      ++matched;
      ++matched_by_type[expected.type];
    } else {
      FAIL_CHECK(expected.name << " (" << expected.type << ", " << expected.shape << ") dequantizes to sha256 " << got
                               << ", llama.cpp's is " << expected.sha256);
    }
  }
  std::string by_type;
  for (const auto& [type, count] : matched_by_type) by_type += " " + type + " x" + std::to_string(count);
  MESSAGE(matched << " of " << oracle.size() << " tensors dequantize to llama.cpp's bytes:" << by_type);
  CHECK(matched == int(oracle.size()));
}

namespace {

// The four greedy continuations of greedy_f32.jsonl with GeneratorType on 2 CPU threads, f32 weights.
template <typename GeneratorType>
void check_oracle_continuations(const std::string& path_name) {
  INFER_MODEL_FILE(model_path, test::kSmolLM2);
  INFER_MODEL_FILE(greedy_path, test::kOracleGreedy);
  const std::vector<test::OracleContinuation> cases = test::read_oracle_greedy(greedy_path);
  REQUIRE(cases.size() == 4);
  for (const auto& oracle : cases) REQUIRE(oracle.max_tokens == cases.front().max_tokens);
  const ModelFile file = load_model_file(model_path.string());
  REQUIRE(file.tokenizer.has_value());
  const auto tokenizer = make_tokenizer(*file.tokenizer);
  auto backend = make_cpu_backend(2);
  // One f32 copy of the weights and one transformer for all four prompts (the longest prompt + 48 tokens).
  Weights weights(file, WeightFormat::F32, *backend);
  size_t longest = 0;
  for (const auto& oracle : cases) longest = std::max(longest, tokenizer->encode(oracle.prompt, false).size());
  Transformer transformer(weights, *backend, int(longest) + cases.front().max_tokens);
  test::check_greedy_oracle(
      cases, *tokenizer,
      [&](const std::vector<int>& prompt, int max_new, const std::vector<int>& stop) {
        GeneratorType generator(transformer);
        return generator.generate(prompt, test::greedy_options(max_new, stop)).tokens;
      },
      path_name);
}

}  // namespace

TEST_CASE("oracle: greedy f32 continuations equal llama.cpp's (cached generator)") {
  check_oracle_continuations<CachedGenerator>("cached generator");
}

TEST_CASE("oracle: greedy f32 continuations equal llama.cpp's (naive generator)") {
  check_oracle_continuations<NaiveGenerator>("naive generator");
}
