// cuda_test_util.h: what the CUDA tests share: both backends, host <-> device copies, random stored
// matrices, and an element-wise comparison against per-element error bounds.
//
// Every tolerance in these tests is a bound derived from how the two sides compute, written next to
// the test: fp32 sums of k terms in any order are within gamma_k = k * 2^-24 (relative, of the sum of
// |terms|) of the exact sum (2^-23 where tensor cores may truncate instead of rounding), CUDA's
// expf/sinf/cosf are within 2 ulp, glibc's within 1.
#pragma once

#include "infer/model/backend.h"
#include "infer/core/dtype.h"
#include "infer/core/error.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

namespace infer::test {

inline constexpr double kUlp24 = 1.0 / 16777216.0;  // 2^-24: half an ulp of 1.0f, fp32 round-to-nearest
inline constexpr double kUlp23 = 2.0 * kUlp24;

struct BothBackends {
  std::unique_ptr<Backend> cpu = make_cpu_backend(2);
  std::unique_ptr<Backend> cuda = make_cuda_backend();
};

// Copies `values` into a new array on `backend`.
template <typename T>
DeviceArray<T> to_backend(Backend& backend, const std::vector<T>& values) {
  DeviceArray<T> array(backend, values.size());
  backend.upload(array.data(), values.data(), values.size() * sizeof(T));
  return array;
}

template <typename T>
std::vector<T> from_backend(Backend& backend, const DeviceArray<T>& array) {
  std::vector<T> values(array.size());
  backend.download(values.data(), array.data(), array.bytes());
  return values;
}

// A (rows, cols) matrix of seeded uniform [-1, 1) values stored as `dtype`, resident on one backend.
// `values` holds what the stored elements are worth in fp32 (after fp16/bf16 rounding).
struct StoredMatrix {
  DeviceArray<uint8_t> storage;
  Matrix matrix;
  std::vector<float> values;  // (rows, cols)
};

inline std::vector<uint8_t> stored_bytes(DType dtype, int rows, int cols, uint64_t seed, std::vector<float>* values) {
  const std::vector<float> raw = random_floats(size_t(rows) * cols, seed);
  std::vector<uint8_t> bytes(dtype_row_bytes(dtype, int64_t(rows) * cols));
  quantize_row(dtype, raw.data(), bytes.data(), int64_t(rows) * cols);
  if (values != nullptr) {
    values->resize(raw.size());
    dequantize_row(dtype, bytes.data(), values->data(), int64_t(rows) * cols);
  }
  return bytes;
}

inline StoredMatrix stored_matrix(Backend& backend, DType dtype, int rows, int cols, uint64_t seed) {
  StoredMatrix result;
  const std::vector<uint8_t> bytes = stored_bytes(dtype, rows, cols, seed, &result.values);
  result.storage = to_backend(backend, bytes);
  result.matrix = Matrix{dtype, rows, cols, result.storage.data()};
  return result;
}

// CHECKs |got[i] - expected[i]| <= tolerance[i] for every i, reporting the worst element only (a
// failing sweep would otherwise print thousands of lines).
inline void check_within(const std::vector<float>& got, const std::vector<float>& expected,
                         const std::vector<double>& tolerance, const std::string& what) {
  REQUIRE(got.size() == expected.size());
  REQUIRE(tolerance.size() == expected.size());
  size_t worst = 0, failures = 0;
  double worst_excess = -1e300;
  for (size_t i = 0; i < got.size(); ++i) {
    const double error = std::fabs(double(got[i]) - double(expected[i]));
    const double excess = std::isfinite(error) ? error - tolerance[i] : 1e300;
    if (excess > 0) ++failures;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  INFO(what << ": " << failures << " of " << got.size() << " elements outside tolerance; worst at " << worst
            << ": got " << got[worst] << ", expected " << expected[worst] << ", tolerance " << tolerance[worst]);
  CHECK(failures == 0);
}

inline void check_equal(const std::vector<float>& got, const std::vector<float>& expected, const std::string& what) {
  check_within(got, expected, std::vector<double>(expected.size(), 0.0), what);
}

}  // namespace infer::test
