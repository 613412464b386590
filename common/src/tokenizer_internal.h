// tokenizer_internal.h: what the tokenizer source files share (private to common/src).
//
//   tokenizer.cpp          Tokenizer::decode, make_tokenizer, apply_chat_template, and the helpers below
//   sentencepiece_bpe.cpp  SentencePiece-style BPE with byte fallback (llama2.c tokenizer.bin, GGUF "llama")
//   byte_level_bpe.cpp     GPT-2 style byte-level BPE (GGUF "gpt2": SmolLM2, Llama-3)
//   llama2c_tokenizer.cpp  reads llama2.c tokenizer.bin into a TokenizerData
#pragma once

#include "infer/model_file.h"
#include "infer/tokenizer.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace infer::detail {

// GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// Hash for unordered_map<std::string, ...> that also accepts std::string_view keys in find(), so the
// encoders can look up a slice of the input without building a temporary std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};

// Number of bytes of the UTF-8 character that starts at text[0], or 1 when the bytes there are not a
// valid UTF-8 sequence (so an invalid byte becomes a one-byte "character" of its own and survives
// encode/decode unchanged). text must be non-empty.
size_t utf8_char_length(std::string_view text);

// ---- Special tokens written literally in the text ---------------------------------------------------

// A piece of the input: either raw text to run through the tokenizer, or a special token's id.
struct TextFragment {
  std::string_view text;  // empty for a special token
  int special_id = -1;    // >= 0 for a special token
};

// Splits text at literal occurrences of special tokens ("<|im_start|>"), longest match first, so that
// the tokenizer can emit them as single ids instead of encoding their characters.
class SpecialTokenSplitter {
 public:
  SpecialTokenSplitter() = default;
  // The control (3) and user-defined (4) tokens of the vocabulary; empty texts are ignored.
  explicit SpecialTokenSplitter(const TokenizerData& data);

  bool empty() const { return by_first_byte_count_ == 0; }
  std::vector<TextFragment> split(std::string_view text) const;

 private:
  struct Special {
    std::string text;
    int id;
  };
  // Candidates per first byte, longest first: at a position only the tokens starting with that byte
  // can match, and the first one that does is the longest.
  std::vector<std::vector<Special>> by_first_byte_ = std::vector<std::vector<Special>>(256);
  size_t by_first_byte_count_ = 0;
};

// The ids that end generation: eos, plus the chat-turn terminators some vocabularies add.
std::vector<int> end_of_generation_ids(const TokenizerData& data);

// Checks the fields both algorithms rely on (sizes agree, ids in range) and throws infer::Error naming
// `source` (a file name, or a description of where the data came from) otherwise.
void validate_tokenizer_data(const TokenizerData& data, const std::string& source);

// ---- The two algorithms (each in its own file) ------------------------------------------------------

// SentencePiece BPE. space_marker is what the pieces use for a space: "\xE2\x96\x81" (U+2581) in GGUF,
// " " in llama2.c's tokenizer.bin. match_special_text enables SpecialTokenSplitter for parse_special
// (off for llama2.c, whose control pieces are display strings like "\n<s>\n", never typed text).
std::unique_ptr<Tokenizer> make_sentencepiece_bpe(const TokenizerData& data, std::string_view space_marker,
                                                  bool match_special_text, const std::string& source);
std::unique_ptr<Tokenizer> make_byte_level_bpe(const TokenizerData& data, const std::string& source);

}  // namespace infer::detail
