// tokenizer_internal.h: what the tokenizer source files share (private to common/src).
//
//   tokenizer.cpp          Tokenizer::decode, make_tokenizer, apply_chat_template, BpeTokenizerBase and the
//                          helpers below
//   sentencepiece_bpe.cpp  SentencePiece-style BPE with byte fallback (llama2.c tokenizer.bin, GGUF "llama")
//   byte_level_bpe.cpp     GPT-2 style byte-level BPE (GGUF "gpt2": SmolLM2, Llama-3)
//   llama2c_tokenizer.cpp  reads llama2.c tokenizer.bin into a TokenizerData
#pragma once

#include "infer/formats/model_file.h"
#include "infer/tokenizer/tokenizer.h"

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

// ---- What both algorithms keep and answer alike ------------------------------------------------------

// The vocabulary side both BPE tokenizers share: the pieces, the special ids, the end-of-generation set,
// and step 1 of encoding (BOS, then literal special tokens cut out of the text). Each algorithm
// derives from it and adds its own encode_*/decode_token.
class BpeTokenizerBase : public Tokenizer {
 public:
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }
  bool is_end_of_generation(int token) const override;
  bool add_bos_by_default() const override { return add_bos_by_default_; }
  const std::string& piece(int token) const override {
    check_token(token);
    return pieces_[token];
  }

 protected:
  // Validates `data` (validate_tokenizer_data, naming `source`) before anything else reads it.
  // match_special_text: whether encode(parse_special = true) cuts literal special tokens out of the text.
  BpeTokenizerBase(const TokenizerData& data, bool match_special_text, const std::string& source);

  void check_token(int token) const;
  // ids starts as [BOS] when add_bos (and the vocabulary has one); the text comes back as fragments:
  // cut at literal special tokens when parse_special and there are any, else the whole text (none
  // when it is empty).
  std::vector<TextFragment> begin_encode(std::string_view text, bool add_bos, bool parse_special,
                                         std::vector<int>& ids) const;

  std::vector<std::string> pieces_;  // as stored in the vocabulary
  bool add_bos_by_default_;
  int bos_id_, eos_id_, unk_id_;
  std::vector<int> end_of_generation_;
  SpecialTokenSplitter specials_;  // empty when literal special tokens are not recognised
};

// ---- The two algorithms (each in its own file) ------------------------------------------------------

// SentencePiece BPE. space_marker is what the pieces use for a space: "\xE2\x96\x81" (U+2581) in GGUF,
// " " in llama2.c's tokenizer.bin. match_special_text enables SpecialTokenSplitter for parse_special
// (off for llama2.c, whose control pieces are display strings like "\n<s>\n", never typed text).
std::unique_ptr<Tokenizer> make_sentencepiece_bpe(const TokenizerData& data, std::string_view space_marker,
                                                  bool match_special_text, const std::string& source);
std::unique_ptr<Tokenizer> make_byte_level_bpe(const TokenizerData& data, const std::string& source);

}  // namespace infer::detail
