// oracle_util.h: llama.cpp's own numbers for the default model as an outside oracle
// (smollm2-oracle/ in the model folders: ../shared/models/smollm2-oracle/ in CI; its SOURCE.txt says how
// each file was made). Used by test_oracle.cpp; the greedy helper takes any decoding path, so the batched
// engine (ch06) can be checked against the same four texts.
//
//   <name>.dequantized.tsv   per tensor: name, type, GGUF shape, sha256 of llama.cpp's f32 dequantization
//                            (little-endian floats in storage order), their sum
//   greedy_f32.jsonl         per prompt: llama.cpp's greedy continuation (llama-simple -n 48, no BOS, no chat
//                            template) on the f32 dequantization of the Q4_1 file, trailing whitespace stripped
#pragma once

#include "infer/core/dtype.h"
#include "infer/formats/model_file.h"
#include "infer/tokenizer/tokenizer.h"
#include "sha256.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace infer::test {

inline constexpr const char* kOracleQ4_1Hashes = "smollm2-oracle/Q4_1.dequantized.tsv";
inline constexpr const char* kOracleGreedy = "smollm2-oracle/greedy_f32.jsonl";

// ---- Tensor hashes ---------------------------------------------------------------------------------

struct OracleTensor {
  std::string name, type, shape, sha256;  // shape as written: "ne0xne1" (ne0 = row length)
};

// The lines of a <name>.dequantized.tsv; a malformed line fails the test naming it.
inline std::vector<OracleTensor> read_oracle_hashes(const std::filesystem::path& path) {
  std::istringstream lines(read_text(path));
  std::vector<OracleTensor> tensors;
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    OracleTensor tensor;
    std::string sum;
    fields >> tensor.name >> tensor.type >> tensor.shape >> tensor.sha256 >> sum;
    REQUIRE_MESSAGE((!sum.empty() && tensor.sha256.size() == 64), path.string() << ": malformed line: " << line);
    tensors.push_back(tensor);
  }
  return tensors;
}

// The GGUF shape of a tensor as the .tsv writes it: dims innermost first ("576x49152").
inline std::string gguf_shape(const TensorView& tensor) {
  std::string shape;
  for (auto dim = tensor.shape.rbegin(); dim != tensor.shape.rend(); ++dim)
  {
    if (!shape.empty()) shape += 'x';
    shape += std::to_string(*dim);
  }
  return shape;
}

// sha256 of the tensor dequantized to float32 by the engine (dequantize_row over every element, in
// storage order), as little-endian bytes (the machines this runs on are little-endian).
inline std::string dequantized_sha256(const TensorView& tensor) {
  std::vector<float> values(size_t(tensor.n_elements()));
  dequantize_row(tensor.dtype, tensor.data, values.data(), tensor.n_elements());
  return sha256_hex(values.data(), values.size() * sizeof(float));
}

// ---- Greedy continuations --------------------------------------------------------------------------

struct OracleContinuation {
  std::string prompt;
  int max_tokens = 0;
  std::string text;  // llama.cpp's continuation, trailing whitespace stripped
};

inline std::vector<OracleContinuation> read_oracle_greedy(const std::filesystem::path& path) {
  std::istringstream lines(read_text(path));
  std::vector<OracleContinuation> cases;
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    const nlohmann::json object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    REQUIRE_MESSAGE((object.is_object() && object.contains("prompt") && object.contains("max_tokens") &&
                     object.contains("llama_cpp_greedy_continuation")),
                    path.string() << ": malformed line: " << line);
    cases.push_back({object["prompt"].get<std::string>(), object["max_tokens"].get<int>(),
                     object["llama_cpp_greedy_continuation"].get<std::string>()});
  }
  return cases;
}

inline std::string strip_trailing_whitespace(std::string text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\n' || text.back() == '\t' || text.back() == '\r'))
    text.pop_back();
  return text;
}

// One decoding path: greedy tokens after `prompt`, at most max_new, stopping before any of stop_tokens.
using GreedyPath = std::function<std::vector<int>(const std::vector<int>& prompt, int max_new,
                                                  const std::vector<int>& stop_tokens)>;

// Runs every case of greedy_f32.jsonl through `path` under llama-simple's conditions (the prompt encoded
// without BOS and without a chat template, at most max_tokens new tokens, stopping at any end-of-generation
// token, the text's trailing whitespace stripped) and checks each text equals llama.cpp's. A mismatch
// names the prompt, the first differing character and both texts.
inline void check_greedy_oracle(const std::vector<OracleContinuation>& cases, const Tokenizer& tokenizer,
                                const GreedyPath& path, const std::string& path_name) {
  std::vector<int> end_of_generation;
  for (int id = 0; id < tokenizer.vocab_size(); ++id)
    if (tokenizer.is_end_of_generation(id)) end_of_generation.push_back(id);
  int matched = 0;
  for (const OracleContinuation& oracle : cases) {
    CAPTURE(oracle.prompt);
    const std::vector<int> prompt = tokenizer.encode(oracle.prompt, /*add_bos=*/false);
    const std::vector<int> tokens = path(prompt, oracle.max_tokens, end_of_generation);
    std::string text;
    int previous = prompt.empty() ? -1 : prompt.back();
    for (int token : tokens) {
      text += tokenizer.decode_token(previous, token);
      previous = token;
    }
    text = strip_trailing_whitespace(text);
    if (text == oracle.text) {
      ++matched;
      continue;
    }
    size_t first = 0;
    while (first < text.size() && first < oracle.text.size() && text[first] == oracle.text[first]) ++first;
    FAIL_CHECK(path_name << ": the continuation of \"" << oracle.prompt << "\" differs from llama.cpp's at character "
                         << first << " (" << tokens.size() << " tokens generated)\n  llama.cpp: \"" << oracle.text
                         << "\"\n  engine:    \"" << text << "\"");
  }
  MESSAGE(path_name << ": " << matched << " of " << cases.size() << " continuations equal llama.cpp's");
  CHECK(matched == int(cases.size()));
}

}  // namespace infer::test
