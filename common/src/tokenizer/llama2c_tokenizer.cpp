// llama2c_tokenizer.cpp: reads llama2.c's tokenizer.bin into a SentencePiece BPE tokenizer.
//
// Format (little-endian): int32 max_token_length, then for each of vocab_size ids: float32 score,
// int32 byte length, that many raw bytes (no terminator). The vocabulary size is not stored: it comes
// from the model's header. Layout of the ids (fixed by llama2.c's export): 0 <unk>, 1 BOS ("\n<s>\n"),
// 2 EOS ("\n</s>\n"), then the <0x00>..<0xFF> byte-fallback pieces, then the merged pieces. Unlike
// SentencePiece's own files, pieces spell a space as " " (the exporter replaced U+2581).
#include "infer/core/error.h"
#include "tokenizer_internal.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

namespace infer {
namespace {

// Bounds-checked little-endian reads over the file's bytes; every failure names the file and offset.
class TokenizerFileReader {
 public:
  TokenizerFileReader(const std::string& path, std::vector<char> bytes) : path_(path), bytes_(std::move(bytes)) {}

  template <typename T>
  T read(std::string_view field) {
    T value;
    std::memcpy(&value, take(sizeof(T), field).data(), sizeof(T));
    return value;
  }
  std::string_view take(size_t n_bytes, std::string_view field) {
    if (n_bytes > bytes_.size() - offset_) {
      fail("{}: truncated tokenizer file: {} needs {} bytes at offset {}, but the file has {} bytes", path_, field,
           n_bytes, offset_, bytes_.size());
    }
    std::string_view view(bytes_.data() + offset_, n_bytes);
    offset_ += n_bytes;
    return view;
  }
  size_t remaining() const { return bytes_.size() - offset_; }

 private:
  const std::string& path_;
  std::vector<char> bytes_;
  size_t offset_ = 0;
};

std::vector<char> read_whole_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) fail("{}: cannot open tokenizer file", path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) fail("{}: error while reading tokenizer file", path);
  return bytes;
}

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int vocab_size) {
  // The special ids 0..2 must exist; 2^22 is far above any real vocabulary.
  if (vocab_size < 3 || vocab_size > (1 << 22)) fail("{}: invalid vocab_size {} for a tokenizer", path, vocab_size);
  TokenizerFileReader reader(path, read_whole_file(path));

  const auto max_token_length = reader.read<int32_t>("max_token_length");
  if (max_token_length <= 0 || max_token_length > (1 << 16)) {
    fail("{}: invalid max_token_length {}", path, max_token_length);
  }

  TokenizerData data;
  data.model = "llama";
  data.tokens.reserve(vocab_size);
  data.scores.reserve(vocab_size);
  for (int id = 0; id < vocab_size; ++id) {
    const auto score = reader.read<float>("a token score");
    if (!std::isfinite(score)) fail("{}: token {} has a non-finite score", path, id);
    const auto length = reader.read<int32_t>("a token length");
    if (length <= 0 || length > max_token_length) {
      fail("{}: token {} has length {} (expected 1..max_token_length = {})", path, id, length, max_token_length);
    }
    data.tokens.emplace_back(reader.take(static_cast<size_t>(length), "token bytes"));
    data.scores.push_back(score);
  }
  // Leftover bytes mean the file holds more tokens than the model's vocabulary: a mismatched pair.
  if (reader.remaining() != 0) {
    fail("{}: {} bytes left after {} tokens: the tokenizer does not match the model's vocab_size", path,
         reader.remaining(), vocab_size);
  }

  data.unk_id = 0;
  data.bos_id = 1;
  data.eos_id = 2;
  data.add_bos = true;           // llama2.c's run.c always starts the prompt with BOS
  data.add_space_prefix = true;  // SentencePiece's add_dummy_prefix, on for Llama-2
  // token_types stays empty: the SentencePiece tokenizer infers them from the id layout above.
  return detail::make_sentencepiece_bpe(data, " ", /*match_special_text=*/false, path);
}

}  // namespace infer
