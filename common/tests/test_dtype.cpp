// test_dtype.cpp: fp16/bf16 conversion against plain references, and the ggml block formats.
#include "format_test_helpers.h"
#include "infer/core/dtype.h"
#include "infer/core/error.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

using namespace infer;

namespace {

// ---- plain references ----------------------------------------------------------------------------

// binary16 decoded straight from its definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024.
double reference_fp16_value(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double magnitude;
  if (exponent == 0) magnitude = std::ldexp(double(mantissa) / 1024.0, -14);
  else if (exponent == 31) magnitude = mantissa ? std::numeric_limits<double>::quiet_NaN() : INFINITY;
  else magnitude = std::ldexp(1.0 + double(mantissa) / 1024.0, exponent - 15);
  return sign ? -magnitude : magnitude;
}

// fp32 -> fp16 by search: the nearest of all finite binary16 values, ties to the even encoding,
// and inf from 65520 (= 65504 + half an ulp, which ties to the odd 0x7bff's even neighbour, inf) up.
uint16_t reference_fp32_to_fp16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double magnitude = std::fabs(double(f));
  if (magnitude >= 65520.0) return sign | 0x7c00;
  // Positive finite encodings 0..0x7bff are ordered by value, so binary search by value.
  int lo = 0, hi = 0x7bff;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (reference_fp16_value(uint16_t(mid)) <= magnitude ? lo : hi) = mid;
  }
  const double below = magnitude - reference_fp16_value(uint16_t(lo));
  const double above = reference_fp16_value(uint16_t(hi)) - magnitude;
  int pick = below < above ? lo : above < below ? hi : (lo % 2 == 0 ? lo : hi);
  if (reference_fp16_value(uint16_t(hi)) <= magnitude) pick = hi;
  return uint16_t(sign | pick);
}

uint16_t reference_fp32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t truncated = bits & 0xffff0000u;
  float down, up;
  const uint32_t up_bits = truncated + 0x10000u;
  std::memcpy(&down, &truncated, 4);
  std::memcpy(&up, &up_bits, 4);
  const double to_down = std::fabs(double(f) - double(down)), to_up = std::fabs(double(up) - double(f));
  if (to_down < to_up) return uint16_t(truncated >> 16);
  if (to_up < to_down) return uint16_t(up_bits >> 16);
  return ((truncated >> 16) & 1) ? uint16_t(up_bits >> 16) : uint16_t(truncated >> 16);
}

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

// ================================================================================================
// fp16 / bf16
// ================================================================================================

TEST_CASE("dtype: fp16_to_fp32 decodes every binary16 value exactly") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const double expected = reference_fp16_value(uint16_t(h));
    const float got = fp16_to_fp32(uint16_t(h));
    if (std::isnan(expected)) {
      REQUIRE(std::isnan(got));
    } else {
      REQUIRE(double(got) == expected);  // every binary16 value is exact in binary32
      REQUIRE(std::signbit(got) == bool(h & 0x8000));
    }
  }
}

TEST_CASE("dtype: fp32_to_fp16 special values") {
  CHECK(fp32_to_fp16(0.0f) == 0x0000);
  CHECK(fp32_to_fp16(-0.0f) == 0x8000);
  CHECK(fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(fp32_to_fp16(-2.0f) == 0xc000);
  CHECK(fp32_to_fp16(65504.0f) == 0x7bff);                        // largest finite
  CHECK(fp32_to_fp16(65519.0f) == 0x7bff);                        // below the rounding midpoint
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);                        // midpoint ties to even: inf
  CHECK(fp32_to_fp16(1e10f) == 0x7c00);                           // overflow -> inf
  CHECK(fp32_to_fp16(INFINITY) == 0x7c00);
  CHECK(fp32_to_fp16(-INFINITY) == 0xfc00);
  CHECK(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);           // smallest subnormal
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);           // half of it: tie to even (0)
  CHECK(fp32_to_fp16(std::ldexp(1.5f, -25)) == 0x0001);           // above half: rounds up
  CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);           // 1.5 steps: tie to even (2)
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -14)) == 0x0400);           // smallest normal
  CHECK(fp32_to_fp16(std::ldexp(1023.5f, -24)) == 0x0400);        // subnormal rounding up into the normals
  CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);    // tie between 1 and 1+2^-10: even (1)
  CHECK(fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);    // tie: even (1+2^-9)
  CHECK(fp32_to_fp16(from_bits(0x00000001)) == 0x0000);           // fp32 subnormal -> 0
}

TEST_CASE("dtype: fp32_to_fp16 matches the search reference on random values") {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns with exponents concentrated on the binary16 range (and a bit beyond).
    const uint32_t sign = uint32_t(rng() & 1) << 31;
    const uint32_t exponent = uint32_t(127 - 27 + rng() % 45);  // 2^-27 .. 2^17
    const uint32_t mantissa = uint32_t(rng()) & 0x7fffff;
    const float f = from_bits(sign | (exponent << 23) | mantissa);
    const uint16_t expected = reference_fp32_to_fp16(f);
    if (fp32_to_fp16(f) != expected) {
      FAIL("fp32_to_fp16(" << f << ") = " << fp32_to_fp16(f) << ", expected " << expected);
    }
  }
  // Every binary16 value survives fp16 -> fp32 -> fp16.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (std::isnan(fp16_to_fp32(uint16_t(h)))) continue;
    REQUIRE(fp32_to_fp16(fp16_to_fp32(uint16_t(h))) == h);
  }
}

TEST_CASE("dtype: bf16 conversion") {
  CHECK(fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(bf16_to_fp32(0x3f80) == 1.0f);
  CHECK(fp32_to_bf16(-0.0f) == 0x8000);
  CHECK(fp32_to_bf16(INFINITY) == 0x7f80);
  CHECK(fp32_to_bf16(from_bits(0x7f7fffff)) == 0x7f80);  // FLT_MAX rounds up to inf
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(from_bits(0x7f800001)))));  // signalling NaN must not become inf
  CHECK(fp32_to_bf16(from_bits(0x3f808000)) == 0x3f80);  // tie: even
  CHECK(fp32_to_bf16(from_bits(0x3f818000)) == 0x3f82);  // tie: even (up)
  std::mt19937_64 rng(12);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t bits = uint32_t(rng());
    if (((bits >> 23) & 0xff) >= 0xfe) continue;  // top binade: rounding up overflows (checked above)
    const float f = from_bits(bits);
    REQUIRE(fp32_to_bf16(f) == reference_fp32_to_bf16(f));
  }
}

// ================================================================================================
// Block formats
// ================================================================================================

TEST_CASE("dtype: sizes and names") {
  CHECK(dtype_block_bytes(DType::Q8_0) == 34);
  CHECK(dtype_block_bytes(DType::Q4_0) == 18);
  CHECK(dtype_block_bytes(DType::Q4_1) == 20);
  CHECK(dtype_row_bytes(DType::Q4_1, 96) == 60);
  CHECK(dtype_row_bytes(DType::F16, 7) == 14);
  CHECK(dtype_block_bytes(DType::Q5_0) == 22);
  CHECK(dtype_block_bytes(DType::Q5_1) == 24);
  CHECK(dtype_block_bytes(DType::Q4_K) == 144);
  CHECK(dtype_block_bytes(DType::Q5_K) == 176);
  CHECK(dtype_block_bytes(DType::Q6_K) == 210);
  CHECK(dtype_block_size(DType::Q6_K) == 256);
  CHECK(dtype_row_bytes(DType::Q4_K, 512) == 288);
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                     DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    DType parsed;
    REQUIRE(dtype_from_name(dtype_name(type), parsed));
    CHECK(parsed == type);
  }
  DType unused;
  CHECK_FALSE(dtype_from_name("q3_k", unused));
  std::vector<float> values(40, 1.0f);
  std::vector<uint8_t> out(100);
  CHECK_THROWS_AS(quantize_row(DType::Q8_0, values.data(), out.data(), 40), infer::Error);  // not whole blocks
}

TEST_CASE("dtype: dequantize hand-built blocks exactly") {
  // Q8_0: d = 0.5, q = j - 16  ->  x = (j - 16) / 2, exact small multiples of 1/2.
  {
    uint8_t block[34];
    const uint16_t d = fp32_to_fp16(0.5f);
    std::memcpy(block, &d, 2);
    for (int j = 0; j < 32; ++j) block[2 + j] = uint8_t(int8_t(j - 16));
    float out[32];
    dequantize_row(DType::Q8_0, block, out, 32);
    for (int j = 0; j < 32; ++j) CHECK(out[j] == float(j - 16) * 0.5f);
  }
  // Q4_0: d = 2, byte j = j | (15 - j) << 4  ->  weight j = (j - 8) * 2, weight j + 16 = (7 - j) * 2.
  {
    uint8_t block[18];
    const uint16_t d = fp32_to_fp16(2.0f);
    std::memcpy(block, &d, 2);
    for (int j = 0; j < 16; ++j) block[2 + j] = uint8_t(j | ((15 - j) << 4));
    float out[32];
    dequantize_row(DType::Q4_0, block, out, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(out[j] == float((j - 8) * 2));
      CHECK(out[j + 16] == float((7 - j) * 2));
    }
  }
  // Q4_1: d = 0.25, m = -1, byte j = j | (15 - j) << 4  ->  weight j = j/4 - 1, weight j + 16 = (15-j)/4 - 1.
  {
    uint8_t block[20];
    const uint16_t d = fp32_to_fp16(0.25f), m = fp32_to_fp16(-1.0f);
    std::memcpy(block, &d, 2);
    std::memcpy(block + 2, &m, 2);
    for (int j = 0; j < 16; ++j) block[4 + j] = uint8_t(j | ((15 - j) << 4));
    float out[32];
    dequantize_row(DType::Q4_1, block, out, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(out[j] == float(j) * 0.25f - 1.0f);
      CHECK(out[j + 16] == float(15 - j) * 0.25f - 1.0f);
    }
  }
}

TEST_CASE("dtype: quantize exact grids round-trip exactly") {
  // Integers in [-127, 127] including 127: d = 1 exactly, so Q8_0 stores them without error.
  std::vector<float> integers(64);
  for (int i = 0; i < 64; ++i) integers[i] = float((i * 37) % 255 - 127);
  integers[5] = 127.0f;
  integers[40] = -127.0f;
  std::vector<uint8_t> stored(dtype_row_bytes(DType::Q8_0, 64));
  quantize_row(DType::Q8_0, integers.data(), stored.data(), 64);
  std::vector<float> back(64);
  dequantize_row(DType::Q8_0, stored.data(), back.data(), 64);
  CHECK(back == integers);

  // Q4_1 on {0, 1, ..., 15} * 0.5 + 3: d = 0.5, m = 3 are exact in fp16, so the grid is exact.
  std::vector<float> grid(32);
  for (int i = 0; i < 32; ++i) grid[i] = float(i % 16) * 0.5f + 3.0f;
  std::vector<uint8_t> q41(dtype_row_bytes(DType::Q4_1, 32));
  quantize_row(DType::Q4_1, grid.data(), q41.data(), 32);
  std::vector<float> grid_back(32);
  dequantize_row(DType::Q4_1, q41.data(), grid_back.data(), 32);
  CHECK(grid_back == grid);

  // Q4_0 on {-8 .. 7} * 0.25 (extreme -2 -> d = 0.25): exact.
  for (int i = 0; i < 32; ++i) grid[i] = float(i % 16 - 8) * 0.25f;
  std::vector<uint8_t> q40(dtype_row_bytes(DType::Q4_0, 32));
  quantize_row(DType::Q4_0, grid.data(), q40.data(), 32);
  dequantize_row(DType::Q4_0, q40.data(), grid_back.data(), 32);
  CHECK(grid_back == grid);
}

TEST_CASE("dtype: quantize -> dequantize error within the step-size bound") {
  // Several value ranges (and an offset range, which matters for Q4_1's m), 4096 values each.
  struct Range {
    float lo, hi;
  };
  uint64_t seed = 100;
  for (Range range : {Range{-1.0f, 1.0f}, Range{-0.02f, 0.02f}, Range{0.5f, 3.0f}, Range{-300.0f, 100.0f}}) {
    const auto values = infer::test::random_floats(4096, seed++, range.lo, range.hi);
    for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1}) {
      CAPTURE(dtype_name(type));
      CAPTURE(range.lo);
      std::vector<uint8_t> stored(dtype_row_bytes(type, 4096));
      quantize_row(type, values.data(), stored.data(), 4096);
      infer::test::check_dequantized(type, stored.data(), values, "random row");
    }
  }
}
