// Tests of the SentencePiece-style BPE tokenizer: llama2.c's tokenizer.bin (Llama-2, 32000 pieces, and
// stories260K's tok512.bin) and the same vocabulary in GGUF form (U+2581 spaces, token types).
#include "infer/core/error.h"
#include "infer/tokenizer/tokenizer.h"
#include "test_util.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>

namespace {

using infer::Tokenizer;
namespace test = infer::test;

// Model files (README "Models"; found through infer/core/model_search.h, skipped when absent):
// llama2.c's Llama-2 tokenizer.bin (32000 pieces) and stories260K's tok512.bin (512 pieces).
constexpr const char* kLlama2Tokenizer = "llama2-tokenizer/tokenizer.bin";
constexpr const char* kTok512 = "stories260K/tok512.bin";

// The message of the infer::Error that `action` throws, or "" if it throws nothing.
std::string error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const infer::Error& error) {
    return error.what();
  }
  return "";
}

// The whole file; a missing or empty file fails the test naming it (callers then check every offset).
std::vector<char> read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot open " << path);
  std::vector<char> bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  REQUIRE_MESSAGE(!bytes.empty(), path << " is empty");
  return bytes;
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Reference ids for the Llama-2 tokenizer, produced once with Debian's python3-sentencepiece 0.1.97:
//   sp = sentencepiece.SentencePieceProcessor(model_file="../shared/models/llama2-tokenizer/tokenizer.model")
//   sp.encode(text)   # no BOS; sp.decode(ids) == text was checked for each
struct ReferenceEncoding {
  std::string text;
  std::vector<int> ids;
};
const std::vector<ReferenceEncoding>& llama2_reference_encodings() {
  static const std::vector<ReferenceEncoding> cases = {
      {"Once upon a time", {9038, 2501, 263, 931}},
      // Llama-2 has no multi-digit pieces: every digit is its own token, after a lone "▁" (29871).
      {"Hello world! In 2024, 3.14159 is pi.",
       {15043, 3186, 29991, 512, 29871, 29906, 29900, 29906, 29946, 29892, 29871, 29941, 29889, 29896, 29946, 29896,
        29945, 29929, 338, 2930, 29889}},
      // Dummy prefix + two leading spaces = "▁▁▁two": "▁▁" (259) then "▁two".
      {"  two leading spaces and   three inside", {259, 1023, 8236, 8162, 322, 259, 2211, 2768}},
      // "\n" and "\t" have no piece: byte fallback <0x0A> (13) and <0x09> (12).
      {"line one\nline two\n\n\tindented end", {1196, 697, 13, 1220, 1023, 13, 13, 12, 12860, 287, 1095}},
      {"日本語のテキスト 中文", {29871, 30325, 30346, 30968, 30199, 30572, 30454, 30255, 30279, 29871, 30275, 30333}},
      // The emoji have no piece: four <0xNN> byte tokens each.
      {"Llamas 🦙 and emoji 😀!",
       {365, 5288, 294, 29871, 243, 162, 169, 156, 322, 953, 29877, 2397, 29871, 243, 162, 155, 131, 29991}},
      {"naïve café Ωμέγα", {1055, 30085, 345, 274, 28059, 29871, 30357, 30167, 30273, 30197, 30110}},
      {"a", {263}},
      {" ", {259}},
  };
  return cases;
}

}  // namespace

// ==== Llama-2 (llama2.c tokenizer.bin) ===============================================================

TEST_CASE("llama2 tokenizer: 'Once upon a time' encodes to the known ids") {
  INFER_MODEL_FILE(llama2_path, kLlama2Tokenizer);
  const auto tokenizer = infer::load_llama2c_tokenizer(llama2_path.string(), 32000);
  CHECK(tokenizer->vocab_size() == 32000);
  CHECK(tokenizer->bos_id() == 1);
  CHECK(tokenizer->eos_id() == 2);
  CHECK(tokenizer->add_bos_by_default());
  CHECK(tokenizer->encode("Once upon a time", /*add_bos=*/true) == std::vector<int>{1, 9038, 2501, 263, 931});
  CHECK(tokenizer->encode("Once upon a time", /*add_bos=*/false) == std::vector<int>{9038, 2501, 263, 931});
  CHECK(tokenizer->encode("", true) == std::vector<int>{1});
  CHECK(tokenizer->encode("", false).empty());
}

TEST_CASE("llama2 tokenizer: matches sentencepiece on digits, spaces, newlines, CJK and emoji") {
  INFER_MODEL_FILE(llama2_path, kLlama2Tokenizer);
  const auto tokenizer = infer::load_llama2c_tokenizer(llama2_path.string(), 32000);
  for (const auto& [text, ids] : llama2_reference_encodings()) {
    CAPTURE(text);
    CHECK(tokenizer->encode(text, false) == ids);
    std::vector<int> with_bos = {1};
    with_bos.insert(with_bos.end(), ids.begin(), ids.end());
    CHECK(tokenizer->encode(text, true) == with_bos);
  }
}

TEST_CASE("llama2 tokenizer: decode_token follows llama2.c's rules") {
  INFER_MODEL_FILE(llama2_path, kLlama2Tokenizer);
  const auto tokenizer = infer::load_llama2c_tokenizer(llama2_path.string(), 32000);
  CHECK(tokenizer->piece(9038) == " Once");  // tokenizer.bin spells U+2581 as a plain space
  CHECK(tokenizer->decode_token(1, 9038) == "Once");       // right after BOS: the dummy-prefix space goes
  CHECK(tokenizer->decode_token(9038, 2501) == " upon");   // elsewhere it stays
  CHECK(tokenizer->decode_token(-1, 9038) == "Once");      // start of a sequence without BOS
  CHECK(tokenizer->decode_token(2501, 13) == "\n");        // <0x0A> is the raw byte
  CHECK(tokenizer->decode_token(2501, 243) == "\xF0");     // first byte of an emoji, on its own
  CHECK(tokenizer->decode_token(2501, 2).empty());         // control tokens are silent...
  CHECK(tokenizer->decode_token(2501, 2, true) == "\n</s>\n");  // ...unless rendered
  CHECK(tokenizer->decode({1, 9038, 2501, 263, 931, 2}) == "Once upon a time");
  CHECK(tokenizer->is_end_of_generation(2));
  CHECK_FALSE(tokenizer->is_end_of_generation(1));
  CHECK_FALSE(tokenizer->is_end_of_generation(931));
  CHECK_THROWS_AS(tokenizer->decode_token(0, 32000), infer::Error);
  CHECK_THROWS_AS(tokenizer->piece(-1), infer::Error);
}

TEST_CASE("llama2 tokenizer: decode(encode(text)) == text") {
  INFER_MODEL_FILE(llama2_path, kLlama2Tokenizer);
  const auto tokenizer = infer::load_llama2c_tokenizer(llama2_path.string(), 32000);
  std::vector<std::string> texts;
  for (const auto& reference : llama2_reference_encodings()) texts.push_back(reference.text);
  texts.push_back("Mixed: English, 日本語, 한국어, Ελληνικά, العربية, emoji 🦙🚀👍🏽 and a\u00a0no-break space.\n");
  texts.push_back("\n\n  trailing spaces and newlines  \n");
  texts.push_back("<s> is not parsed as BOS in a llama2.c tokenizer </s>");
  for (const std::string& text : texts) {
    CAPTURE(text);
    CHECK(tokenizer->decode(tokenizer->encode(text, true)) == text);
    CHECK(tokenizer->decode(tokenizer->encode(text, false)) == text);
  }
  // The control pieces are display strings, never matched in text, even with parse_special.
  const auto ids = tokenizer->encode("<s>", false, /*parse_special=*/true);
  CHECK(std::find(ids.begin(), ids.end(), 1) == ids.end());
}

TEST_CASE("llama2 tokenizer: a long text encodes the same as its parts, and round-trips") {
  // Sentences joined by newlines. No Llama-2 piece contains "\n" (it is always the byte token <0x0A>, 13),
  // so no merge crosses a newline and the long text must encode exactly as its sentences do. A sentence
  // after a newline has no dummy prefix; encode("\n" + sentence) gives those ids after "▁" (29871) and 13.
  INFER_MODEL_FILE(llama2_path, kLlama2Tokenizer);
  const auto tokenizer = infer::load_llama2c_tokenizer(llama2_path.string(), 32000);
  std::string text;
  std::vector<int> expected;
  for (int i = 0; i < 200; ++i) {
    const std::string sentence = fmt::format("Sentence {} tells of a dragon, a 城堡 and {} apples 🍎.", i, i * 7);
    if (i == 0) {
      text = sentence;
      expected = tokenizer->encode(sentence, false);
      continue;
    }
    text += "\n" + sentence;
    const std::vector<int> after_newline = tokenizer->encode("\n" + sentence, false);
    REQUIRE(after_newline.size() > 2);
    REQUIRE(after_newline[0] == 29871);
    REQUIRE(after_newline[1] == 13);
    expected.insert(expected.end(), after_newline.begin() + 1, after_newline.end());
  }
  REQUIRE(text.size() > 10000);
  const std::vector<int> ids = tokenizer->encode(text, false);
  CHECK(ids == expected);
  CHECK(tokenizer->decode(ids) == text);
}

// ==== stories260K's tok512.bin =======================================================================

TEST_CASE("tok512 tokenizer: 'Once upon a time' and round trips") {
  INFER_MODEL_FILE(tok512_path, kTok512);
  const auto tokenizer = infer::load_llama2c_tokenizer(tok512_path.string(), 512);
  // Worked out by hand from tok512.bin's scores (the highest-scoring available merge goes first):
  //   " "+"t" -> " t" (259, score 0)     " "+"a" -> " a" (261, -2)      "i"+"m" -> "im" (288, -29)
  //   "o"+"n" -> "on" (289, -30)         " "+"u" -> " u" (318, -59)     " "+"O" -> " O" (319, -60)
  //   " O"+"n" -> " On" (321, -62)       "c"+"e" -> "ce" (331, -72)     " u"+"p" -> " up" (350, -91)
  //   "im"+"e" -> "ime" (369, -110)      " t"+"ime" -> " time" (378, -119)
  //   " On"+"ce" -> " Once" (403, -144)  " up"+"on" -> " upon" (407, -148)
  CHECK(tokenizer->piece(403) == " Once");
  CHECK(tokenizer->piece(407) == " upon");
  CHECK(tokenizer->piece(261) == " a");
  CHECK(tokenizer->piece(378) == " time");
  CHECK(tokenizer->encode("Once upon a time", true) == std::vector<int>{1, 403, 407, 261, 378});
  for (std::string text : {"Once upon a time, there was a little girl named Lily.",
                           "She liked to play outside.\nOne day, she saw a big 🐶 dog!", "ünïcödé 中文 123",
                           "  spaced   out  "}) {
    CAPTURE(text);
    CHECK(tokenizer->decode(tokenizer->encode(text, true)) == text);
  }
}

// ==== The same vocabulary as GGUF data (tokenizer.ggml.model = "llama") ==============================

namespace {

// Builds what a GGUF file holds for Llama-2: pieces with U+2581 for space, token types, "<s>"/"</s>".
// Every read is checked against the file's size first: a short or corrupt file fails the test, naming the
// token and offset, instead of reading past the buffer.
infer::TokenizerData llama2_as_gguf_data(const std::filesystem::path& path) {
  const std::vector<char> bytes = read_bytes(path.string());
  infer::TokenizerData data;
  data.model = "llama";
  size_t at = 4;  // after max_token_length
  for (int id = 0; id < 32000; ++id) {
    float score;
    int32_t length;
    REQUIRE_MESSAGE(bytes.size() - at >= 8, path.string() << " ends inside token " << id << " (offset " << at << ")");
    std::memcpy(&score, bytes.data() + at, 4);
    std::memcpy(&length, bytes.data() + at + 4, 4);
    REQUIRE_MESSAGE((length >= 0 && size_t(length) <= bytes.size() - at - 8),
                    path.string() << ": token " << id << " has length " << length << " at offset " << at
                                  << ", past the end of the file");
    std::string piece(bytes.data() + at + 8, size_t(length));
    at += 8 + length;
    std::string gguf_piece;
    for (char c : piece) gguf_piece += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    const int32_t type = id == 0 ? 2 : id <= 2 ? 3 : id <= 258 ? 6 : 1;
    data.tokens.push_back(id == 1 ? "<s>" : id == 2 ? "</s>" : gguf_piece);
    data.scores.push_back(score);
    data.token_types.push_back(type);
  }
  REQUIRE(at == bytes.size());
  data.unk_id = 0;
  data.bos_id = 1;
  data.eos_id = 2;
  return data;
}

}  // namespace

TEST_CASE("gguf llama tokenizer: same ids as sentencepiece, special tokens parsed on request") {
  INFER_MODEL_FILE(llama2_path, kLlama2Tokenizer);
  const infer::TokenizerData data = llama2_as_gguf_data(llama2_path);
  const auto tokenizer = infer::make_tokenizer(data);
  for (const auto& [text, ids] : llama2_reference_encodings()) {
    CAPTURE(text);
    CHECK(tokenizer->encode(text, false) == ids);
    CHECK(tokenizer->decode(tokenizer->encode(text, true)) == text);
  }
  CHECK(tokenizer->piece(9038) == "\xE2\x96\x81Once");
  CHECK(tokenizer->decode_token(9038, 2501) == " upon");

  // parse_special: "</s>" in the text is EOS; the text after it gets no dummy prefix (as in SentencePiece,
  // which adds it once at the start of the text).
  const std::vector<int> parsed = tokenizer->encode("Once</s>upon", false, true);
  // "upon" without the prefix is "up" "on" (786, 265): sentencepiece's encode("\nupon") = [29871, 13, 786, 265].
  CHECK(parsed == std::vector<int>{9038, 2, 786, 265});
  const std::vector<int> literal = tokenizer->encode("Once</s>upon", false, false);
  CHECK(std::find(literal.begin(), literal.end(), 2) == literal.end());
  CHECK(tokenizer->decode(literal) == "Once</s>upon");
}

TEST_CASE("gguf llama tokenizer: add_space_prefix = false adds no dummy prefix") {
  INFER_MODEL_FILE(llama2_path, kLlama2Tokenizer);
  infer::TokenizerData data = llama2_as_gguf_data(llama2_path);
  data.add_space_prefix = false;
  const auto tokenizer = infer::make_tokenizer(data);
  // "Once" with no space before it is piece 26222 (sentencepiece: encode("\nOnce upon a time") =
  // [29871, 13, 26222, 2501, 263, 931]).
  const std::vector<int> ids = tokenizer->encode("Once upon a time", false);
  CHECK(ids == std::vector<int>{26222, 2501, 263, 931});
  CHECK(tokenizer->decode(ids) == "Once upon a time");
  CHECK(tokenizer->decode(tokenizer->encode(" leading space", true)) == " leading space");
}

TEST_CASE("sentencepiece bpe: score order, leftmost ties and byte fallback on a synthetic vocabulary") {
  // ids 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then pieces with scores chosen by hand:
  //   259 "▁" -1   260 "a" -1   261 "b" -1   262 "aa" -5   263 "ab" -3   264 "▁a" -4   265 "▁b" -10
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
  for (const auto& [piece, score] : std::vector<std::pair<std::string, float>>{
           {space, -1}, {"a", -1}, {"b", -1}, {"aa", -5}, {"ab", -3}, {space + "a", -4}, {space + "b", -10}}) {
    data.tokens.push_back(piece);
    data.scores.push_back(score);
    data.token_types.push_back(1);
  }
  data.unk_id = 0;
  data.bos_id = 1;
  data.eos_id = 2;

  SUBCASE("without the dummy prefix") {
    data.add_space_prefix = false;
    const auto tokenizer = infer::make_tokenizer(data);
    CHECK(tokenizer->encode("aaa", false) == std::vector<int>{262, 260});  // tie: the leftmost "a a" merges
    CHECK(tokenizer->encode("aab", false) == std::vector<int>{260, 263});  // "ab" (-3) beats "aa" (-5)
    CHECK(tokenizer->encode("c", false) == std::vector<int>{3 + 'c'});     // no piece: byte fallback
    CHECK(tokenizer->encode("\xC3\xA9", false) == std::vector<int>{3 + 0xC3, 3 + 0xA9});
  }
  SUBCASE("with the dummy prefix") {
    const auto tokenizer = infer::make_tokenizer(data);
    CHECK(tokenizer->encode("a", false) == std::vector<int>{264});         // "▁a"
    CHECK(tokenizer->encode(" b", false) == std::vector<int>{259, 265});   // "▁▁b": "▁" "▁b"
    // "▁ab▁a": "ab" (-3) first, then the second "▁a" (-4); "▁ab" is not a piece.
    CHECK(tokenizer->encode("ab a", true) == std::vector<int>{1, 259, 263, 264});
    CHECK(tokenizer->decode({1, 259, 263, 264}) == "ab a");
  }
}

// ==== Malformed files ================================================================================

TEST_CASE("llama2c tokenizer: malformed files throw infer::Error naming the file") {
  INFER_MODEL_FILE(tok512_file, kTok512);
  const std::string tok512_path = tok512_file.string();
  const auto dir = test::scratch_dir("llama2c_tokenizer_errors");
  const std::vector<char> good = read_bytes(tok512_path);
  REQUIRE(good.size() == 6227);

  SUBCASE("missing file") {
    const std::string path = (dir / "missing.bin").string();
    CHECK(error_message([&] { infer::load_llama2c_tokenizer(path, 512); }).find(path) != std::string::npos);
  }
  SUBCASE("truncated file") {
    const std::string path = (dir / "truncated.bin").string();
    write_bytes(path, std::vector<char>(good.begin(), good.begin() + 3000));
    const std::string message = error_message([&] { infer::load_llama2c_tokenizer(path, 512); });
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find("truncated") != std::string::npos);
  }
  SUBCASE("vocab_size larger than the file holds") {
    const std::string message = error_message([&] { infer::load_llama2c_tokenizer(tok512_path, 513); });
    CHECK(message.find("truncated") != std::string::npos);
  }
  SUBCASE("vocab_size smaller than the file holds") {
    const std::string message = error_message([&] { infer::load_llama2c_tokenizer(tok512_path, 511); });
    CHECK(message.find(tok512_path) != std::string::npos);
    CHECK(message.find("vocab_size") != std::string::npos);
  }
  SUBCASE("invalid vocab_size") {
    CHECK_THROWS_AS(infer::load_llama2c_tokenizer(tok512_path, 0), infer::Error);
    CHECK_THROWS_AS(infer::load_llama2c_tokenizer(tok512_path, -5), infer::Error);
  }
  // Token 0 "<unk>" starts at offset 4: float score, then its int32 length at offset 8.
  for (int32_t bad_length : {-1, 0, 1 << 30, 8 /* > max_token_length = 7 */}) {
    CAPTURE(bad_length);
    std::vector<char> bytes = good;
    std::memcpy(bytes.data() + 8, &bad_length, 4);
    const std::string path = (dir / "bad_length.bin").string();
    write_bytes(path, bytes);
    const std::string message = error_message([&] { infer::load_llama2c_tokenizer(path, 512); });
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find("length") != std::string::npos);
  }
  for (int32_t bad_max_length : {-7, 0}) {
    std::vector<char> bytes = good;
    std::memcpy(bytes.data(), &bad_max_length, 4);
    const std::string path = (dir / "bad_max_length.bin").string();
    write_bytes(path, bytes);
    CHECK(error_message([&] { infer::load_llama2c_tokenizer(path, 512); }).find("max_token_length") !=
          std::string::npos);
  }
}

TEST_CASE("make_tokenizer: inconsistent vocabulary data throws") {
  infer::TokenizerData data;
  data.model = "llama";
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);  // no tokens
  data.tokens = {"<unk>", "<s>", "</s>", "a"};
  data.scores = {0, 0, 0};  // one short
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
  data.scores.push_back(0);
  data.bos_id = 4;  // outside the vocabulary
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
  data.bos_id = 1;
  data.token_types = {2, 3, 3, 6};  // "a" is not a <0xNN> piece
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
  data.token_types = {2, 3, 3, 1};
  CHECK_NOTHROW(infer::make_tokenizer(data));
  data.model = "unigram";
  CHECK_THROWS_AS(infer::make_tokenizer(data), infer::Error);
}
