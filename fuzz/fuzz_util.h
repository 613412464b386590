// fuzz_util.h: what the libFuzzer targets share.
//
// The loaders take paths and mmap them (that is how real models arrive), so a loader target writes
// each input to a file in a per-process scratch directory and loads that: the fuzzer then drives the
// exact code a user runs, with no second, in-memory parsing path to keep in sync.
// A target returns normally for success and for infer::Error (bad input, cleanly refused); any other
// exception escapes and aborts, and a broken invariant calls FUZZ_REQUIRE, which aborts too, so
// libFuzzer records the input as a crash.
#pragma once

#include "infer/core/error.h"
#include "infer/model/kv_cache.h"
#include "infer/tokenizer/tokenizer.h"
#include "infer/model/transformer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace infer::fuzz {

// Aborts with a message when an invariant of the code under test does not hold.
#define FUZZ_REQUIRE(condition, ...)                                              \
  do {                                                                            \
    if (!(condition)) {                                                           \
      std::fprintf(stderr, "FUZZ_REQUIRE failed: %s (%s:%d)\n", #condition,       \
                   __FILE__, __LINE__);                                           \
      std::fprintf(stderr, __VA_ARGS__);                                          \
      std::fprintf(stderr, "\n");                                                 \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

// A scratch directory of this process ($TMPDIR or /tmp), removed at exit.
class ScratchDir {
 public:
  ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/infer_fuzz.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("fuzz: mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline const std::filesystem::path& scratch_dir() {
  static ScratchDir dir;
  return dir.path();
}

inline void write_file(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!out.good()) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// Splits an input into a leading part of at most 65535 bytes (its length in the first two bytes,
// little-endian) and the rest: how targets that need two files (config.json + a shard) or a
// parameter plus a file take both from one input. Missing bytes read as an empty part.
struct SplitInput {
  std::string_view head;
  std::string_view tail;
};
inline SplitInput split_input(const uint8_t* data, size_t size) {
  if (size < 2) return {{}, {}};
  size_t head_length = size_t(data[0]) | (size_t(data[1]) << 8);
  const auto* rest = reinterpret_cast<const char*>(data + 2);
  head_length = std::min(head_length, size - 2);
  return {std::string_view(rest, head_length), std::string_view(rest + head_length, size - 2 - head_length)};
}
// The inverse, for writing seeds.
inline std::string join_input(std::string_view head, std::string_view tail) {
  std::string out;
  out.push_back(char(head.size() & 0xff));
  out.push_back(char((head.size() >> 8) & 0xff));
  out.append(head);
  out.append(tail);
  return out;
}

// A number drawn from the whole input (FNV-1a), so that each input picks its own weight format, tokens and
// positions in exercise_model and libFuzzer can steer them.
inline uint64_t input_hash(const uint8_t* data, size_t size) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 1099511628211ull;
  return hash;
}

// What a chapter does with a model that loaded: convert the weights to a weight format picked by the input
// (f32, f16 or bf16; non-finite values are refused), run a prefill of one to three tokens at position 0 and
// then two one-token decode steps at the positions after it through a KV cache (every token id, position
// and cache row is in range by construction; ids come from the input), and build the embedded tokenizer
// and round-trip a short text through it. Everything a loader accepted must survive this or fail with
// infer::Error.
inline void exercise_model(const ModelFile& file, const uint8_t* data, size_t size) {
  static const auto backend = make_cpu_backend(1);
  uint64_t choice = input_hash(data, size);
  auto draw = [&choice](uint64_t n) {
    const uint64_t value = choice % n;
    choice = choice / n ^ (choice * 0x9E3779B97F4A7C15ull);
    return value;
  };
  const WeightFormat formats[] = {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16};
  const WeightFormat format = formats[draw(3)];
  const int vocab = file.config.vocab_size;
  const int prompt_length = 1 + int(draw(3));
  const int decode_steps = 2;
  const int positions = std::min(prompt_length + decode_steps, std::max(file.config.max_seq_len, 1));
  std::vector<int> tokens(size_t(prompt_length + decode_steps));
  for (int& token : tokens) token = int(draw(uint64_t(std::max(vocab, 1))));

  Weights weights(file, format, *backend);
  Transformer transformer(weights, *backend, prompt_length);
  KVCache cache(*backend, file.config, positions);
  std::vector<float> logits(static_cast<size_t>(vocab));
  const int prefill = std::min(prompt_length, positions);
  transformer.forward(std::span<const int>(tokens.data(), size_t(prefill)), 0, cache, logits.data());
  for (int position = prefill; position < positions; ++position)
    transformer.forward(std::span<const int>(&tokens[size_t(position)], 1), position, cache, logits.data());
  if (file.tokenizer) {
    const auto tokenizer = make_tokenizer(*file.tokenizer);
    const std::string text = "Once upon a time, 42 dragons\n";
    const std::vector<int> ids = tokenizer->encode(text, true);
    for (int id : ids) FUZZ_REQUIRE(id >= 0 && id < tokenizer->vocab_size(), "id %d outside [0, %d)", id, tokenizer->vocab_size());
    (void)tokenizer->decode(ids);
  }
}

}  // namespace infer::fuzz
