// test_oracle.cpp: the engine against llama.cpp's own numbers for the default model (oracle_util.h), so
// the real-model checks do not only compare the engine with itself:
//  - every tensor of the shipped SmolLM2-135M-Instruct Q4_1 file, and of the oracle's Q4_K_M file, dequantizes
//    to exactly llama.cpp's float32 bytes (272 sha256 each, smollm2-oracle/<type>.dequantized.tsv);
//  - greedy decoding with f32 weights reproduces llama.cpp's four continuations
//    (smollm2-oracle/greedy_f32.jsonl) through the naive and the cached generators and the batching engine
//    (the four prompts decoded together).
// Each test names the file it misses (skipped on a reader's machine, failed in CI: test_util.h).
#include "golden_util.h"
#include "infer/engine/engine.h"
#include "infer/engine/generator.h"
#include "infer/formats/model_file.h"
#include "infer/tokenizer/tokenizer.h"
#include "oracle_util.h"
#include "sha256.h"

#include <functional>
#include <map>
#include <memory>

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

namespace {

// Every tensor of the GGUF file `model_name` against the oracle's `hashes_name` (.dequantized.tsv): type, shape
// and the sha256 of the engine's float32 dequantization. Returns how many matched, per type as the .tsv spells it.
std::map<std::string, int> check_oracle_hashes(const char* model_name, const char* hashes_name) {
  const std::filesystem::path model_path = test::model_or_report_missing(model_name);
  const std::filesystem::path hashes_path = test::model_or_report_missing(hashes_name);
  if (model_path.empty() || hashes_path.empty()) return {};
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
  MESSAGE(std::string(model_name) << ": " << matched << " of " << oracle.size() << " tensors dequantize to llama.cpp's bytes:"
                     << by_type);
  CHECK(matched == int(oracle.size()));
  return matched_by_type;
}

}  // namespace

TEST_CASE("oracle: every tensor of the Q4_1 file dequantizes to llama.cpp's exact float32 bytes") {
  check_oracle_hashes(test::kSmolLM2, test::kOracleQ4_1Hashes);
}

TEST_CASE("oracle: every tensor of the Q4_K_M file dequantizes to llama.cpp's exact float32 bytes") {
  // Q5_0 for the 576-wide rows (not a multiple of 256), the K formats and Q8_0 for the rest.
  const auto matched = check_oracle_hashes(test::kOracleQ4_K_M, test::kOracleQ4_K_MHashes);
  if (matched.empty()) return;  // skipped (a file is absent), or already failed above
  CHECK(matched.at("F32") == 61);
  CHECK(matched.at("Q5_0") == 166);
  CHECK(matched.at("Q4_K") == 16);
  CHECK(matched.at("Q8_0") == 15);
  CHECK(matched.at("Q6_K") == 14);
}

namespace {

// Builds the decoding path to check, given the model and the four cases (a batched path runs them all at once).
using MakeGreedyPath = std::function<test::GreedyPath(Transformer&, const Tokenizer&,
                                                      const std::vector<test::OracleContinuation>&)>;

// The four greedy continuations of greedy_f32.jsonl through the path make_path builds, on 2 CPU threads,
// f32 weights.
void check_oracle_continuations(const std::string& path_name, const MakeGreedyPath& make_path) {
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
  test::check_greedy_oracle(cases, *tokenizer, make_path(transformer, *tokenizer, cases), path_name);
}

// One request at a time through a single-sequence generator.
template <typename GeneratorType>
test::GreedyPath generator_path(Transformer& transformer, const Tokenizer&,
                                const std::vector<test::OracleContinuation>&) {
  return [&transformer](const std::vector<int>& prompt, int max_new, const std::vector<int>& stop) {
    GeneratorType generator(transformer);
    return generator.generate(prompt, test::greedy_options(max_new, stop)).tokens;
  };
}

// The batching engine (ch06): the four prompts submitted at once, decoded together in shared steps over the
// paged KV cache (small blocks, a small step budget so prefill is chunked); the path then hands back each
// prompt's tokens. Also checks that every block is free again afterwards.
test::GreedyPath engine_path(Transformer& transformer, const Tokenizer& tokenizer,
                             const std::vector<test::OracleContinuation>& cases) {
  std::vector<int> end_of_generation;  // the same stop set check_greedy_oracle passes to the path
  for (int id = 0; id < tokenizer.vocab_size(); ++id)
    if (tokenizer.is_end_of_generation(id)) end_of_generation.push_back(id);
  EngineOptions options;
  options.block_size = 8;
  options.num_blocks = 64;
  options.max_batch = 4;
  options.max_step_tokens = 16;
  Engine engine(transformer, options);
  auto outputs = std::make_shared<std::map<std::vector<int>, std::vector<int>>>();
  for (const auto& oracle : cases) {
    const std::vector<int> prompt = tokenizer.encode(oracle.prompt, /*add_bos=*/false);
    RequestParams params;
    params.max_tokens = oracle.max_tokens;
    params.stop_tokens = end_of_generation;
    std::vector<int>& tokens = (*outputs)[prompt];
    engine.add_request(prompt, params, [&tokens](const RequestEvent& event) {
      REQUIRE_MESSAGE((event.finish != FinishReason::error && event.finish != FinishReason::aborted), event.error);
      if (event.token >= 0) tokens.push_back(event.token);
    });
  }
  while (engine.has_work()) engine.step();
  const EngineStats stats = engine.stats();
  CHECK(stats.blocks_free == stats.blocks_total);
  return [outputs](const std::vector<int>& prompt, int, const std::vector<int>&) { return outputs->at(prompt); };
}

}  // namespace

TEST_CASE("oracle: greedy f32 continuations equal llama.cpp's (cached generator)") {
  check_oracle_continuations("cached generator", generator_path<CachedGenerator>);
}

TEST_CASE("oracle: greedy f32 continuations equal llama.cpp's (naive generator)") {
  check_oracle_continuations("naive generator", generator_path<NaiveGenerator>);
}

TEST_CASE("oracle: greedy f32 continuations equal llama.cpp's (batching engine, all four in one batch)") {
  check_oracle_continuations("batching engine", engine_path);
}
