// test_hf_tokenizer_json.cpp: a Hugging Face tokenizer.json gives the same tokenizer as the GGUF
// vocabulary it was made from.
#include "infer/core/error.h"
#include "infer/formats/synthetic.h"
#include "infer/tokenizer/tokenizer.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <fstream>

using namespace infer;

namespace {

// Writes `data` (a gpt2-style vocabulary) the way HF tokenizers serialises a byte-level BPE.
void write_tokenizer_json(const std::filesystem::path& path, const TokenizerData& data, bool pair_merges) {
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array(), merges = nlohmann::json::array();
  for (size_t id = 0; id < data.tokens.size(); ++id) {
    if (data.token_types[id] == 3) {
      added.push_back({{"id", id}, {"content", data.tokens[id]}, {"special", true}});
    } else {
      vocab[data.tokens[id]] = id;
    }
  }
  for (const std::string& merge : data.merges) {
    const size_t space = merge.find(' ');
    if (pair_merges) {
      merges.push_back({merge.substr(0, space), merge.substr(space + 1)});
    } else {
      merges.push_back(merge);
    }
  }
  nlohmann::json root = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  std::ofstream(path) << root.dump();
}

}  // namespace

TEST_CASE("tokenizer.json: byte-level BPE loads as the same vocabulary and encodes identically") {
  const TokenizerData original = synthetic_tokenizer(400);
  for (bool pair_merges : {false, true}) {
    CAPTURE(pair_merges);
    const auto dir = test::scratch_dir(pair_merges ? "hf_tokenizer_pairs" : "hf_tokenizer_strings");
    write_tokenizer_json(dir / "tokenizer.json", original, pair_merges);
    const TokenizerData loaded = load_hf_tokenizer_json((dir / "tokenizer.json").string());
    CHECK(loaded.model == "gpt2");
    CHECK(loaded.pre == "gpt2");
    CHECK(loaded.tokens == original.tokens);
    CHECK(loaded.merges == original.merges);
    for (size_t id = 0; id < original.tokens.size(); ++id) CHECK(loaded.token_types[id] == (original.token_types[id] == 3 ? 3 : 1));

    auto expected = make_tokenizer(original);
    auto actual = make_tokenizer(loaded);
    for (const char* text : {"Hello world, the cat sat on the mat.", "  spaces\tand\nnewlines 12345",
                             "<|im_start|>user\nhi<|im_end|>", "caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80"}) {
      CAPTURE(text);
      CHECK(actual->encode(text, false) == expected->encode(text, false));
      CHECK(actual->decode(actual->encode(text, false), true) == text);
    }
  }
}

TEST_CASE("tokenizer.json: tokenizer_config.json names BOS/EOS and the chat template") {
  const auto dir = test::scratch_dir("hf_tokenizer_config");
  const TokenizerData original = synthetic_tokenizer(400);
  write_tokenizer_json(dir / "tokenizer.json", original, false);
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": false,
            "chat_template": "{{'<|im_start|>' + message['role']}}"})";
  const TokenizerData loaded = load_hf_tokenizer_json((dir / "tokenizer.json").string());
  REQUIRE(loaded.bos_id >= 0);
  REQUIRE(loaded.eos_id >= 0);
  CHECK(loaded.tokens[loaded.bos_id] == "<|im_start|>");
  CHECK(loaded.tokens[loaded.eos_id] == "<|im_end|>");
  CHECK_FALSE(loaded.add_bos);
  CHECK(loaded.chat_template.find("<|im_start|>") != std::string::npos);
}

TEST_CASE("tokenizer.json: unsupported or malformed files give errors naming the file") {
  const auto dir = test::scratch_dir("hf_tokenizer_bad");
  auto expect_error = [&](const std::string& name, const std::string& content, const std::string& fragment) {
    std::ofstream(dir / name) << content;
    try {
      load_hf_tokenizer_json((dir / name).string());
      FAIL("expected an error for " << name);
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK(message.find(name) != std::string::npos);
      CHECK_MESSAGE(message.find(fragment) != std::string::npos, message);
    }
  };
  expect_error("truncated.json", R"({"model": {"type": "BPE", "vocab": {"a": 0)", "not valid JSON");
  expect_error("metaspace.json",
               R"({"pre_tokenizer": {"type": "Metaspace"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
               "SentencePiece-style");
  expect_error("unigram.json", R"({"model": {"type": "Unigram", "vocab": []}})", "not supported");
  expect_error("gap.json",
               R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0, "b": 2}, "merges": []}})",
               "must be dense");
  expect_error("merge.json",
               R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}})",
               "merge");
  expect_error("missing.json", R"({"version": "1.0"})", "unexpected tokenizer.json structure");
}
