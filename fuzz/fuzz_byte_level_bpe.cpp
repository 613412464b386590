// fuzz_byte_level_bpe: GPT-2 style byte-level BPE on the synthetic vocabulary
// (infer::synthetic_tokenizer: 256 byte tokens, ChatML specials, a few merges), encode/decode of
// arbitrary bytes under each pre-tokenizer (gpt2, smollm, llama-bpe). Byte-level BPE covers every
// byte, so every text must round-trip.
#include "infer/formats/synthetic.h"
#include "tokenizer_fuzz.h"

namespace {
std::unique_ptr<infer::Tokenizer> make(const char* pre) {
  infer::TokenizerData data = infer::synthetic_tokenizer(300);
  data.pre = pre;
  return infer::make_tokenizer(data);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<infer::Tokenizer> tokenizers[] = {make("gpt2"), make("smollm"), make("llama-bpe")};
  if (size == 0) return 0;
  // Bits 3-4 of the flag byte pick the pre-tokenizer.
  const infer::Tokenizer& tokenizer = *tokenizers[((data[0] >> 3) & 3) % 3];
  infer::fuzz::check_tokenizer(tokenizer, data, size, [](std::string_view) { return true; });
  return 0;
}
