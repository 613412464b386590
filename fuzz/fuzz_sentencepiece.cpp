// fuzz_sentencepiece: SentencePiece BPE with byte fallback, encode/decode of arbitrary bytes.
//
// The vocabulary is stories260K's tok512.bin (a real llama2.c tokenizer: 512 pieces, byte
// fallback) when found (../shared/models beside the repository, or INFER_MODELS_DIR, models/), else a small synthetic GGUF-style
// ("llama") vocabulary; the choice is printed once. tok512 spells a space " ", so every text must
// round-trip; the GGUF style spells it U+2581, so a text that contains U+2581 itself is exempt.
#include "infer/core/model_search.h"
#include "tokenizer_fuzz.h"

#include <fmt/format.h>

namespace {

infer::TokenizerData synthetic_llama_vocabulary() {
  // ids 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then a few merged pieces with scores.
  infer::TokenizerData data;
  data.model = "llama";
  data.tokens = {"<unk>", "<s>", "</s>"};
  data.token_types = {2, 3, 3};
  for (int byte = 0; byte < 256; ++byte) {
    data.tokens.push_back(fmt::format("<0x{:02X}>", byte));
    data.token_types.push_back(6);
  }
  data.scores.assign(data.tokens.size(), 0.0f);
  const std::string space = "\xE2\x96\x81";
  float score = -1.0f;
  for (const std::string piece : {space, std::string("a"), std::string("b"), std::string("aa"), std::string("ab"),
                                  space + "a", space + "b", std::string("\xE4\xB8\xAD"), space + "ab"}) {
    data.tokens.push_back(piece);
    data.scores.push_back(score);
    data.token_types.push_back(1);
    score -= 1.0f;
  }
  data.unk_id = 0;
  data.bos_id = 1;
  data.eos_id = 2;
  return data;
}

struct Vocabulary {
  std::unique_ptr<infer::Tokenizer> tokenizer;
  bool space_is_u2581 = false;
};

Vocabulary load_vocabulary() {
  // Found like every model file (infer/core/model_search.h: INFER_MODELS_DIR, models/, ../shared/models).
  const std::filesystem::path tok512 = infer::find_model_file("stories260K/tok512.bin");
  if (!tok512.empty()) {
    std::fprintf(stderr, "fuzz_sentencepiece: vocabulary %s\n", tok512.c_str());
    return {infer::load_llama2c_tokenizer(tok512.string(), 512), false};
  }
  std::fprintf(stderr, "fuzz_sentencepiece: stories260K/tok512.bin is absent (%s); using a synthetic vocabulary\n",
               infer::describe_model_search().c_str());
  return {infer::make_tokenizer(synthetic_llama_vocabulary()), true};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Vocabulary vocabulary = load_vocabulary();
  infer::fuzz::check_tokenizer(*vocabulary.tokenizer, data, size, [](std::string_view text) {
    return !vocabulary.space_is_u2581 || text.find("\xE2\x96\x81") == std::string_view::npos;
  });
  return 0;
}
