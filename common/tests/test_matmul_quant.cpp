// test_matmul_quant.cpp: the integer kernels on quantized blocks (quant_kernels.h) against
// dequantize + a float64 dot within a stated bound; every SIMD path against the plain reference bit
// for bit; GEMV rows against GEMM rows (and 1 vs 2 threads) bit for bit.
#include "infer/core/dtype.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/cpu/quant_kernels.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace infer;
using namespace infer::cpu;

namespace {

struct QuantMatrix {
  std::vector<uint8_t> bytes;
  Matrix matrix;
};

QuantMatrix make_matrix(DType type, int rows, int cols, uint64_t seed) {
  QuantMatrix m;
  const auto values = test::random_floats(size_t(rows) * cols, seed, -1.0f, 1.0f);
  m.bytes.resize(dtype_row_bytes(type, int64_t(rows) * cols));
  const size_t row_bytes = dtype_row_bytes(type, cols);
  for (int r = 0; r < rows; ++r) quantize_row(type, values.data() + size_t(r) * cols, m.bytes.data() + r * row_bytes, cols);
  m.matrix = Matrix{type, rows, cols, m.bytes.data()};
  return m;
}

const DType kFormats[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1};
const QuantPath kPaths[] = {QuantPath::Reference, QuantPath::Avx2, QuantPath::Avx512Vnni};

struct Shape {
  int rows, cols, n;
};
// Odd row counts, an odd number of blocks (the AVX-512 tail), one block, SmolLM2's widths.
const Shape kShapes[] = {{37, 96, 1}, {37, 96, 5}, {5, 32, 3}, {19, 1568, 2}, {64, 576, 7}, {3, 1536, 1}};

}  // namespace

TEST_CASE("quant kernels: activations quantized per block within half a step") {
  const auto x = test::random_floats(3 * 96, 5, -4.0f, 4.0f);
  QuantizedActivations q;
  quantize_activations(x.data(), 3, 96, q);
  for (int t = 0; t < 3; ++t) {
    for (int i = 0; i < 96; ++i) {
      const float d = q.d_row(t)[i / 32];
      CHECK(std::abs(int(q.q_row(t)[i])) <= 127);
      CHECK(std::fabs(x[t * 96 + i] - d * q.q_row(t)[i]) <= 0.5f * d * (1 + 1e-6f));
    }
    for (int b = 0; b < 3; ++b) {
      int sum = 0;
      for (int j = 0; j < 32; ++j) sum += q.q_row(t)[b * 32 + j];
      CHECK(q.s_row(t)[b] == q.d_row(t)[b] * float(sum));
    }
  }
  std::vector<float> zeros(32, 0.0f);
  quantize_activations(zeros.data(), 1, 32, q);
  CHECK(q.d[0] == 0.0f);
  CHECK(q.q[5] == 0);
}

// Bound: the weights are used exactly (dequantized), so the error is the activations' rounding,
// |x_i - d_b q_i| <= d_b / 2, times |w_i|, plus float rounding of the sums (1e-5 of sum |w x|).
TEST_CASE("quant kernels: each format equals dequantize + dot within the activation-rounding bound") {
  uint64_t seed = 1;
  for (DType type : kFormats) {
    for (const Shape& shape : kShapes) {
      CAPTURE(dtype_name(type));
      CAPTURE(shape.rows);
      CAPTURE(shape.cols);
      const QuantMatrix w = make_matrix(type, shape.rows, shape.cols, seed++);
      const auto x = test::random_floats(size_t(shape.n) * shape.cols, seed++, -2.0f, 2.0f);
      std::vector<float> y(size_t(shape.n) * shape.rows);
      gemm_quantized(w.matrix, x.data(), y.data(), shape.n, 2, best_quant_path());
      QuantizedActivations q;
      quantize_activations(x.data(), shape.n, shape.cols, q);
      std::vector<float> row(shape.cols);
      int outside = 0;
      for (int r = 0; r < shape.rows; ++r) {
        dequantize_row(type, w.bytes.data() + r * dtype_row_bytes(type, shape.cols), row.data(), shape.cols);
        for (int t = 0; t < shape.n; ++t) {
          double exact = 0.0, magnitude = 0.0, bound = 0.0;
          for (int i = 0; i < shape.cols; ++i) {
            exact += double(row[i]) * x[t * shape.cols + i];
            magnitude += std::fabs(double(row[i]) * x[t * shape.cols + i]);
            bound += std::fabs(double(row[i])) * 0.5 * q.d_row(t)[i / 32];
          }
          bound = bound * (1 + 1e-6) + 1e-5 * magnitude + 1e-6;
          if (std::fabs(double(y[t * shape.rows + r]) - exact) > bound) ++outside;
        }
      }
      CHECK(outside == 0);
    }
  }
}

TEST_CASE("quant kernels: every SIMD path gives the reference's bits") {
  uint64_t seed = 100;
  int paths_run = 0;
  for (QuantPath path : kPaths) {
    if (!quant_path_supported(path)) {
      MESSAGE("path " << quant_path_name(path) << " not supported on this CPU: not compared");
      continue;
    }
    ++paths_run;
    for (DType type : kFormats) {
      for (const Shape& shape : kShapes) {
        CAPTURE(quant_path_name(path));
        CAPTURE(dtype_name(type));
        CAPTURE(shape.cols);
        const QuantMatrix w = make_matrix(type, shape.rows, shape.cols, seed++);
        const auto x = test::random_floats(size_t(shape.n) * shape.cols, seed++, -3.0f, 3.0f);
        std::vector<float> reference(size_t(shape.n) * shape.rows), got(reference.size());
        gemm_quantized(w.matrix, x.data(), reference.data(), shape.n, 1, QuantPath::Reference);
        gemm_quantized(w.matrix, x.data(), got.data(), shape.n, 2, path);
        CHECK(std::memcmp(reference.data(), got.data(), got.size() * sizeof(float)) == 0);
      }
    }
  }
  CHECK(paths_run >= 1);
}

TEST_CASE("quant kernels: a token's outputs do not depend on the batch (GEMV rows == GEMM rows)") {
  uint64_t seed = 200;
  for (DType type : kFormats) {
    CAPTURE(dtype_name(type));
    const int rows = 45, cols = 224, n = 9;
    const QuantMatrix w = make_matrix(type, rows, cols, seed++);
    const auto x = test::random_floats(size_t(n) * cols, seed++);
    std::vector<float> batch(size_t(n) * rows);
    gemm_quantized(w.matrix, x.data(), batch.data(), n, 2, best_quant_path());
    for (int t = 0; t < n; ++t) {
      std::vector<float> alone(rows), via_matmul(rows);
      gemv_quantized(w.matrix, x.data() + size_t(t) * cols, alone.data(), 1, best_quant_path());
      matmul(w.matrix, x.data() + size_t(t) * cols, via_matmul.data(), 1, 2);  // what the backend runs
      CHECK(std::memcmp(alone.data(), batch.data() + size_t(t) * rows, rows * sizeof(float)) == 0);
      CHECK(std::memcmp(alone.data(), via_matmul.data(), rows * sizeof(float)) == 0);
    }
    // A sub-batch (tokens 3..6) gives the same rows as the full batch.
    std::vector<float> part(size_t(4) * rows);
    gemm_quantized(w.matrix, x.data() + size_t(3) * cols, part.data(), 4, 1, best_quant_path());
    CHECK(std::memcmp(part.data(), batch.data() + size_t(3) * rows, part.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("quant kernels: K formats in matmul are dequantized rows with dot_f32's bits") {
  std::mt19937_64 rng(9);
  for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    CAPTURE(dtype_name(type));
    const int rows = 6, cols = 512;
    std::vector<uint8_t> bytes(dtype_row_bytes(type, int64_t(rows) * cols));
    for (auto& b : bytes) b = uint8_t(rng());
    // Finite, small f16 scales: d (and dmin) at the format's offsets.
    const size_t block = dtype_block_bytes(type);
    for (size_t b = 0; b < bytes.size() / block; ++b) {
      const uint16_t scale = fp32_to_fp16(0.001f * float(b + 1));
      for (size_t offset : type == DType::Q6_K ? std::vector<size_t>{208} : std::vector<size_t>{0, 2})
        std::memcpy(bytes.data() + b * block + offset, &scale, 2);
    }
    const Matrix w{type, rows, cols, bytes.data()};
    const auto x = test::random_floats(size_t(2) * cols, 4);
    std::vector<float> y(size_t(2) * rows), row(cols);
    matmul(w, x.data(), y.data(), 2, 2);
    std::vector<float> y1(rows);
    matmul(w, x.data(), y1.data(), 1, 2);
    for (int r = 0; r < rows; ++r) {
      dequantize_row(type, bytes.data() + r * dtype_row_bytes(type, cols), row.data(), cols);
      CHECK(y[r] == dot_f32(row.data(), x.data(), cols));
      CHECK(y1[r] == y[r]);
      CHECK(y[rows + r] == dot_f32(row.data(), x.data() + cols, cols));
    }
  }
}
