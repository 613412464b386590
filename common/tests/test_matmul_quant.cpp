// test_matmul_quant.cpp: the integer kernels on quantized blocks (quant_kernels.h) against
// dequantize + a float64 dot within a stated bound; every SIMD path against the plain reference bit
// for bit; GEMV rows against GEMM rows (and 1 vs 2 threads) bit for bit.
#include "infer/core/dtype.h"
#include "infer/core/error.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/cpu/quant_kernels.h"
#include "quant_bound.h"
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
const ActivationBits kBits[] = {ActivationBits::Int8, ActivationBits::Int16};

struct Shape {
  int rows, cols, n;
};
// Odd row counts, an odd number of blocks (the AVX-512 tail), one block, SmolLM2's widths.
// n >= 8: the GEMM's token tiles (v3, v6) and the tokens left after them.
const Shape kShapes[] = {{37, 96, 1}, {37, 96, 5}, {5, 32, 3}, {19, 1568, 2}, {64, 576, 7}, {3, 1536, 1}, {21, 160, 11}, {17, 96, 16}};

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

TEST_CASE("quant kernels: int16 activations within half a step of max/32767, the same with 1 or 2 threads") {
  const int n = 5, cols = 160;
  auto x = test::random_floats(size_t(n) * cols, 6, -4.0f, 4.0f);
  x[7] = 1000.0f;  // an outlier: its block's step grows, the others keep theirs
  QuantizedActivations q, q2;
  quantize_activations(x.data(), n, cols, q, ActivationBits::Int16, 1);
  quantize_activations(x.data(), n, cols, q2, ActivationBits::Int16, 2);
  CHECK(q.q16 == q2.q16);
  CHECK(q.d == q2.d);
  for (int t = 0; t < n; ++t) {
    for (int b = 0; b < cols / 32; ++b) {
      float max_abs = 0.0f;
      int sum = 0;
      for (int j = 0; j < 32; ++j) max_abs = std::max(max_abs, std::fabs(x[t * cols + b * 32 + j]));
      const float d = q.d_row(t)[b];
      CHECK(d == max_abs / 32767.0f);
      for (int j = 0; j < 32; ++j) {
        const int i = b * 32 + j;
        CHECK(std::abs(int(q.q16_row(t)[i])) <= 32767);
        CHECK(std::fabs(x[t * cols + i] - d * q.q16_row(t)[i]) <= 0.5f * d * (1 + 1e-6f));
        sum += q.q16_row(t)[i];
      }
      CHECK(q.s_row(t)[b] == d * float(sum));
    }
  }
}

// Bound: the weights are used exactly (dequantized), so the error is the activations' rounding,
// |x_i - d_b q_i| <= d_b / 2, times |w_i|, plus float rounding of the sums (1e-5 of sum |w x|).
TEST_CASE("quant kernels: each format equals dequantize + dot within the activation-rounding bound") {
  uint64_t seed = 1;
  for (ActivationBits bits : kBits)
  for (DType type : kFormats) {
    for (const Shape& shape : kShapes) {
      CAPTURE(int(bits));
      CAPTURE(dtype_name(type));
      CAPTURE(shape.rows);
      CAPTURE(shape.cols);
      const QuantMatrix w = make_matrix(type, shape.rows, shape.cols, seed++);
      const auto x = test::random_floats(size_t(shape.n) * shape.cols, seed++, -2.0f, 2.0f);
      std::vector<float> y(size_t(shape.n) * shape.rows);
      gemm_quantized(w.matrix, x.data(), y.data(), shape.n, 2, best_quant_path(), bits);
      const int outside =
          test::outside_activation_bound(type, w.bytes.data(), shape.rows, shape.cols, x.data(), shape.n, y.data(), bits);
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
    for (ActivationBits bits : kBits)
    for (DType type : kFormats) {
      for (const Shape& shape : kShapes) {
        CAPTURE(quant_path_name(path, bits));
        CAPTURE(dtype_name(type));
        CAPTURE(shape.cols);
        const QuantMatrix w = make_matrix(type, shape.rows, shape.cols, seed++);
        const auto x = test::random_floats(size_t(shape.n) * shape.cols, seed++, -3.0f, 3.0f);
        std::vector<float> reference(size_t(shape.n) * shape.rows), got(reference.size());
        gemm_quantized(w.matrix, x.data(), reference.data(), shape.n, 1, QuantPath::Reference, bits);
        gemm_quantized(w.matrix, x.data(), got.data(), shape.n, 2, path, bits);
        CHECK(std::memcmp(reference.data(), got.data(), got.size() * sizeof(float)) == 0);
      }
    }
  }
  CHECK(paths_run >= 1);
}

TEST_CASE("quant kernels: a token's outputs do not depend on the batch (GEMV rows == GEMM rows)") {
  uint64_t seed = 200;
  for (ActivationBits bits : kBits)
  for (DType type : kFormats) {
    CAPTURE(int(bits));
    CAPTURE(dtype_name(type));
    const int rows = 45, cols = 224, n = 9;
    const QuantMatrix w = make_matrix(type, rows, cols, seed++);
    const auto x = test::random_floats(size_t(n) * cols, seed++);
    std::vector<float> batch(size_t(n) * rows), big(size_t(24) * rows);
    gemm_quantized(w.matrix, x.data(), batch.data(), n, 2, best_quant_path(), bits);
    for (int t = 0; t < n; ++t) {
      std::vector<float> alone(rows);
      gemm_quantized(w.matrix, x.data() + size_t(t) * cols, alone.data(), 1, 1, best_quant_path(), bits);
      CHECK(std::memcmp(alone.data(), batch.data() + size_t(t) * rows, rows * sizeof(float)) == 0);
    }
    // A sub-batch (tokens 3..6) gives the same rows as the full batch.
    std::vector<float> part(size_t(4) * rows);
    gemm_quantized(w.matrix, x.data() + size_t(3) * cols, part.data(), 4, 1, best_quant_path(), bits);
    CHECK(std::memcmp(part.data(), batch.data() + size_t(3) * rows, part.size() * sizeof(float)) == 0);
    // The 9 tokens again as tokens 8..16 of 24 (other tiles): the same rows.
    std::vector<float> x_big = test::random_floats(size_t(24) * cols, seed++);
    std::copy(x.begin(), x.end(), x_big.begin() + size_t(8) * cols);
    gemm_quantized(w.matrix, x_big.data(), big.data(), 24, 2, best_quant_path(), bits);
    CHECK(std::memcmp(big.data() + size_t(8) * rows, batch.data(), batch.size() * sizeof(float)) == 0);
  }
  // What the backend runs (matmul: each format's default precision) for one token and for a batch.
  for (DType type : kFormats) {
    CAPTURE(dtype_name(type));
    const int rows = 45, cols = 224, n = 9;
    const QuantMatrix w = make_matrix(type, rows, cols, seed++);
    const auto x = test::random_floats(size_t(n) * cols, seed++);
    std::vector<float> batch(size_t(n) * rows);
    matmul(w.matrix, x.data(), batch.data(), n, 2);
    for (int t = 0; t < n; ++t) {
      std::vector<float> alone(rows), via_gemv(rows);
      matmul(w.matrix, x.data() + size_t(t) * cols, alone.data(), 1, 2);
      gemv_quantized(w.matrix, x.data() + size_t(t) * cols, via_gemv.data(), 1, best_quant_path());
      CHECK(std::memcmp(alone.data(), batch.data() + size_t(t) * rows, rows * sizeof(float)) == 0);
      CHECK(std::memcmp(alone.data(), via_gemv.data(), rows * sizeof(float)) == 0);
    }
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

TEST_CASE("quant kernels: the int16 reference is the 16-lane order, and far closer to the float dot than int8") {
  // The lane order written out independently of the kernels: one Q8_0 row, int16 activations.
  const int cols = 96;
  const QuantMatrix w = make_matrix(DType::Q8_0, 1, cols, 400);
  const auto x = test::random_floats(cols, 401, -2.0f, 2.0f);
  QuantizedActivations q;
  quantize_activations(x.data(), 1, cols, q, ActivationBits::Int16);
  float lanes[16] = {};
  for (int b = 0; b < cols / 32; ++b) {
    uint16_t h;
    std::memcpy(&h, w.bytes.data() + b * 34, 2);
    const auto* wq = reinterpret_cast<const int8_t*>(w.bytes.data() + b * 34 + 2);
    for (int j = 0; j < 8; ++j) {
      int p = 0;
      for (int k = 0; k < 4; ++k) p += wq[4 * j + k] * q.q16[b * 32 + 4 * j + k];
      lanes[8 * (b % 2) + j] = std::fma(fp16_to_fp32(h) * q.d[b], float(p), lanes[8 * (b % 2) + j]);
    }
  }
  // The byte planes of the AVX-512 kernels hold the same integers.
  for (int i = 0; i < cols; ++i) CHECK(256 * (int(q.hi[i]) - 128) + int(q.lo[i]) == q.q16[i]);
  float expected = 0.0f;
  for (float lane : lanes) expected += lane;
  expected += 0.0f;
  const float got = dot_int16_reference(DType::Q8_0, w.bytes.data(), q.q16.data(), q.d.data(), q.s.data(), cols / 32);
  CHECK(std::memcmp(&got, &expected, 4) == 0);

  // Over many rows, the int16 error against dequantize + float64 dot is far below int8's.
  const int rows = 64, wide_cols = 576;
  const QuantMatrix m = make_matrix(DType::Q8_0, rows, wide_cols, 402);
  const auto xs = test::random_floats(wide_cols, 403, -3.0f, 3.0f);
  std::vector<float> y8(rows), y16(rows), row(wide_cols);
  gemm_quantized(m.matrix, xs.data(), y8.data(), 1, 1, QuantPath::Reference, ActivationBits::Int8);
  gemm_quantized(m.matrix, xs.data(), y16.data(), 1, 1, QuantPath::Reference, ActivationBits::Int16);
  double error8 = 0.0, error16 = 0.0;
  for (int r = 0; r < rows; ++r) {
    dequantize_row(DType::Q8_0, m.bytes.data() + r * dtype_row_bytes(DType::Q8_0, wide_cols), row.data(), wide_cols);
    double exact = 0.0;
    for (int i = 0; i < wide_cols; ++i) exact += double(row[i]) * xs[i];
    error8 += std::fabs(y8[r] - exact);
    error16 += std::fabs(y16[r] - exact);
  }
  CHECK(error16 * 50.0 < error8);  // the steps are 258x smaller; float rounding of the sums remains
}

TEST_CASE("quant kernels: the AVX-512 activation quantizer gives the plain loop's bytes") {
  if (!quant_path_supported(QuantPath::Avx512Vnni)) INFER_SKIP("no AVX-512 VNNI on this CPU");
  const int n = 3, cols = 224;
  auto x = test::random_floats(size_t(n) * cols, 500, -3.0f, 3.0f);
  x[40] = 250.0f;                                          // an outlier block
  for (int i = 64; i < 96; ++i) x[i] = 0.0f;               // an all-zero block
  for (int i = 96; i < 128; ++i) x[i] = 0.5f * float(i % 5) - 1.0f;  // exact halves of a step: ties to even
  QuantizedActivations plain, simd;
  quantize_activations(x.data(), n, cols, plain, ActivationBits::Int8, 1, QuantPath::Reference);
  quantize_activations(x.data(), n, cols, simd, ActivationBits::Int8, 2, QuantPath::Avx512Vnni);
  CHECK(plain.q == simd.q);
  CHECK(std::memcmp(plain.d.data(), simd.d.data(), plain.d.size() * 4) == 0);
  CHECK(std::memcmp(plain.s.data(), simd.s.data(), plain.s.size() * 4) == 0);
  CHECK(std::memcmp(plain.d_pairs.data(), simd.d_pairs.data(), plain.d_pairs.size() * 4) == 0);
  CHECK(plain.q4_0_start == simd.q4_0_start);
  CHECK(std::memcmp(plain.s_pairs.data(), simd.s_pairs.data(), plain.s_pairs.size() * 4) == 0);

  QuantizedActivations plain16, simd16;
  quantize_activations(x.data(), n, cols, plain16, ActivationBits::Int16, 1, QuantPath::Reference);
  quantize_activations(x.data(), n, cols, simd16, ActivationBits::Int16, 2, QuantPath::Avx512Vnni);
  CHECK(plain16.q16 == simd16.q16);
  CHECK(plain16.hi == simd16.hi);
  CHECK(plain16.hi_signed == simd16.hi_signed);
  CHECK(plain16.lo == simd16.lo);
  CHECK(std::memcmp(plain16.d.data(), simd16.d.data(), plain16.d.size() * 4) == 0);
  CHECK(std::memcmp(plain16.s.data(), simd16.s.data(), plain16.s.size() * 4) == 0);
  CHECK(std::memcmp(plain16.record_row(0), simd16.record_row(0), size_t(n) * plain16.record_stride()) == 0);
}

TEST_CASE("matmul_many: Q, K, V (or gate, up) in one call give each matrix's own matmul bits") {
  uint64_t seed = 400;
  // Row counts with whole and partial 8-row groups (v7) and 16-row blocks; n = 1 (decode), 3, 9 (a tile + 1), 500
  // (f32 / f16: the packed GEMM's x in two token blocks, the matrices' row tiles in one loop).
  const int row_counts[] = {40, 24, 13};
  const int cols = 224;
  for (DType type : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_1}) {
    for (int n : {1, 3, 9, 500}) {
      if (n == 500 && dtype_is_quantized(type)) continue;
      CAPTURE(dtype_name(type));
      CAPTURE(n);
      std::vector<QuantMatrix> storage;
      std::vector<std::vector<float>> float_storage;
      const Matrix* weights[3];
      Matrix matrices[3];
      for (int i = 0; i < 3; ++i) {
        if (dtype_is_quantized(type)) {
          storage.push_back(make_matrix(type, row_counts[i], cols, seed++));
          matrices[i] = storage.back().matrix;
        } else {
          const auto values = test::random_floats(size_t(row_counts[i]) * cols, seed++, -1.0f, 1.0f);
          std::vector<float> bytes(values.size());  // f16 rows take half of it
          if (type == DType::F32) {
            bytes = values;
          } else {
            auto* half = reinterpret_cast<uint16_t*>(bytes.data());
            for (size_t j = 0; j < values.size(); ++j) half[j] = fp32_to_fp16(values[j]);
          }
          float_storage.push_back(std::move(bytes));
          matrices[i] = Matrix{type, row_counts[i], cols, float_storage.back().data()};
        }
        weights[i] = &matrices[i];
      }
      const auto x = test::random_floats(size_t(n) * cols, seed++, -2.0f, 2.0f);
      std::vector<float> together[3], alone[3];
      float* outputs[3];
      for (int i = 0; i < 3; ++i) {
        together[i].assign(size_t(n) * row_counts[i], -1.0f);
        alone[i].assign(size_t(n) * row_counts[i], -2.0f);
        outputs[i] = together[i].data();
        matmul(matrices[i], x.data(), alone[i].data(), n, 2);
      }
      matmul_many(weights, x.data(), outputs, n, 2);
      for (int i = 0; i < 3; ++i) CHECK(std::memcmp(together[i].data(), alone[i].data(), alone[i].size() * sizeof(float)) == 0);
    }
  }
  // Mixed formats fall back to one matmul per matrix (same bits); gemm_quantized_many refuses them by name.
  const QuantMatrix a = make_matrix(DType::Q4_0, 16, 64, seed++), b = make_matrix(DType::Q8_0, 16, 64, seed++);
  const auto x = test::random_floats(64, seed++);
  std::vector<float> ya(16), yb(16), ya_alone(16), yb_alone(16);
  const Matrix* mixed[] = {&a.matrix, &b.matrix};
  float* outputs[] = {ya.data(), yb.data()};
  matmul_many(mixed, x.data(), outputs, 1, 2);
  matmul(a.matrix, x.data(), ya_alone.data(), 1, 2);
  matmul(b.matrix, x.data(), yb_alone.data(), 1, 2);
  CHECK(ya == ya_alone);
  CHECK(yb == yb_alone);
  CHECK_THROWS_WITH_AS(gemm_quantized_many(mixed, x.data(), outputs, 1, 2, best_quant_path()),
                       doctest::Contains("one format and column count"), Error);
}
