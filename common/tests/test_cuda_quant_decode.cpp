// test_cuda_quant_decode.cpp: the block decoding and the staging arithmetic of the CUDA quantized kernels
// (src/cuda/quant_block_decode.h), run on the CPU in every build.
//
// The header's functions are __host__ __device__ under nvcc and plain inline functions here: these are the
// lines the kernels run. So without a GPU (CI, this machine) we still check that every weight decodes to
// dequantize_row's value, that both block dot products equal dequantize + f32 dot within the fp32 bound, and
// that gemv v2's windows of 16-byte chunks stage exactly the bytes of the blocks they claim to (emulating its
// lanes: each chunk copied, each block decoded from the staged copy), for row lengths whose blocks start at
// every even offset inside a chunk and for matrices whose size is not a multiple of 16.
#include "quant_block_decode.h"

#include "infer/core/dtype.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

using namespace infer;
namespace quant = infer::cuda::quant;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24

template <DType kType>
std::vector<uint8_t> random_blocks(int n_blocks, uint64_t seed) {
  const std::vector<float> raw = test::random_floats(size_t(n_blocks) * 32, seed);
  std::vector<uint8_t> bytes(dtype_row_bytes(kType, int64_t(n_blocks) * 32));
  quantize_row(kType, raw.data(), bytes.data(), int64_t(n_blocks) * 32);
  return bytes;
}

// |d q_j| (Q8_0, Q4_0) or |d n_j| + |m| (Q4_1): the terms the factored sums add, for the error bound.
template <DType kType>
double term_magnitude(const uint8_t* block, int j) {
  if constexpr (kType == DType::Q4_1) {
    const float d = quant::f16_bits_to_float(quant::load_u16(block));
    const float m = quant::f16_bits_to_float(quant::load_u16(block + 2));
    const uint8_t packed = block[4 + (j & 15)];
    const int nibble = j < 16 ? (packed & 15) : (packed >> 4);
    return std::fabs(double(d) * nibble) + std::fabs(double(m));
  } else {
    return std::fabs(double(quant::block_value<kType>(block, j)));
  }
}

template <DType kType>
void check_block_functions() {
  constexpr int kBlocks = 200;
  constexpr int kBytes = quant::Block<kType>::kBytes;
  REQUIRE(size_t(kBytes) == dtype_block_bytes(kType));
  const std::vector<uint8_t> bytes = random_blocks<kType>(kBlocks, 11);
  std::vector<float> values(size_t(kBlocks) * 32);
  dequantize_row(kType, bytes.data(), values.data(), int64_t(values.size()));
  const std::vector<float> x = test::random_floats(values.size(), 12);
  int value_mismatches = 0, plain_failures = 0, factored_failures = 0;
  for (int b = 0; b < kBlocks; ++b) {
    const uint8_t* block = bytes.data() + size_t(b) * kBytes;
    double exact = 0.0, magnitude = 0.0;
    for (int j = 0; j < 32; ++j) {
      const float v = quant::block_value<kType>(block, j);
      const float expected = values[size_t(b) * 32 + j];
      // Q4_1's d * n + m may be contracted to one fma on one side only: one rounding apart at most.
      const double slack = kType == DType::Q4_1 ? 2 * kU * term_magnitude<kType>(block, j) : 0.0;
      if (!(std::fabs(double(v) - double(expected)) <= slack)) ++value_mismatches;
      exact += double(expected) * x[size_t(b) * 32 + j];
      magnitude += term_magnitude<kType>(block, j) * std::fabs(double(x[size_t(b) * 32 + j]));
    }
    // A 32-term fp32 sum (plus the scale multiply and the Q4_1 min term): within (32 + 3) * 2^-24 * magnitude.
    const double bound = (32 + 3) * kU * magnitude;
    if (!(std::fabs(quant::block_dot_plain<kType>(block, x.data() + size_t(b) * 32) - exact) <= bound)) ++plain_failures;
    if (!(std::fabs(quant::block_dot_factored<kType>(block, x.data() + size_t(b) * 32) - exact) <= bound))
      ++factored_failures;
  }
  CHECK(value_mismatches == 0);
  CHECK(plain_failures == 0);
  CHECK(factored_failures == 0);
}

// gemv v2 emulated on the CPU: per row, per window, the lanes' chunk copies then the lanes' block decodes.
template <DType kType>
void check_staged_gemv(int rows, int cols) {
  CAPTURE(rows);
  CAPTURE(cols);
  constexpr int kBytes = quant::Block<kType>::kBytes;
  const int n_blocks = cols / 32;
  const std::vector<uint8_t> bytes = random_blocks<kType>(rows * n_blocks, uint64_t(rows) * 131 + cols);
  const int64_t row_bytes = int64_t(n_blocks) * kBytes;
  const int64_t total = int64_t(rows) * row_bytes;
  const std::vector<float> x = test::random_floats(size_t(cols), 7);
  std::vector<float> row_values(static_cast<size_t>(cols));
  alignas(16) uint8_t stage[quant::kStageChunks * 16];
  int bad_plans = 0, bad_bytes = 0, bad_rows = 0;
  for (int r = 0; r < rows; ++r) {
    float sum = 0.0f;  // (one lane's order differs from the kernel's; the bound below covers any order)
    for (int first = 0; first < n_blocks; first += quant::kStageBlocks) {
      const int count = std::min(quant::kStageBlocks, n_blocks - first);
      const quant::StagePlan plan = quant::stage_plan(r, row_bytes, first, count, kBytes);
      if (plan.chunks > quant::kStageChunks || plan.offset < 0 || plan.offset > 14 || plan.offset % 2 != 0 ||
          (plan.first_chunk + plan.chunks) * 16 < r * row_bytes + int64_t(first + count) * kBytes)
        ++bad_plans;
      if (plan.chunks > quant::kStageChunks) continue;
      for (int i = 0; i < plan.chunks; ++i) quant::copy_chunk_bytes(bytes.data(), total, plan.first_chunk + i, stage + 16 * i);
      for (int b = 0; b < count; ++b) {
        const uint8_t* staged = stage + plan.offset + b * kBytes;
        const uint8_t* original = bytes.data() + r * row_bytes + int64_t(first + b) * kBytes;
        if (std::memcmp(staged, original, kBytes) != 0) ++bad_bytes;
        sum += quant::block_dot_factored<kType>(staged, x.data() + size_t(first + b) * 32);
      }
    }
    dequantize_row(kType, bytes.data() + r * row_bytes, row_values.data(), cols);
    double exact = 0.0, magnitude = 0.0;
    for (int c = 0; c < cols; ++c) {
      exact += double(row_values[size_t(c)]) * x[size_t(c)];
      const uint8_t* block = bytes.data() + r * row_bytes + int64_t(c / 32) * kBytes;
      magnitude += term_magnitude<kType>(block, c % 32) * std::fabs(double(x[size_t(c)]));
    }
    if (!(std::fabs(sum - exact) <= (cols + 3) * kU * magnitude)) ++bad_rows;
  }
  CHECK(bad_plans == 0);
  CHECK(bad_bytes == 0);
  CHECK(bad_rows == 0);
}

template <DType kType>
void check_staged_shapes() {
  // cols: 1 block; 3 (odd); 18 (SmolLM2's 576: rows start at every even offset mod 16); 64 (one whole
  // window); 65 and 130 (a second, partial window); 448 (Llama-3's 14336). Rows odd, so the matrix size
  // is not a multiple of 16 for most of them and the last chunk is partial.
  for (int n_blocks : {1, 3, 18, 64, 65, 130, 448})
    for (int rows : {1, 7, 9}) check_staged_gemv<kType>(rows, n_blocks * 32);
}

}  // namespace

TEST_CASE("cuda quant decode (host): block_value == dequantize_row, block dots == dequantize + dot, q8_0 q4_0 q4_1") {
  SUBCASE("q8_0") { check_block_functions<DType::Q8_0>(); }
  SUBCASE("q4_0") { check_block_functions<DType::Q4_0>(); }
  SUBCASE("q4_1") { check_block_functions<DType::Q4_1>(); }
}

TEST_CASE("cuda quant decode (host): gemv v2's 16-byte staging copies each window's blocks exactly") {
  CHECK(quant::kStageChunks * 16 >= 14 + quant::kStageBlocks * quant::kMaxBlockBytes);
  SUBCASE("q8_0") { check_staged_shapes<DType::Q8_0>(); }
  SUBCASE("q4_0") { check_staged_shapes<DType::Q4_0>(); }
  SUBCASE("q4_1") { check_staged_shapes<DType::Q4_1>(); }
}
