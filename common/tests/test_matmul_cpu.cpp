// test_matmul_cpu.cpp: the CPU GEMV (decode, n = 1) and GEMM (n > 1) against a float64 reference.
//
// Seeded random weights and inputs over shapes whose widths are not multiples of 16 (the dot's lane
// count), in f32 and f16; the f16 GEMV's v2_fused must equal v1_scratch exactly (same lanes, same
// order), and the GEMV must equal the GEMM's row for the same token exactly (what keeps the KV-cache
// decoder's tokens identical to the naive decoder's).
#include "infer/cpu_kernels.h"
#include "infer/dtype.h"
#include "test_util.h"

#include <cmath>
#include <cstring>

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
