// test_quant_formats.cpp: Q5_0, Q5_1 and the K formats (Q4_K, Q5_K, Q6_K) against their definitions,
// and every tensor of a real Q4_K_M file against llama.cpp's own float32 dequantization (sha256).
#include "infer/core/dtype.h"
#include "infer/core/error.h"
#include "infer/formats/model_file.h"
#include "golden_util.h"
#include "infer/engine/generator.h"
#include "infer/tokenizer/tokenizer.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

using namespace infer;

namespace {

// ---- SHA-256 (FIPS 180-4), written out for the oracle comparison -------------------------------
class Sha256 {
 public:
  void update(const void* data, size_t n) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    total_ += n;
    while (n > 0) {
      const size_t take = std::min(n, size_t(64) - fill_);
      std::memcpy(buffer_ + fill_, bytes, take);
      fill_ += take;
      bytes += take;
      n -= take;
      if (fill_ == 64) {
        block(buffer_);
        fill_ = 0;
      }
    }
  }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = uint8_t(bits >> (56 - 8 * i));
    update(length, 8);
    std::string out;
    for (uint32_t word : h_) {
      char text[9];
      std::snprintf(text, sizeof(text), "%08x", word);
      out += text;
    }
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void block(const uint8_t* p) {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    const uint32_t add[8] = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) h_[i] += add[i];
  }
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t buffer_[64] = {};
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

// Random block bytes with finite, moderate f16 scales at the given offsets.
std::vector<uint8_t> random_blocks(DType type, int n_blocks, uint64_t seed, std::initializer_list<int> f16_offsets) {
  std::mt19937_64 rng(seed);
  const size_t bytes = dtype_block_bytes(type);
  std::vector<uint8_t> data(bytes * n_blocks);
  for (auto& b : data) b = uint8_t(rng());
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  for (int b = 0; b < n_blocks; ++b) {
    for (int offset : f16_offsets) {
      const uint16_t h = fp32_to_fp16(scale(rng));
      std::memcpy(data.data() + b * bytes + offset, &h, 2);
    }
  }
  return data;
}

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}
int bit(const uint8_t* bytes, int index) { return (bytes[index / 8] >> (index % 8)) & 1; }

// The K formats' 6-bit sub-block scale (what = 0) or min (what = 1) of sub-block s, read as the
// bit fields the format defines: scales[0..3] low 6 bits = scales 0-3, scales[4..7] low 6 bits =
// mins 0-3, scales[8..11] low/high nibbles = low 4 bits of scales/mins 4-7, whose top 2 bits are the
// top 2 bits of scales[0..3] (scales) and scales[4..7] (mins).
int k_scale_field(const uint8_t* scales, int s, int what) {
  if (s < 4) return scales[s + 4 * what] & 63;
  const int low4 = what == 0 ? (scales[s + 4] & 15) : (scales[s + 4] >> 4);
  return low4 | ((scales[s - 4 + 4 * what] >> 6) << 4);
}

// Weight i of a super-block, straight from the definitions in dtype_blocks.cpp's header.
float q4_k_weight(const uint8_t* block, int i) {
  const int chunk = i / 64, high = (i % 64) / 32, sub = i / 32;
  const uint8_t byte = block[16 + 32 * chunk + i % 32];
  const int q = high ? byte >> 4 : byte & 15;
  return f16_at(block) * float(k_scale_field(block + 4, sub, 0)) * float(q) -
         f16_at(block + 2) * float(k_scale_field(block + 4, sub, 1));
}
float q5_k_weight(const uint8_t* block, int i) {
  const int chunk = i / 64, high = (i % 64) / 32, sub = i / 32;
  const uint8_t byte = block[48 + 32 * chunk + i % 32];
  const int q = (high ? byte >> 4 : byte & 15) | (((block[16 + i % 32] >> (2 * chunk + high)) & 1) << 4);
  return f16_at(block) * float(k_scale_field(block + 4, sub, 0)) * float(q) -
         f16_at(block + 2) * float(k_scale_field(block + 4, sub, 1));
}
float q6_k_weight(const uint8_t* block, int i) {
  const int half = i / 128, quarter = (i % 128) / 32, l = i % 32;
  const uint8_t low_byte = block[64 * half + l + (quarter % 2) * 32];
  const int low = quarter < 2 ? low_byte & 15 : low_byte >> 4;
  const int high = (block[128 + 32 * half + l] >> (2 * quarter)) & 3;
  const auto scale = int8_t(block[192 + i / 16]);
  return f16_at(block + 208) * float(scale) * float((low | (high << 4)) - 32);
}

}  // namespace

TEST_CASE("quant formats: Q5_0 and Q5_1 hand-built blocks and the bit layout") {
  // Q5_0: d = 0.5, q_j = j (j < 16: bit 4 clear), q_{j+16} = 31 - j (bit 4 set): x = (q - 16) / 2.
  uint8_t block[24] = {};
  uint16_t d = fp32_to_fp16(0.5f);
  std::memcpy(block, &d, 2);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int low = j, high = 31 - j;
    block[6 + j] = uint8_t((low & 15) | ((high & 15) << 4));
    qh |= uint32_t(low >> 4) << j | uint32_t(high >> 4) << (j + 16);
  }
  std::memcpy(block + 2, &qh, 4);
  float out[32];
  dequantize_row(DType::Q5_0, block, out, 32);
  for (int j = 0; j < 16; ++j) {
    CHECK(out[j] == float(j - 16) * 0.5f);
    CHECK(out[j + 16] == float(15 - j) * 0.5f);
  }
  // Q5_1: d = 0.25, m = -2, the same q: x = q / 4 - 2.
  uint8_t block1[24] = {};
  d = fp32_to_fp16(0.25f);
  const uint16_t m = fp32_to_fp16(-2.0f);
  std::memcpy(block1, &d, 2);
  std::memcpy(block1 + 2, &m, 2);
  std::memcpy(block1 + 4, &qh, 4);
  std::memcpy(block1 + 8, block + 6, 16);
  dequantize_row(DType::Q5_1, block1, out, 32);
  for (int j = 0; j < 16; ++j) {
    CHECK(out[j] == float(j) * 0.25f - 2.0f);
    CHECK(out[j + 16] == float(31 - j) * 0.25f - 2.0f);
  }
  // Random blocks: weight i's 5-bit code read bit by bit from qs/qh.
  const auto q50 = random_blocks(DType::Q5_0, 7, 3, {0});
  std::vector<float> values(7 * 32);
  dequantize_row(DType::Q5_0, q50.data(), values.data(), 7 * 32);
  for (int b = 0; b < 7; ++b) {
    const uint8_t* p = q50.data() + 22 * b;
    for (int i = 0; i < 32; ++i) {
      const int nibble = i < 16 ? p[6 + i] & 15 : p[6 + i - 16] >> 4;
      const int q = nibble | bit(p + 2, i) << 4;
      CHECK(values[b * 32 + i] == float(q - 16) * f16_at(p));
    }
  }
}

TEST_CASE("quant formats: Q4_K, Q5_K, Q6_K dequantize to their definitions") {
  struct Case {
    DType type;
    std::initializer_list<int> f16_offsets;
    float (*weight)(const uint8_t*, int);
  };
  for (const Case& c : {Case{DType::Q4_K, {0, 2}, q4_k_weight}, Case{DType::Q5_K, {0, 2}, q5_k_weight},
                        Case{DType::Q6_K, {208}, q6_k_weight}}) {
    CAPTURE(dtype_name(c.type));
    const int n_blocks = 3;
    const auto data = random_blocks(c.type, n_blocks, 11, c.f16_offsets);
    std::vector<float> values(n_blocks * 256);
    dequantize_row(c.type, data.data(), values.data(), int64_t(values.size()));
    int mismatches = 0;
    for (int b = 0; b < n_blocks; ++b)
      for (int i = 0; i < 256; ++i)
        mismatches += values[b * 256 + i] != c.weight(data.data() + b * dtype_block_bytes(c.type), i);
    CHECK(mismatches == 0);
    // Rows must be whole super-blocks, and the engine does not write K formats.
    CHECK_THROWS_AS(dequantize_row(c.type, data.data(), values.data(), 128), Error);
    CHECK_THROWS_AS(quantize_row(c.type, values.data(), std::vector<uint8_t>(1024).data(), 256), Error);
  }
}

TEST_CASE("quant formats: every tensor of the Q4_K_M file dequantizes to llama.cpp's float32 bytes") {
  INFER_MODEL_FILE(model_path, "smollm2-oracle/SmolLM2-135M-Instruct.Q4_K_M.gguf");
  INFER_MODEL_FILE(tsv_path, "smollm2-oracle/Q4_K_M.dequantized.tsv");

  std::map<std::string, std::string> expected;  // name -> sha256
  std::ifstream tsv(tsv_path);
  for (std::string line; std::getline(tsv, line);) {
    std::istringstream fields(line);
    std::string name, type, shape, hash;
    std::getline(fields, name, '\t');
    std::getline(fields, type, '\t');
    std::getline(fields, shape, '\t');
    std::getline(fields, hash, '\t');
    expected[name] = hash;
  }
  REQUIRE(expected.size() == 272);

  const ModelFile file = load_gguf(model_path.string());
  REQUIRE(file.tensors.size() == expected.size());
  std::map<DType, int> matched_by_type;
  int matched = 0;
  std::vector<float> values;
  for (const auto& [name, tensor] : file.tensors) {
    CAPTURE(name);
    REQUIRE(expected.count(name) == 1);
    values.resize(size_t(tensor.n_elements()));
    dequantize_row(tensor.dtype, tensor.data, values.data(), tensor.n_elements());
    Sha256 sha;
    sha.update(values.data(), values.size() * sizeof(float));
    const bool same = sha.hex() == expected[name];
    CHECK(same);
    if (same) {
      ++matched;
      ++matched_by_type[tensor.dtype];
    }
  }
  MESSAGE(matched << " of " << expected.size() << " tensors match llama.cpp's dequantization");
  CHECK(matched == 272);
  CHECK(matched_by_type[DType::Q5_0] == 166);
  CHECK(matched_by_type[DType::Q4_K] == 16);
  CHECK(matched_by_type[DType::Q6_K] == 14);
  CHECK(matched_by_type[DType::Q8_0] == 15);
}

TEST_CASE("quant formats: the Q4_K_M file runs with its weights as stored (Q5_0, Q4_K, Q6_K, Q8_0)") {
  INFER_MODEL_FILE(model_path, "smollm2-oracle/SmolLM2-135M-Instruct.Q4_K_M.gguf");
  const ModelFile file = load_gguf(model_path.string());
  auto backend = make_cpu_backend(2);
  auto tokenizer = make_tokenizer(*file.tokenizer);
  const std::vector<int> prompt = tokenizer->encode("The capital of France is", tokenizer->add_bos_by_default());
  const auto native = test::greedy_tokens<CachedGenerator>(file, WeightFormat::Native, *backend, prompt, 6);
  const auto f32 = test::greedy_tokens<CachedGenerator>(file, WeightFormat::F32, *backend, prompt, 6);
  const std::string text = tokenizer->decode(native);
  MESSAGE("Q4_K_M greedy (native weights): \"" << text << "\"");
  CHECK(text.rfind(" Paris", 0) == 0);
  // The blocks as stored vs their f32 dequantization: only the activations' int8 rounding differs.
  CHECK(std::vector<int>(native.begin(), native.begin() + 4) == std::vector<int>(f32.begin(), f32.begin() + 4));
  Weights weights(file, WeightFormat::Native, *backend);
  CHECK(weights.layers()[0].wk.dtype == DType::Q5_0);
  CHECK(weights.layers()[3].w_down.dtype == DType::Q4_K);
  CHECK(weights.layers()[0].w_down.dtype == DType::Q6_K);
  CHECK(weights.token_embedding().dtype == DType::Q8_0);
}
