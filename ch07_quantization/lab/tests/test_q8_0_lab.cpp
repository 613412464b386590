// test_q8_0_lab.cpp: ch07 lab, exercise 1 (q8_0) and exercise 2 (dot). Each test's first word is its
// exercise; scripts/lab.sh ch07 grades them. They pass on the reference engine and fail on the stubs.
#include "infer/core/dtype.h"
#include "infer/cpu/quant_kernels.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace infer;

namespace {

// The GGUF reference quantizer, written out here: d = max|x|/127 (fp16), q = round(x * (1/d)).
std::vector<uint8_t> expected_q8_0(const std::vector<float>& x) {
  std::vector<uint8_t> out(x.size() / 32 * 34);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float max_abs = 0.0f;
    for (int j = 0; j < 32; ++j) max_abs = std::max(max_abs, std::fabs(x[b * 32 + j]));
    const float d = max_abs / 127.0f, inverse = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t h = fp32_to_fp16(d);
    std::memcpy(&out[b * 34], &h, 2);
    for (int j = 0; j < 32; ++j) out[b * 34 + 2 + j] = uint8_t(int8_t(std::round(x[b * 32 + j] * inverse)));
  }
  return out;
}

// Q8_0 rows built byte by byte (random codes in [-127, 127], random fp16 scales), so the dot tests do
// not depend on exercise 1; decoded(...) reads weight i of such a row from its definition.
std::vector<uint8_t> random_q8_0_rows(int rows, int cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> bytes(size_t(rows) * cols / 32 * 34);
  for (size_t b = 0; b < bytes.size() / 34; ++b) {
    const uint16_t d = fp32_to_fp16(0.001f + 0.02f * float(rng() % 1000) / 1000.0f);
    std::memcpy(&bytes[b * 34], &d, 2);
    for (int j = 0; j < 32; ++j) bytes[b * 34 + 2 + j] = uint8_t(int8_t(int(rng() % 255) - 127));
  }
  return bytes;
}
float decoded(const uint8_t* row, int i) {
  uint16_t d;
  std::memcpy(&d, row + (i / 32) * 34, 2);
  return fp16_to_fp32(d) * float(int8_t(row[(i / 32) * 34 + 2 + i % 32]));
}

}  // namespace

TEST_CASE("q8_0: quantize gives the GGUF reference bytes") {
  auto x = test::random_floats(32 * 9, 3, -2.0f, 2.0f);
  for (int j = 32; j < 64; ++j) x[j] = 0.0f;  // an all-zero block
  x[70] = 5.0f;                                // a block whose largest weight is one outlier
  std::vector<uint8_t> got(x.size() / 32 * 34);
  quantize_row(DType::Q8_0, x.data(), got.data(), int64_t(x.size()));
  const auto expected = expected_q8_0(x);
  int wrong_scales = 0, wrong_codes = 0;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    wrong_scales += std::memcmp(&got[b * 34], &expected[b * 34], 2) != 0;
    for (int j = 0; j < 32; ++j) wrong_codes += got[b * 34 + 2 + j] != expected[b * 34 + 2 + j];
  }
  CHECK_MESSAGE(wrong_scales == 0, "blocks whose fp16 scale d (bytes 0-1) differs from max|x|/127");
  CHECK_MESSAGE(wrong_codes == 0, "int8 codes (bytes 2-33) that differ from round(x / d)");
}

TEST_CASE("q8_0: dequantize reads d * q from the stored block") {
  std::vector<uint8_t> block(34);
  const uint16_t d = fp32_to_fp16(0.25f);
  std::memcpy(block.data(), &d, 2);
  for (int j = 0; j < 32; ++j) block[2 + j] = uint8_t(int8_t(j * 8 - 127));
  float out[32];
  dequantize_row(DType::Q8_0, block.data(), out, 32);
  for (int j = 0; j < 32; ++j) CHECK(out[j] == 0.25f * float(j * 8 - 127));
}

TEST_CASE("q8_0: quantize -> dequantize within half a step (d/2) of every weight") {
  const auto x = test::random_floats(32 * 16, 8, -3.0f, 3.0f);
  std::vector<uint8_t> stored(x.size() / 32 * 34);
  std::vector<float> back(x.size());
  quantize_row(DType::Q8_0, x.data(), stored.data(), int64_t(x.size()));
  dequantize_row(DType::Q8_0, stored.data(), back.data(), int64_t(x.size()));
  int outside = 0;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float max_abs = 0.0f;
    for (int j = 0; j < 32; ++j) max_abs = std::max(max_abs, std::fabs(x[b * 32 + j]));
    const float d = max_abs / 127.0f;
    // half a step, plus the error of storing d in fp16 (at most 127 * |d - fp16(d)|)
    const float bound = 0.5f * d + 127.0f * std::fabs(d - fp16_to_fp32(fp32_to_fp16(d))) + 1e-6f;
    for (int j = 0; j < 32; ++j) outside += std::fabs(back[b * 32 + j] - x[b * 32 + j]) > bound;
  }
  CHECK(outside == 0);
}

TEST_CASE("dot: the integer dot product approximates the float dot within the activations' rounding") {
  const int rows = 7, cols = 32 * 5;
  const auto x = test::random_floats(cols, 12, -2.0f, 2.0f);
  const std::vector<uint8_t> stored = random_q8_0_rows(rows, cols, 11);
  cpu::QuantizedActivations q;
  cpu::quantize_activations(x.data(), 1, cols, q);
  std::vector<float> row(cols);
  for (int r = 0; r < rows; ++r) {
    const uint8_t* bytes = stored.data() + r * (cols / 32 * 34);
    for (int i = 0; i < cols; ++i) row[i] = decoded(bytes, i);
    double exact = 0.0, bound = 1e-5;
    for (int i = 0; i < cols; ++i) {
      exact += double(row[i]) * x[i];
      bound += std::fabs(double(row[i])) * 0.5 * q.d[size_t(i / 32)] + 1e-6 * std::fabs(double(row[i]) * x[i]);
    }
    const float got = cpu::dot_q8_0_reference(bytes, q.q.data(), q.d.data(), cols / 32);
    CHECK_MESSAGE(std::fabs(got - exact) <= bound, "row " << r << ": got " << got << ", the float dot is " << exact);
  }
}

TEST_CASE("dot: the reference path equals the SIMD kernels bit for bit (the lane order)") {
  const int rows = 9, cols = 32 * 7, n = 3;  // an odd number of blocks: the last even block alone
  const auto x = test::random_floats(size_t(n) * cols, 22, -2.0f, 2.0f);
  const std::vector<uint8_t> stored = random_q8_0_rows(rows, cols, 21);
  const Matrix m{DType::Q8_0, rows, cols, stored.data()};
  std::vector<float> reference(size_t(n) * rows);
  cpu::gemm_quantized(m, x.data(), reference.data(), n, 1, cpu::QuantPath::Reference, cpu::ActivationBits::Int8);
  int compared = 0;
  for (cpu::QuantPath path : {cpu::QuantPath::Avx2, cpu::QuantPath::Avx512Vnni}) {
    if (!cpu::quant_path_supported(path)) continue;
    ++compared;
    std::vector<float> simd(reference.size());
    cpu::gemm_quantized(m, x.data(), simd.data(), n, 1, path, cpu::ActivationBits::Int8);
    int different = 0;
    for (size_t i = 0; i < simd.size(); ++i) different += std::memcmp(&simd[i], &reference[i], 4) != 0;
    CHECK_MESSAGE(different == 0, different << " outputs differ from the " << cpu::quant_path_name(path)
                                            << " kernel: check the lane order and the fma in the header");
  }
  if (compared == 0) INFER_SKIP("no SIMD path on this CPU to compare with");
}
