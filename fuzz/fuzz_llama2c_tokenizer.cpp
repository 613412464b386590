// fuzz_llama2c_tokenizer: load_llama2c_tokenizer on arbitrary bytes. The vocabulary size is not in
// the file (it comes from the model header), so the input carries it: split_input's head is the
// vocab_size as decimal text, the tail is tokenizer.bin. What loads must encode and decode.
#include "fuzz_util.h"

#include <charconv>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [vocab_text, bytes] = infer::fuzz::split_input(data, size);
  int vocab_size = 0;
  std::from_chars(vocab_text.data(), vocab_text.data() + vocab_text.size(), vocab_size);
  const auto path = infer::fuzz::scratch_dir() / "tokenizer.bin";
  infer::fuzz::write_file(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  try {
    const auto tokenizer = infer::load_llama2c_tokenizer(path.string(), vocab_size);
    FUZZ_REQUIRE(tokenizer->vocab_size() == vocab_size, "vocab_size %d != %d", tokenizer->vocab_size(), vocab_size);
    const std::string text = "Once upon a time, 42 dragons \xE4\xB8\xAD\n";
    const std::vector<int> ids = tokenizer->encode(text, true);
    for (int id : ids) FUZZ_REQUIRE(id >= 0 && id < vocab_size, "id %d outside [0, %d)", id, vocab_size);
    for (int id = 0; id < vocab_size; ++id) (void)tokenizer->decode_token(id == 0 ? -1 : id - 1, id);
  } catch (const infer::Error&) {
  }
  return 0;
}
