// Tests of the byte-level BPE tokenizer on SmolLM2's real vocabulary (read from the GGUF through
// infer::load_gguf) against Hugging Face `tokenizers`, and of the chat template on its real template.
#include "infer/core/error.h"
#include "infer/tokenizer/tokenizer.h"
#include "test_util.h"

#include <algorithm>
#include <filesystem>

namespace test = infer::test;

namespace {

// Reference ids produced once with Hugging Face `tokenizers` 0.23.3 (pip) from this GGUF's vocabulary:
//   BPE(vocab=tokens, merges=[m.split(' ') ...]), pre_tokenizer = Sequence([Digits(individual_digits=True),
//   ByteLevel(add_prefix_space=False, use_regex=True)]), the 17 control tokens added as special tokens;
//   tok.encode(text).ids, with tok.decode(ids) == text checked for each.
struct ReferenceEncoding {
  std::string text;
  std::vector<int> ids;
};
const std::vector<ReferenceEncoding>& smollm2_reference_encodings() {
  static const std::vector<ReferenceEncoding> cases = {
      {"Hello world! How are you today?", {19556, 905, 17, 1073, 359, 346, 1834, 47}},
      {"In 2024, the price rose 12.5% to $1,299.",
       {788, 216, 34, 32, 34, 36, 28, 260, 4319, 8739, 216, 33, 34, 30, 37, 21, 288, 1885, 33, 28, 34, 41, 41, 30}},
      {"def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
       {1604, 3987, 24, 94, 727, 472, 585, 304, 2067, 216, 34, 42, 448, 1003, 304, 472, 1003,
        3987, 24, 94, 731, 216, 33, 25, 1232, 3987, 24, 94, 731, 216, 34, 25, 198}},
      {"日本語のテキストと中文，还有한국어.",
       {23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 7365,
        118, 28589, 29184, 12831, 18276, 242, 30746, 33085, 246, 181, 130, 251, 183, 240, 129, 30}},
      {"I'm sure they'll say it's fine; we've done it.   Trailing   ",
       {57, 5248, 2090, 502, 3060, 1643, 357, 506, 4979, 43, 392, 3543, 2294, 357, 30, 256, 3295, 4966, 333}},
      {"Emoji 🦙🚀 and tabs\t\there", {10809, 33777, 15107, 116, 243, 10813, 244, 218, 284, 29416, 197, 197, 1531}},
      {"<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
       {1, 4093, 198, 26843, 665, 2, 198, 1, 520, 9531, 198}},
  };
  return cases;
}

}  // namespace

TEST_CASE("smollm2 tokenizer: matches Hugging Face tokenizers and round-trips") {
  INFER_MODEL_FILE(path, test::kSmolLM2);
  const infer::ModelFile model = infer::load_gguf(path.string());
  REQUIRE(model.tokenizer.has_value());
  const infer::TokenizerData& data = *model.tokenizer;
  CHECK(data.model == "gpt2");
  CHECK(data.pre == "smollm");
  const auto tokenizer = infer::make_tokenizer(data);
  CHECK(tokenizer->vocab_size() == 49152);
  CHECK(tokenizer->bos_id() == 1);   // <|im_start|>
  CHECK(tokenizer->eos_id() == 2);   // <|im_end|>
  CHECK_FALSE(tokenizer->add_bos_by_default());
  CHECK(tokenizer->is_end_of_generation(2));  // <|im_end|>
  CHECK(tokenizer->is_end_of_generation(0));  // <|endoftext|>
  CHECK_FALSE(tokenizer->is_end_of_generation(1));

  for (const auto& [text, ids] : smollm2_reference_encodings()) {
    CAPTURE(text);
    CHECK(tokenizer->encode(text, false) == ids);
    CHECK(tokenizer->decode(ids, /*render_special=*/true) == text);
  }
  for (std::string text : {"The quick brown fox jumps over the lazy dog.\n\nIt was 3:45 pm on 2024-11-21.",
                           "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
                           "東京は日本の首都です。北京是中国的首都。", "Ünïcödé — “quotes” … and ½ ⅔ ①",
                           "   leading and trailing   "}) {
    CAPTURE(text);
    CHECK(tokenizer->decode(tokenizer->encode(text, false)) == text);
  }

  const std::string prompt = infer::apply_chat_template(data, "What is 2+2?");
  CHECK(prompt ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<int> prompt_ids = tokenizer->encode(prompt, false);
  CHECK(prompt_ids.front() == 1);
  CHECK(std::count(prompt_ids.begin(), prompt_ids.end(), 2) == 2);  // two turns closed by <|im_end|>
}
