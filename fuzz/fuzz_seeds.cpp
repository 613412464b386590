// fuzz_seeds: writes the seed corpus of every fuzz target, generated rather than committed.
//
//   fuzz_seeds OUT_DIR        # writes OUT_DIR/<target>/seed_* (scripts/fuzz.sh runs it before fuzzing)
//
// Loader seeds are tiny synthetic models (1 layer, dim 32) in every format and dtype the loaders
// read, plus truncated copies (the fuzzer finds the interesting cut points faster from there);
// tokenizer seeds are short texts with the flag byte of tokenizer_fuzz.h. Everything is a pure
// function of the code, so the corpus needs no storage in git and is a few hundred KB in all.
#include "infer/core/model_search.h"
#include "fuzz_util.h"
#include "infer/formats/synthetic.h"

#include <fmt/format.h>

#include <cstring>
#include <vector>

namespace fs = std::filesystem;
using namespace infer;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_seed(const fs::path& dir, const std::string& name, std::string_view bytes) {
  fuzz::write_file(dir / name, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// The seed and three truncated copies: inside the header, about halfway, one byte short.
void write_with_truncations(const fs::path& dir, const std::string& name, const std::string& bytes, size_t header_cut) {
  write_seed(dir, name, bytes);
  for (size_t cut : {std::min(header_cut, bytes.size() / 2), bytes.size() / 2, bytes.size() - 1})
    write_seed(dir, fmt::format("{}.cut{}", name, cut), std::string_view(bytes).substr(0, cut));
}

// The "micro" preset (1 layer, dim 32: one block of the 32-wide quantized formats per row) with a
// chosen vocabulary size.
ModelConfig seed_config(int vocab_size) {
  ModelConfig config = synthetic_preset("micro");
  config.vocab_size = vocab_size;
  return config;
}

// A llama2.c tokenizer.bin with the export's id layout: <unk>, BOS, EOS, 256 byte pieces, merges.
std::string synthetic_tokenizer_bin(int& vocab_size) {
  std::vector<std::pair<std::string, float>> pieces = {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  for (int byte = 0; byte < 256; ++byte) pieces.emplace_back(fmt::format("<0x{:02X}>", byte), 0.0f);
  float score = -1.0f;
  for (const char* piece : {" ", "a", "b", "o", "n", "on", " a", " on", "ce", "Once"}) pieces.emplace_back(piece, score--);
  vocab_size = int(pieces.size());
  std::string out;
  auto put = [&](const void* value, size_t n) { out.append(static_cast<const char*>(value), n); };
  const int32_t max_length = 16;
  put(&max_length, 4);
  for (const auto& [piece, piece_score] : pieces) {
    const auto length = int32_t(piece.size());
    put(&piece_score, 4);
    put(&length, 4);
    out += piece;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const fs::path out = argv[1];
    const fs::path work = out / ".work";
    for (const char* target : {"fuzz_gguf", "fuzz_safetensors", "fuzz_llama2c", "fuzz_llama2c_tokenizer",
                               "fuzz_sentencepiece", "fuzz_byte_level_bpe", ".work"})
      fs::create_directories(out / target);

    // ---- GGUF: every tensor type, with the synthetic byte-level vocabulary embedded ----------------
    const ModelConfig gguf_config = seed_config(279);  // the smallest vocabulary synthetic_tokenizer allows
    for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
      const fs::path file = work / "model.gguf";
      write_synthetic_gguf(file.string(), gguf_config, /*seed=*/1, dtype);
      write_with_truncations(out / "fuzz_gguf", fmt::format("seed_{}.gguf", dtype_name(dtype)), read_file(file), 64);
    }

    // ---- safetensors: config.json + shard in one input (fuzz_util.h split_input) --------------------
    const ModelConfig small_config = seed_config(32);
    for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
      const fs::path dir = work / fmt::format("st_{}", dtype_name(dtype));
      write_synthetic_safetensors(dir.string(), small_config, /*seed=*/2, dtype);
      const std::string joined = fuzz::join_input(read_file(dir / "config.json"), read_file(dir / "model.safetensors"));
      write_with_truncations(out / "fuzz_safetensors", fmt::format("seed_{}", dtype_name(dtype)), joined, 256);
    }

    // ---- llama2.c: legacy and version-1 headers -----------------------------------------------------
    for (int version : {0, 1}) {
      const fs::path file = work / "model.bin";
      write_synthetic_llama2c(file.string(), small_config, /*seed=*/3, version);
      write_with_truncations(out / "fuzz_llama2c", fmt::format("seed_v{}.bin", version), read_file(file), version == 0 ? 20 : 200);
    }

    // ---- llama2.c tokenizer.bin: the synthetic one, and stories260K's tok512 when present ------------
    int vocab_size = 0;
    const std::string tokenizer_bin = synthetic_tokenizer_bin(vocab_size);
    write_with_truncations(out / "fuzz_llama2c_tokenizer", "seed_synthetic",
                           fuzz::join_input(std::to_string(vocab_size), tokenizer_bin), 40);
    const fs::path tok512 = find_model_file("stories260K/tok512.bin");  // infer/core/model_search.h
    if (!tok512.empty()) write_seed(out / "fuzz_llama2c_tokenizer", "seed_tok512", fuzz::join_input("512", read_file(tok512)));

    // ---- tokenizers: flag byte (bit 0 add_bos, bit 1 parse_special, bit 2 decode, bits 3-4 pre) + text
    const std::vector<std::string> texts = {
        "Once upon a time, there was a little girl named Lily.",
        "  spaced   out  \n\n\ttabs 123 4567 it's they'll",
        "\xC3\xBCn\xC3\xAF\x63\xC3\xB6\x64\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\xA6\x99",  // "ünïcödé 中文 🦙"
        "invalid \x80\xFF\xC3 utf-8 \xE2\x96\x81 and a NUL \0 inside",
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    };
    int n = 0;
    for (const std::string& text : texts) {
      for (uint8_t flags : {0, 1, 3, 8 | 1, 16 | 2}) {
        const std::string input = std::string(1, char(flags)) + text;
        write_seed(out / "fuzz_sentencepiece", fmt::format("seed_{}", n), input);
        write_seed(out / "fuzz_byte_level_bpe", fmt::format("seed_{}", n), input);
        ++n;
      }
    }
    const std::string ids = std::string(1, char(4)) + std::string("\x01\x00\x05\x01\xff\x00\x10\x02", 8);
    write_seed(out / "fuzz_sentencepiece", "seed_decode", ids);
    write_seed(out / "fuzz_byte_level_bpe", "seed_decode", ids);

    fs::remove_all(work);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", error.what());
    return 1;
  }
  return 0;
}
