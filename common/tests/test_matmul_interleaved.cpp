// test_matmul_interleaved.cpp: the 16-row interleaved layout (interleaved.h) and its kernels
// (interleaved_kernels.h): repacking keeps every weight (each row dequantizes as the file's row); the v9
// AVX-512 tiles equal the plain reference bit for bit for every format, activation width, tile shape
// and thread count; the result equals dequantize + a float64 dot within the activation-rounding bound.
#include "infer/core/dtype.h"
#include "infer/core/error.h"
#include "infer/core/interleaved.h"
#include "infer/cpu/interleaved_kernels.h"
#include "infer/cpu/quant_kernels.h"
#include "quant_bound.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

using namespace infer;
using namespace infer::cpu;

namespace {

struct Interleaved {
  std::vector<uint8_t> row_major;
  std::vector<uint8_t> bytes;
  Matrix matrix;        // interleaved
  Matrix row_matrix;    // the same weights row-major
};

Interleaved make_interleaved(DType type, int rows, int cols, uint64_t seed) {
  Interleaved m;
  const auto values = test::random_floats(size_t(rows) * cols, seed, -1.0f, 1.0f);
  const size_t row_bytes = dtype_row_bytes(type, cols);
  m.row_major.resize(row_bytes * rows);
  for (int r = 0; r < rows; ++r) quantize_row(type, values.data() + size_t(r) * cols, m.row_major.data() + r * row_bytes, cols);
  m.bytes.resize(interleaved_shape(type, rows, cols).total_bytes());
  interleave_rows(type, m.row_major.data(), rows, cols, m.bytes.data());
  m.matrix = Matrix{type, rows, cols, m.bytes.data(), true};
  m.row_matrix = Matrix{type, rows, cols, m.row_major.data()};
  return m;
}

const DType kFormats[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1};
const ActivationBits kBits[] = {ActivationBits::Int8, ActivationBits::Int16};

struct Shape {
  int rows, cols, n;
};
// A partial last group (rows % 16), an odd number of groups (the one-group tile), one block, SmolLM2's
// widths, token counts that fill the 6- and 4-token tiles and leave each remainder.
const Shape kShapes[] = {{37, 96, 1}, {37, 96, 5}, {5, 32, 3}, {16, 1536, 2}, {64, 576, 7}, {48, 160, 13}, {80, 64, 24}};

// Runs body(type, bits, shape) for every format, activation width and shape, each named in a failure.
template <typename Body>
void for_each_case(Body body) {
  for (DType type : kFormats) {
    for (ActivationBits bits : kBits) {
      for (const Shape& shape : kShapes) {
        CAPTURE(dtype_name(type));
        CAPTURE(int(bits));
        CAPTURE(shape.rows);
        CAPTURE(shape.cols);
        CAPTURE(shape.n);
        body(type, bits, shape);
      }
    }
  }
}

}  // namespace

TEST_CASE("interleaved layout: every row dequantizes to the file's row, the size is the file's bytes") {
  for (DType type : kFormats) {
    for (int rows : {1, 16, 37}) {
      const int cols = 96;
      const Interleaved m = make_interleaved(type, rows, cols, 11 + rows);
      const InterleavedShape shape = interleaved_shape(type, rows, cols);
      CHECK(shape.groups == (rows + 15) / 16);
      CHECK(shape.total_bytes() % 64 == 0);
      CHECK(shape.total_bytes() >= dtype_row_bytes(type, int64_t(rows) * cols));
      CHECK(shape.total_bytes() < dtype_row_bytes(type, int64_t(shape.groups) * 16 * cols) + 64 * shape.groups);
      std::vector<float> expected(cols), got(cols);
      for (int r = 0; r < rows; ++r) {
        dequantize_row(type, m.row_major.data() + size_t(r) * dtype_row_bytes(type, cols), expected.data(), cols);
        dequantize_interleaved_row(shape, m.bytes.data(), r, got.data());
        CHECK(std::memcmp(expected.data(), got.data(), cols * sizeof(float)) == 0);
      }
    }
  }
  CHECK_THROWS_AS(interleaved_shape(DType::Q5_0, 16, 32), Error);
  CHECK_THROWS_AS(interleaved_shape(DType::Q8_0, 16, 48), Error);
  CHECK_FALSE(interleavable(DType::F16, 64));
  CHECK_FALSE(interleavable(DType::Q5_0, 64));
  CHECK(interleavable(DType::F32, 7));  // f32 panels take any width (matmul_panels_cpu.cpp)
}

TEST_CASE("interleaved kernels: each format equals dequantize + dot within the activation-rounding bound") {
  for_each_case([](DType type, ActivationBits bits, const Shape& shape) {
    const Interleaved m = make_interleaved(type, shape.rows, shape.cols, 3 + shape.rows + shape.n);
    const auto x = test::random_floats(size_t(shape.n) * shape.cols, 7 + shape.n, -2.0f, 2.0f);
    std::vector<float> y(size_t(shape.n) * shape.rows);
    gemm_quantized(m.matrix, x.data(), y.data(), shape.n, 1, QuantPath::Reference, bits);
    CHECK(test::outside_activation_bound(type, m.row_major.data(), shape.rows, shape.cols, x.data(), shape.n, y.data(),
                                         bits) == 0);
  });
}

TEST_CASE("interleaved kernels: the AVX-512 tiles equal the reference bit for bit (any tokens, 1 or 2 threads)") {
  if (!quant_path_supported(QuantPath::Avx512Vnni)) {
    MESSAGE("SKIPPED: this CPU has no AVX-512 VNNI; the interleaved layout runs its reference here");
    return;
  }
  for_each_case([](DType type, ActivationBits bits, const Shape& shape) {
    const Interleaved m = make_interleaved(type, shape.rows, shape.cols, 5 + shape.rows + shape.n);
    auto x = test::random_floats(size_t(shape.n) * shape.cols, 9 + shape.n, -3.0f, 3.0f);
    x[0] = 40.0f;  // an outlier block: large int16 codes in one block, small in the others
    std::vector<float> reference(size_t(shape.n) * shape.rows), simd(reference.size()), simd2(reference.size());
    gemm_quantized(m.matrix, x.data(), reference.data(), shape.n, 1, QuantPath::Reference, bits);
    gemm_quantized(m.matrix, x.data(), simd.data(), shape.n, 1, QuantPath::Avx512Vnni, bits);
    gemm_quantized(m.matrix, x.data(), simd2.data(), shape.n, 2, QuantPath::Avx512Vnni, bits);
    CHECK(std::memcmp(reference.data(), simd.data(), simd.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(simd.data(), simd2.data(), simd.size() * sizeof(float)) == 0);
    // Each token alone (the GEMV) gives the rows it gets in the batch.
    std::vector<float> alone(shape.rows);
    int differ = 0;
    for (int t = 0; t < shape.n; ++t) {
      gemm_quantized(m.matrix, x.data() + size_t(t) * shape.cols, alone.data(), 1, 2, QuantPath::Avx512Vnni, bits);
      differ += std::memcmp(alone.data(), simd.data() + size_t(t) * shape.rows, shape.rows * sizeof(float)) != 0;
    }
    CHECK(differ == 0);
  });
}

TEST_CASE("interleaved kernels: several matrices in one call equal separate calls, and layouts do not mix") {
  const int cols = 192, n = 9;
  const Interleaved q = make_interleaved(DType::Q4_1, 64, cols, 21), k = make_interleaved(DType::Q4_1, 37, cols, 22);
  const auto x = test::random_floats(size_t(n) * cols, 23, -1.0f, 1.0f);
  for (QuantPath path : {QuantPath::Reference, best_quant_path()}) {
    std::vector<float> yq(size_t(n) * 64), yk(size_t(n) * 37), sq(yq.size()), sk(yk.size());
    const Matrix* matrices[] = {&q.matrix, &k.matrix};
    float* outputs[] = {yq.data(), yk.data()};
    gemm_quantized_many(matrices, x.data(), outputs, n, 2, path);
    gemm_quantized(q.matrix, x.data(), sq.data(), n, 2, path);
    gemm_quantized(k.matrix, x.data(), sk.data(), n, 2, path);
    CHECK(yq == sq);
    CHECK(yk == sk);
  }
  const Matrix* mixed[] = {&q.matrix, &k.row_matrix};
  std::vector<float> a(size_t(n) * 64), b(size_t(n) * 37);
  float* outputs[] = {a.data(), b.data()};
  CHECK_THROWS_AS(gemm_quantized_many(mixed, x.data(), outputs, n, 2, QuantPath::Reference), Error);
}
