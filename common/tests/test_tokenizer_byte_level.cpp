// Tests of the byte-level BPE tokenizer (GGUF "gpt2") on small synthetic vocabularies whose ids can be
// worked out by hand, and of the ChatML chat template. test_tokenizer_smollm2.cpp checks a real vocabulary.
#include "infer/core/error.h"
#include "infer/tokenizer/tokenizer.h"
#include "test_util.h"

#include <algorithm>
#include <random>

namespace {

using infer::Tokenizer;
namespace test = infer::test;

// GPT-2's bytes_to_unicode, written out independently of the implementation: printable bytes spell
// themselves, the rest take U+0100, U+0101, ... in byte order.
std::string byte_symbol(int byte) {
  const bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
  int code_point = byte;
  if (!printable) {
    code_point = 256;
    for (int b = 0; b < byte; ++b) {
      if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) ++code_point;
    }
  }
  std::string utf8;
  if (code_point < 0x80) {
    utf8 += static_cast<char>(code_point);
  } else {
    utf8 += static_cast<char>(0xC0 | (code_point >> 6));
    utf8 += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return utf8;
}

// A synthetic byte-level vocabulary: ids 0..255 are the byte symbols (id == byte value), then one token
// per merge in the order given (merge k makes token 256 + k), then the specials.
//   256 "he"    = h e        260 "Ġw"   = Ġ w        264 "1 2" -> "12"
//   257 "ll"    = l l        261 "or"   = o r        265 "Ġ 1" -> "Ġ1"
//   258 "hell"  = he ll      262 "Ġwor" = Ġw or      266 "a a" -> "aa"
//   259 "hello" = hell o     263 "lo"   = l o        267 "e l" -> "el"
//   268 "<|endoftext|>" control (eos)   269 "<|im_end|>" control   270 "<|im" user-defined
constexpr int kHello = 259, kSpaceWor = 262, kLo = 263, kTwelve = 264, kAa = 266;
constexpr int kEndOfText = 268, kImEnd = 269, kImPrefix = 270;

infer::TokenizerData synthetic_byte_level_data(const std::string& pre) {
  infer::TokenizerData data;
  data.model = "gpt2";
  data.pre = pre;
  for (int byte = 0; byte < 256; ++byte) data.tokens.push_back(byte_symbol(byte));
  const std::string space = byte_symbol(' ');  // "Ġ"
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {space, "w"}, {"o", "r"},
      {space + "w", "or"}, {"l", "o"}, {"1", "2"}, {space, "1"}, {"a", "a"}, {"e", "l"}};
  for (const auto& [left, right] : merges) {
    data.merges.push_back(left + " " + right);
    data.tokens.push_back(left + right);
  }
  data.token_types.assign(data.tokens.size(), 1);
  data.tokens.push_back("<|endoftext|>");
  data.token_types.push_back(3);
  data.tokens.push_back("<|im_end|>");
  data.token_types.push_back(3);
  data.tokens.push_back("<|im");
  data.token_types.push_back(4);
  data.eos_id = kEndOfText;
  data.bos_id = kEndOfText;
  data.add_bos = false;
  return data;
}

std::vector<int> bytes_of(std::string_view text) {
  std::vector<int> ids;
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

}  // namespace

// ==== Synthetic vocabulary ===========================================================================

TEST_CASE("byte-level bpe: ids of small strings, worked out by hand") {
  const auto tokenizer = infer::make_tokenizer(synthetic_byte_level_data("gpt2"));
  CHECK(tokenizer->vocab_size() == 271);
  CHECK(tokenizer->piece(kSpaceWor) == "\xC4\xA0wor");  // "Ġwor"
  // h e l l o: "h e" (rank 0), "l l" (1), "he ll" (2), "hell o" (3).
  CHECK(tokenizer->encode("hello", false) == std::vector<int>{kHello});
  // Pre-tokenizer: "hello" | " world". " world": "Ġ w" (4), "o r" (5), "Ġw or" (6); "l", "d" stay bytes.
  CHECK(tokenizer->encode("hello world", false) == std::vector<int>{kHello, kSpaceWor, 'l', 'd'});
  // Rank, not position, decides: in "ell" the pair "l l" (rank 1) beats the leftmost "e l" (rank 11).
  CHECK(tokenizer->encode("ell", false) == std::vector<int>{'e', 257});
  // In "llo", "l l" (rank 1) beats "l o" (rank 7).
  CHECK(tokenizer->encode("llo", false) == std::vector<int>{257, 'o'});
  CHECK(tokenizer->encode("lo", false) == std::vector<int>{kLo});
  // Equal ranks: the leftmost pair merges first, "aaa" -> "aa" "a", "aaaa" -> "aa" "aa".
  CHECK(tokenizer->encode("aaa", false) == std::vector<int>{kAa, 'a'});
  CHECK(tokenizer->encode("aaaa", false) == std::vector<int>{kAa, kAa});
  // Merges never cross pre-tokenizer chunks: "he" + "llo" in "he's llo" are separate words.
  CHECK(tokenizer->encode("he's llo", false) == std::vector<int>{256, '\'', 's', ' ', 257, 'o'});
  // GPT-2 keeps " 12" as one chunk: "1 2" (rank 8) beats "Ġ 1" (rank 9).
  CHECK(tokenizer->encode(" 12", false) == std::vector<int>{' ', kTwelve});
  // Bytes outside ASCII: "é" is C3 A9, two byte tokens.
  CHECK(tokenizer->encode("\xC3\xA9", false) == std::vector<int>{0xC3, 0xA9});
  CHECK(tokenizer->encode("", false).empty());
  // add_bos uses bos_id when asked, whatever add_bos_by_default says.
  CHECK_FALSE(tokenizer->add_bos_by_default());
  CHECK(tokenizer->encode("lo", true) == std::vector<int>{kEndOfText, kLo});
}

TEST_CASE("byte-level bpe: the smollm pre-tokenizer isolates every digit") {
  const auto gpt2 = infer::make_tokenizer(synthetic_byte_level_data("gpt2"));
  const auto smollm = infer::make_tokenizer(synthetic_byte_level_data("smollm"));
  CHECK(gpt2->encode("x 123", false) == std::vector<int>{'x', ' ', kTwelve, '3'});
  // smollm: "x" | " " | "1" | "2" | "3" -- neither "Ġ 1" nor "1 2" can apply across the digit splits.
  CHECK(smollm->encode("x 123", false) == std::vector<int>{'x', ' ', '1', '2', '3'});
  CHECK(smollm->encode("hello world", false) == std::vector<int>{kHello, kSpaceWor, 'l', 'd'});
}

TEST_CASE("byte-level bpe: the llama3 pre-tokenizer, with whole-chunk tokens taken before merges") {
  // Chunk boundaries checked with HF tokenizers' Split(Regex(<Llama-3 pattern>), "isolated"):
  //   "Hello 12345 world"  -> "Hello" " " "123" "45" " world"
  //   "I'M here;\n\n  ok" -> "I" "'M" " here" ";\n\n" " " " ok"
  //   "$x+=1  \n"          -> "$x" "+=" "1" "  \n"
  // The vocabulary has the 256 byte symbols, one token per multi-byte chunk above and no merges, so a
  // chunk comes out whole only through Llama-3's ignore_merges rule, and everything else as bytes.
  infer::TokenizerData data;
  data.model = "gpt2";
  data.pre = "llama-bpe";
  for (int byte = 0; byte < 256; ++byte) data.tokens.push_back(byte_symbol(byte));
  auto spell = [](std::string_view text) {
    std::string spelled;
    for (char c : text) spelled += byte_symbol(static_cast<unsigned char>(c));
    return spelled;
  };
  const std::vector<std::string> chunks = {"Hello", "123", "45", " world", "'M", " here", ";\n\n", " ok", "$x", "+=", "  \n"};
  for (const std::string& chunk : chunks) data.tokens.push_back(spell(chunk));
  auto id_of = [&](std::string_view chunk) {
    return 256 + static_cast<int>(std::find(chunks.begin(), chunks.end(), chunk) - chunks.begin());
  };
  const auto llama3 = infer::make_tokenizer(data);
  CHECK(llama3->encode("Hello 12345 world", false) ==
        std::vector<int>{id_of("Hello"), ' ', id_of("123"), id_of("45"), id_of(" world")});
  CHECK(llama3->encode("I'M here;\n\n  ok", false) ==
        std::vector<int>{'I', id_of("'M"), id_of(" here"), id_of(";\n\n"), ' ', id_of(" ok")});
  CHECK(llama3->encode("$x+=1  \n", false) == std::vector<int>{id_of("$x"), id_of("+="), '1', id_of("  \n")});
  // The GPT-2 pre-tokenizer has no ignore_merges: with no merges every chunk stays bytes.
  data.pre = "gpt2";
  CHECK(infer::make_tokenizer(data)->encode("Hello 123", false) == bytes_of("Hello 123"));
}

TEST_CASE("byte-level bpe: special tokens are parsed only when asked, longest match first") {
  const auto tokenizer = infer::make_tokenizer(synthetic_byte_level_data("gpt2"));
  CHECK(tokenizer->encode("hello<|endoftext|>", false, true) == std::vector<int>{kHello, kEndOfText});
  // Unparsed, the GPT-2 pattern splits "<|" "endoftext" "|>", and no merge applies inside them.
  std::vector<int> literal = {kHello};
  for (int id : bytes_of("<|endoftext|>")) literal.push_back(id);
  CHECK(tokenizer->encode("hello<|endoftext|>", false, false) == literal);
  // "<|im_end|>" and its prefix "<|im" (user-defined) are both specials: the longer one wins where it fits.
  CHECK(tokenizer->encode("<|im_end|>", false, true) == std::vector<int>{kImEnd});
  CHECK(tokenizer->encode("<|im_x", false, true) == std::vector<int>{kImPrefix, '_', 'x'});
  CHECK(tokenizer->encode("<|im_end|><|im_end|>", false, true) == std::vector<int>{kImEnd, kImEnd});

  CHECK(tokenizer->decode_token(kHello, kEndOfText).empty());
  CHECK(tokenizer->decode_token(kHello, kEndOfText, true) == "<|endoftext|>");
  CHECK(tokenizer->decode_token(kHello, kImPrefix) == "<|im");  // user-defined tokens are ordinary text
  CHECK(tokenizer->decode({kHello, kSpaceWor, 'l', 'd', kImEnd}) == "hello world");
  CHECK(tokenizer->decode({kHello, kImEnd}, true) == "hello<|im_end|>");

  CHECK(tokenizer->is_end_of_generation(kEndOfText));
  CHECK(tokenizer->is_end_of_generation(kImEnd));
  CHECK_FALSE(tokenizer->is_end_of_generation(kImPrefix));
  CHECK_FALSE(tokenizer->is_end_of_generation(kHello));
}

TEST_CASE("byte-level bpe: random byte strings (valid and invalid UTF-8) round-trip") {
  const auto tokenizer = infer::make_tokenizer(synthetic_byte_level_data("smollm"));
  // Bytes drawn from letters that merge, digits, whitespace, punctuation, and every byte >= 0x80 (so
  // both well-formed multi-byte characters and stray continuation / lead bytes appear).
  const std::string alphabet = "helowrd1a2 \n\t'!<|>";
  const std::vector<std::string> utf8_chars = {"é", "中", "🦙", "\xC2\xA0"};
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    const int length = static_cast<int>(rng() % 40);
    for (int i = 0; i < length; ++i) {
      switch (rng() % 3) {
        case 0: text += alphabet[rng() % alphabet.size()]; break;
        case 1: text += utf8_chars[rng() % utf8_chars.size()]; break;
        default: text += static_cast<char>(0x80 + rng() % 128); break;
      }
    }
    CAPTURE(trial);
    const std::vector<int> ids = tokenizer->encode(text, false, /*parse_special=*/false);
    CHECK(tokenizer->decode(ids) == text);
    for (int id : ids) CHECK((id >= 0 && id < 268));  // never a special when parse_special is off
  }
}

TEST_CASE("byte-level bpe: malformed merges throw") {
  infer::TokenizerData data = synthetic_byte_level_data("gpt2");
  data.merges.push_back("nospace");
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
  data.merges.back() = "x yz";  // "yz" is not a token
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
  data.merges.back() = "x y";  // both are tokens, but "xy" is not
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
  data.merges.pop_back();
  data.tokens[0] = "not a byte symbol";  // byte 0x00 now has no token and there is no unknown token
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
}

// ==== Chat template ==================================================================================

TEST_CASE("apply_chat_template: ChatML with the template's default system message") {
  infer::TokenizerData data;
  // SmolLM2's template (Jinja source; the newlines inside its string literals are real newlines).
  data.chat_template =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
      "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' "
      "}}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
  const std::string turn = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  CHECK(infer::apply_chat_template(data, "Hi") ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" + turn);
  // An explicit system prompt replaces the default.
  CHECK(infer::apply_chat_template(data, "Hi", "Be brief.") == "<|im_start|>system\nBe brief.<|im_end|>\n" + turn);

  SUBCASE("escaped newlines in the template literal") {
    data.chat_template = "{{ '<|im_start|>system\\nYou are terse.<|im_end|>\\n' }}{{ '<|im_start|>' }}";
    CHECK(infer::apply_chat_template(data, "Hi") == "<|im_start|>system\nYou are terse.<|im_end|>\n" + turn);
  }
  SUBCASE("a system turn built from variables is not a default message") {
    data.chat_template =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n'}}{% endfor %}{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n' + "
        "system_message + '<|im_end|>\n' }}{% endif %}";
    CHECK(infer::apply_chat_template(data, "Hi") == turn);
  }
  SUBCASE("not ChatML: the prompt is returned unchanged") {
    data.chat_template = "{{ bos_token }}[INST] {{ message['content'] }} [/INST]";
    CHECK(infer::apply_chat_template(data, "Hi") == "Hi");
    data.chat_template.clear();
    CHECK(infer::apply_chat_template(data, "Hi", "ignored") == "Hi");
  }
}
