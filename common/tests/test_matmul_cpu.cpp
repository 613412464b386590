// test_matmul_cpu.cpp: the CPU GEMV (decode, n = 1) and GEMM (n > 1) against a float64 reference.
//
// Seeded random weights and inputs over shapes whose widths are not multiples of 16 (the dot's lane
// count), in f32 and f16; the f16 GEMV's v2_fused must equal v1_scratch exactly (same lanes, same
// order), and the GEMV must equal the GEMM's row for the same token exactly (what keeps the KV-cache
// decoder's tokens identical to the naive decoder's). The GEMM versions (v1_dot, v2_register_blocked,
// v3_packed_prefetch and their plain-C++ tiles) must give those same bits for every token, in f32, f16
// and bf16, over token counts, row counts and widths that are not multiples of the 4 x 4 / 6 x 4
// tiles or the 16 lanes, and (v3) over several token blocks. v4 (f32 in 16-row panels) has its own order,
// one fma chain per output: it must equal that chain written as a plain loop, for every n (GEMV and GEMM).
#include "infer/cpu/cpu_kernels.h"
#include "infer/core/dtype.h"
#include "infer/core/interleaved.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace infer;

TEST_CASE("cpu matmul: GEMV and GEMM match a float64 reference, f32 and f16") {
  const int shapes[][2] = {{1, 1}, {5, 17}, {33, 64}, {64, 100}, {192, 576}, {7, 1539}};
  for (const auto& [rows, cols] : shapes) {
    for (DType dtype : {DType::F32, DType::F16}) {
      CAPTURE(rows);
      CAPTURE(cols);
      CAPTURE(dtype_name(dtype));
      const size_t count = size_t(rows) * cols;
      const auto values = test::random_floats(count, uint64_t(rows * 7919 + cols));
      std::vector<uint8_t> bytes(dtype_row_bytes(dtype, int64_t(count)));
      std::vector<double> exact(count);  // the weights as the kernel sees them (after fp16 rounding)
      for (size_t i = 0; i < count; ++i) {
        if (dtype == DType::F32) {
          std::memcpy(bytes.data() + 4 * i, &values[i], 4);
          exact[i] = values[i];
        } else {
          const uint16_t half = fp32_to_fp16(values[i]);
          std::memcpy(bytes.data() + 2 * i, &half, 2);
          exact[i] = fp16_to_fp32(half);
        }
      }
      const Matrix weight{dtype, rows, cols, bytes.data()};
      constexpr int n = 3;
      const auto x = test::random_floats(size_t(n) * cols, 99);
      std::vector<float> gemm_out(size_t(n) * rows), gemv_out(rows), gemv_v1(rows);
      cpu::matmul(weight, x.data(), gemm_out.data(), n, 2);
      for (int t = 0; t < n; ++t) {
        cpu::matmul(weight, x.data() + size_t(t) * cols, gemv_out.data(), 1, 2);
        for (int r = 0; r < rows; ++r) {
          double reference = 0.0, magnitude = 0.0;
          for (int c = 0; c < cols; ++c) {
            reference += exact[size_t(r) * cols + c] * x[size_t(t) * cols + c];
            magnitude += std::abs(exact[size_t(r) * cols + c] * x[size_t(t) * cols + c]);
          }
          // fp32 accumulation of `cols` products: error <= ~cols * 2^-24 * sum|terms|; 1e-6 per
          // term of magnitude is above that bound for these widths (<= 1539 * 6e-8 = 9.2e-5 * ...).
          const double tolerance = 1e-6 * magnitude * std::sqrt(double(cols)) + 1e-7;
          CHECK(std::abs(gemv_out[r] - reference) <= tolerance);
          CHECK(gemv_out[r] == gemm_out[size_t(t) * rows + r]);  // same dot, bit for bit
        }
        if (dtype == DType::F16) {
          cpu::gemv_v1_scratch(weight, x.data() + size_t(t) * cols, gemv_v1.data(), 2);
          CHECK(gemv_v1 == gemv_out);
        }
      }
    }
  }
}

namespace {

// Seeded random weights of `dtype` (rows, cols): the raw bytes the kernels read.
std::vector<uint8_t> random_weights(DType dtype, int rows, int cols, uint64_t seed) {
  const size_t count = size_t(rows) * cols;
  const auto values = test::random_floats(count, seed);
  std::vector<uint8_t> bytes(dtype_row_bytes(dtype, int64_t(count)));
  for (size_t i = 0; i < count; ++i) {
    if (dtype == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t half = dtype == DType::F16 ? fp32_to_fp16(values[i]) : fp32_to_bf16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &half, 2);
    }
  }
  return bytes;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("cpu GEMM: v2_register_blocked (intrinsics and portable) equals v1 and the GEMV bit for bit") {
  // Exact equality, no tolerance: each (token, row) must be dot_f32's arithmetic in dot_f32's order.
  // Edges of the 4 x 4 tile (n, rows = 1..5 mod 4) and of the 16 lanes (cols = 15, 16, 17, ...).
  const int token_counts[] = {2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 37};
  const int row_counts[] = {1, 2, 3, 4, 5, 7, 16, 17, 31, 33, 70};
  const int widths[] = {1, 7, 15, 16, 17, 31, 32, 33, 100, 255, 256, 300};
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (int rows : row_counts) {
      for (int cols : widths) {
        const auto bytes = random_weights(dtype, rows, cols, uint64_t(rows * 1000 + cols));
        const Matrix weight{dtype, rows, cols, bytes.data()};
        for (int n : token_counts) {
          CAPTURE(dtype_name(dtype));
          CAPTURE(n);
          CAPTURE(rows);
          CAPTURE(cols);
          const auto x = test::random_floats(size_t(n) * cols, uint64_t(n * 31 + cols));
          std::vector<float> v1(size_t(n) * rows), v2(v1.size()), portable(v1.size()), gemv(v1.size());
          cpu::gemm_v1_dot(weight, x.data(), v1.data(), n, 2);
          cpu::gemm_v2_register_blocked(weight, x.data(), v2.data(), n, 2);
          cpu::gemm_v2_register_blocked_portable(weight, x.data(), portable.data(), n, 2);
          for (int t = 0; t < n; ++t) cpu::matmul(weight, x.data() + size_t(t) * cols, gemv.data() + size_t(t) * rows, 1, 2);
          CHECK(same_bits(v1, gemv));
          CHECK(same_bits(v2, v1));
          CHECK(same_bits(portable, v1));
        }
      }
    }
  }
  // Seeded random shapes over the whole ranges (n 2..37, rows 1..70, cols 1..300), one thread too.
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 2 + int(rng() % 36), rows = 1 + int(rng() % 70), cols = 1 + int(rng() % 300);
    const DType dtype = trial % 3 == 0 ? DType::F32 : trial % 3 == 1 ? DType::F16 : DType::BF16;
    const int threads = 1 + trial % 2;
    CAPTURE(dtype_name(dtype));
    CAPTURE(n);
    CAPTURE(rows);
    CAPTURE(cols);
    const auto bytes = random_weights(dtype, rows, cols, rng());
    const Matrix weight{dtype, rows, cols, bytes.data()};
    const auto x = test::random_floats(size_t(n) * cols, rng(), -4.0f, 4.0f);
    std::vector<float> v1(size_t(n) * rows), v2(v1.size()), portable(v1.size()), gemv(v1.size());
    cpu::gemm_v1_dot(weight, x.data(), v1.data(), n, threads);
    cpu::gemm_v2_register_blocked(weight, x.data(), v2.data(), n, threads);
    cpu::gemm_v2_register_blocked_portable(weight, x.data(), portable.data(), n, threads);
    for (int t = 0; t < n; ++t) cpu::matmul(weight, x.data() + size_t(t) * cols, gemv.data() + size_t(t) * rows, 1, threads);
    CHECK(same_bits(v1, gemv));
    CHECK(same_bits(v2, v1));
    CHECK(same_bits(portable, v1));
  }
}

TEST_CASE("cpu GEMM: v3_packed_prefetch (intrinsics and portable) equals v2 and the GEMV bit for bit") {
  // Exact equality again. Edges of the 6 x 4 tile (n = 2..13, rows = 1..9 mod 4), of the 16 lanes
  // (cols 1, 15, 16, 17, ...) and of the token blocks: at cols = 4100 a block holds 18 tokens, so
  // n = 40 runs three blocks, the last one short.
  struct Shape {
    int n, rows, cols;
  };
  std::vector<Shape> shapes;
  for (int n : {2, 3, 5, 6, 7, 11, 12, 13})
    for (int rows : {1, 3, 4, 5, 8, 9})
      for (int cols : {1, 15, 16, 17, 48, 100}) shapes.push_back({n, rows, cols});
  shapes.push_back({40, 9, 4100});
  shapes.push_back({64, 12, 576});
  std::mt19937_64 rng(909);
  for (int trial = 0; trial < 60; ++trial)
    shapes.push_back({2 + int(rng() % 70), 1 + int(rng() % 40), 1 + int(rng() % 400)});
  int index = 0;
  for (const Shape& s : shapes) {
    const DType dtype = index % 3 == 0 ? DType::F32 : index % 3 == 1 ? DType::F16 : DType::BF16;
    const int threads = 1 + index % 2;
    ++index;
    for (DType d : {DType::F32, dtype}) {
      CAPTURE(dtype_name(d));
      CAPTURE(s.n);
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      CAPTURE(threads);
      const auto bytes = random_weights(d, s.rows, s.cols, uint64_t(s.rows * 7919 + s.cols));
      const Matrix weight{d, s.rows, s.cols, bytes.data()};
      const auto x = test::random_floats(size_t(s.n) * s.cols, uint64_t(s.n * 131 + s.cols), -4.0f, 4.0f);
      std::vector<float> v2(size_t(s.n) * s.rows), v3(v2.size()), portable(v2.size()), gemv(v2.size()), dispatched(v2.size());
      cpu::gemm_v2_register_blocked(weight, x.data(), v2.data(), s.n, threads);
      cpu::gemm_v3_packed_prefetch(weight, x.data(), v3.data(), s.n, threads);
      cpu::gemm_v3_packed_prefetch_portable(weight, x.data(), portable.data(), s.n, threads);
      cpu::matmul(weight, x.data(), dispatched.data(), s.n, threads);
      for (int t = 0; t < s.n; ++t)
        cpu::matmul(weight, x.data() + size_t(t) * s.cols, gemv.data() + size_t(t) * s.rows, 1, threads);
      CHECK(same_bits(v2, gemv));
      CHECK(same_bits(v3, gemv));
      CHECK(same_bits(portable, gemv));
      CHECK(same_bits(dispatched, gemv));
    }
  }
}

namespace {

// y[t][r] as GEMM v4 defines it (matmul_panels_cpu.cpp): one chain of fused multiply-adds over the columns
// in order, from 0. The readable reference the panel kernels must equal bit for bit.
float sequential_fma_dot(const float* w, const float* x, int cols) {
  float sum = 0.0f;
#if defined(__FMA__) || defined(__AVX512F__)
  for (int k = 0; k < cols; ++k) sum = std::fma(w[k], x[k], sum);
#else
  for (int k = 0; k < cols; ++k) sum = w[k] * x[k] + sum;
#endif
  return sum;
}

}  // namespace

TEST_CASE("cpu GEMM v4: f32 in 16-row panels (intrinsics and portable, GEMV and GEMM) equals a sequential fma chain") {
  // Edges of the 16-row panels and of the 3 x 8 (GEMM) and 4 x 1 (GEMV) tiles: rows 1..65 around multiples of
  // 16 and 48 and 64; n = 1..17 around 8 and a 64-sequence batch; widths that are not multiples of anything;
  // at 1536 columns a token block holds 64 tokens, so n = 500 runs 8 blocks, the last one short.
  struct Shape {
    int n, rows, cols;
  };
  std::vector<Shape> shapes;
  for (int n : {1, 2, 7, 8, 9, 17})
    for (int rows : {1, 15, 16, 17, 47, 48, 49, 63, 64, 65})
      for (int cols : {1, 5, 16, 100}) shapes.push_back({n, rows, cols});
  shapes.push_back({64, 192, 576});
  shapes.push_back({500, 20, 1536});
  std::mt19937_64 rng(4242);
  for (int trial = 0; trial < 40; ++trial)
    shapes.push_back({1 + int(rng() % 80), 1 + int(rng() % 150), 1 + int(rng() % 700)});
  int index = 0;
  for (const Shape& s : shapes) {
    const int threads = 1 + index++ % 2;
    CAPTURE(s.n);
    CAPTURE(s.rows);
    CAPTURE(s.cols);
    CAPTURE(threads);
    const auto w = test::random_floats(size_t(s.rows) * s.cols, uint64_t(s.rows * 7919 + s.cols));
    const InterleavedShape shape = interleaved_shape(DType::F32, s.rows, s.cols);
    std::vector<float> panels(shape.total_bytes() / sizeof(float));
    interleave_rows(DType::F32, w.data(), s.rows, s.cols, panels.data());
    const Matrix weight{DType::F32, s.rows, s.cols, panels.data(), true};
    CHECK(weight.n_bytes() == size_t((s.rows + 15) / 16) * 16 * s.cols * sizeof(float));
    const auto x = test::random_floats(size_t(s.n) * s.cols, uint64_t(s.n * 131 + s.cols), -4.0f, 4.0f);
    std::vector<float> expected(size_t(s.n) * s.rows), v4(expected.size()), portable(expected.size()),
        dispatched(expected.size()), gemv(expected.size());
    for (int t = 0; t < s.n; ++t)
      for (int r = 0; r < s.rows; ++r)
        expected[size_t(t) * s.rows + r] = sequential_fma_dot(w.data() + size_t(r) * s.cols, x.data() + size_t(t) * s.cols, s.cols);
    cpu::gemm_v4_panels(weight, x.data(), v4.data(), s.n, threads);
    cpu::gemm_v4_panels_portable(weight, x.data(), portable.data(), s.n, threads);
    cpu::matmul(weight, x.data(), dispatched.data(), s.n, threads);
    for (int t = 0; t < s.n; ++t)
      cpu::matmul(weight, x.data() + size_t(t) * s.cols, gemv.data() + size_t(t) * s.rows, 1, threads);
    CHECK(same_bits(v4, expected));
    CHECK(same_bits(portable, expected));
    CHECK(same_bits(dispatched, expected));
    CHECK(same_bits(gemv, expected));
    // And the chain is a correct dot product: within fp32 accumulation error of a float64 sum.
    double worst = 0.0;
    for (int t = 0; t < s.n; ++t)
      for (int r = 0; r < s.rows; ++r) {
        double exact = 0.0, magnitude = 0.0;
        for (int k = 0; k < s.cols; ++k) {
          const double term = double(w[size_t(r) * s.cols + k]) * x[size_t(t) * s.cols + k];
          exact += term;
          magnitude += std::abs(term);
        }
        // A sequential fp32 sum of `cols` terms errs by at most ~cols * 2^-24 * sum|terms|.
        const double bound = s.cols * 6.0e-8 * magnitude + 1e-30;
        worst = std::max(worst, std::abs(double(v4[size_t(t) * s.rows + r]) - exact) / bound);
      }
    CHECK(worst <= 1.0);
    // Every row reads back as it was stored (the embedding lookup of a panel matrix).
    std::vector<float> row(s.cols);
    for (int r = 0; r < s.rows; r += std::max(1, s.rows / 5)) {
      dequantize_interleaved_row(shape, panels.data(), r, row.data());
      CHECK(std::memcmp(row.data(), w.data() + size_t(r) * s.cols, s.cols * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("cpu GEMM v4: matrices sharing x (Q, K, V) in one call give each matrix's own bits") {
  const int cols = 200;
  const int rows[3] = {80, 24, 24};
  std::vector<std::vector<float>> stored(3);
  std::vector<Matrix> matrices;
  for (int m = 0; m < 3; ++m) {
    const auto w = test::random_floats(size_t(rows[m]) * cols, uint64_t(50 + m));
    stored[m].resize(interleaved_shape(DType::F32, rows[m], cols).total_bytes() / sizeof(float));
    interleave_rows(DType::F32, w.data(), rows[m], cols, stored[m].data());
    matrices.push_back(Matrix{DType::F32, rows[m], cols, stored[m].data(), true});
  }
  for (int n : {1, 3, 8, 13, 64}) {
    CAPTURE(n);
    const auto x = test::random_floats(size_t(n) * cols, uint64_t(n));
    std::vector<std::vector<float>> together(3), alone(3);
    for (int m = 0; m < 3; ++m) {
      together[m].assign(size_t(n) * rows[m], -1.0f);
      alone[m].assign(size_t(n) * rows[m], -2.0f);
      cpu::matmul(matrices[m], x.data(), alone[m].data(), n, 2);
    }
    const Matrix* const weights[3] = {&matrices[0], &matrices[1], &matrices[2]};
    float* const ys[3] = {together[0].data(), together[1].data(), together[2].data()};
    cpu::matmul_many(weights, x.data(), ys, n, 2);
    for (int m = 0; m < 3; ++m) CHECK(same_bits(together[m], alone[m]));
  }
}
