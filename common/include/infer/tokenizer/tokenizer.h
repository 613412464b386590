// tokenizer.h: text <-> token ids.
//
// Two algorithms, both behind one interface:
//  - SentencePieceBpe: SentencePiece-style BPE with byte fallback (llama2.c tokenizer.bin, GGUF
//    tokenizer.ggml.model = "llama"). Pieces carry scores; merging repeatedly joins the adjacent pair
//    whose merged piece has the highest score; characters with no piece fall back to <0xNN> tokens.
//  - ByteLevelBpe: GPT-2 style byte-level BPE (GGUF tokenizer.ggml.model = "gpt2", SmolLM2, Llama-3):
//    a regex pre-tokenizer splits the text, each chunk's bytes are mapped to printable code points,
//    then ranked merges are applied.
#pragma once

#include "infer/formats/model_file.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace infer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes text. add_bos prepends BOS (when the vocabulary has one). When parse_special is true,
  // control tokens written literally in the text (e.g. "<|im_start|>") become their ids.
  virtual std::vector<int> encode(std::string_view text, bool add_bos, bool parse_special = true) const = 0;
  // The bytes a token contributes to the output, given the token before it (-1 at the start of a
  // sequence; SentencePiece drops the leading space of the first piece after BOS or at the start).
  // Control tokens decode to "" unless render_special. Bytes of a multi-byte UTF-8 character may be
  // split across tokens. Throws infer::Error for an id outside the vocabulary.
  virtual std::string decode_token(int prev_token, int token, bool render_special = false) const = 0;
  // Concatenation of decode_token over the sequence.
  std::string decode(const std::vector<int>& tokens, bool render_special = false) const;

  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  // -1 if none
  virtual int eos_id() const = 0;  // -1 if none
  // True for ids that end generation (EOS, and e.g. <|im_end|> / <|eot_id|> when present).
  virtual bool is_end_of_generation(int token) const = 0;
  // Whether the model's own metadata asks for BOS at the start of a prompt.
  virtual bool add_bos_by_default() const = 0;
  // The piece text of an id as stored in the vocabulary (for debugging and tests); throws like decode_token.
  virtual const std::string& piece(int token) const = 0;
};

// llama2.c tokenizer.bin: int32 max_token_length, then per id: float32 score, int32 length, bytes.
// vocab_size comes from the model header. Throws infer::Error naming the file on malformed input.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int vocab_size);
// From a GGUF-embedded vocabulary: "llama" -> SentencePieceBpe, "gpt2" -> ByteLevelBpe.
std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerData& data);

// A Hugging Face tokenizer.json (byte-level BPE: GPT-2, SmolLM2, Llama-3 style) as the same
// TokenizerData a GGUF carries, for safetensors checkpoints. Throws infer::Error naming the file.
TokenizerData load_hf_tokenizer_json(const std::string& path);

// Applies the model's chat template for a single user turn when it is a known style (ChatML:
// "<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n"); returns the prompt unchanged otherwise.
std::string apply_chat_template(const TokenizerData& data, std::string_view user_prompt,
                                std::string_view system_prompt = "");

// The system turn a ChatML template writes when the conversation has none, when it is a plain literal
// (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"); "" otherwise.
std::string chat_template_default_system(std::string_view chat_template);

}  // namespace infer
