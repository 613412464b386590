// test_hardware.cpp: the GEMM kernels against each other and a float64 reference, and the
// bandwidth kernel's arithmetic. No test asserts a speed: timings depend on the machine and its load.
#include "infer/core/error.h"
#include "infer/app/hardware.h"
#include "test_util.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

namespace {

struct Shape {
  int m, n, k;
};

// Shapes around the v2 tile sizes (64 rows, 64 deep, 128 columns): single elements, odd sizes,
// exact multiples, and one past a multiple in each dimension.
const Shape kShapes[] = {{1, 1, 1},    {1, 7, 33},    {7, 1, 65},   {33, 65, 7},   {65, 33, 130},
                         {130, 65, 33}, {64, 128, 64}, {65, 129, 65}, {130, 130, 130}, {1, 130, 200}};

// C = A . B in float64 with, per element, the bound sum_p |A[i, p]| |B[p, j]| that scales the
// rounding error of any float32 evaluation of the same sum.
struct Reference {
  std::vector<double> c, abs_bound;
};
Reference reference_gemm(const std::vector<float>& a, const std::vector<float>& b, const Shape& s) {
  Reference ref{std::vector<double>(size_t(s.m) * s.n), std::vector<double>(size_t(s.m) * s.n)};
  for (int i = 0; i < s.m; ++i)
    for (int j = 0; j < s.n; ++j) {
      double sum = 0.0, bound = 0.0;
      for (int p = 0; p < s.k; ++p) {
        const double product = double(a[size_t(i) * s.k + p]) * double(b[size_t(p) * s.n + j]);
        sum += product;
        bound += std::abs(product);
      }
      ref.c[size_t(i) * s.n + j] = sum;
      ref.abs_bound[size_t(i) * s.n + j] = bound;
    }
  return ref;
}

std::vector<float> run_gemm(void (*gemm)(const float*, const float*, float*, int, int, int),
                            const std::vector<float>& a, const std::vector<float>& b, const Shape& s) {
  // Pre-filled with garbage: the kernels must overwrite C, not accumulate into it.
  std::vector<float> c(size_t(s.m) * s.n, 12345.0f);
  gemm(a.data(), b.data(), c.data(), s.m, s.n, s.k);
  return c;
}

// Seeded small integers in [-3, 3]: every product and partial sum (|sum| <= 9 k < 2^24) is exact in
// float32, so any summation order gives the exact answer and the kernels can be compared with ==.
std::vector<float> small_integers(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> values(n);
  for (auto& x : values) x = static_cast<float>(static_cast<int>(rng() % 7) - 3);
  return values;
}

}  // namespace

// ---- GEMM ----------------------------------------------------------------------------------------

TEST_CASE("gemm v1 and v2 match a float64 reference on random inputs, within the float32 error bound") {
  for (const Shape& s : kShapes) {
    INFO("m = " << s.m << ", n = " << s.n << ", k = " << s.k);
    const auto a = infer::test::random_floats(size_t(s.m) * s.k, 100 + s.m);
    const auto b = infer::test::random_floats(size_t(s.k) * s.n, 200 + s.n);
    const auto ref = reference_gemm(a, b, s);
    const auto v1 = run_gemm(infer::gemm_v1_naive, a, b, s);
    const auto v2 = run_gemm(infer::gemm_v2_blocked, a, b, s);

    // Tolerance: a float32 sum of k products, in any order and with or without FMA, is within
    // gamma_k * sum |a||b| of the exact value, gamma_k = k u / (1 - k u), u = 2^-24 the unit roundoff
    // (Higham, Accuracy and Stability, 3.1). The float64 reference's own error is ~2^-29 times
    // smaller. So each kernel is within gamma_k * bound of the reference, and within twice that of
    // the other kernel. This is the worst case; typical errors are ~sqrt(k) times smaller.
    const double u = FLT_EPSILON / 2.0;
    const double gamma_k = s.k * u / (1.0 - s.k * u);
    // The worst error over C as a fraction of its allowed bound (<= 1 passes).
    double worst_v1 = 0.0, worst_v2 = 0.0, worst_v1_v2 = 0.0;
    for (size_t e = 0; e < ref.c.size(); ++e) {
      const double bound = gamma_k * ref.abs_bound[e] + DBL_MIN;  // DBL_MIN: no 0/0 if a row is all zeros
      worst_v1 = std::max(worst_v1, std::abs(double(v1[e]) - ref.c[e]) / bound);
      worst_v2 = std::max(worst_v2, std::abs(double(v2[e]) - ref.c[e]) / bound);
      worst_v1_v2 = std::max(worst_v1_v2, std::abs(double(v2[e]) - double(v1[e])) / (2.0 * bound));
    }
    CHECK(worst_v1 <= 1.0);
    CHECK(worst_v2 <= 1.0);
    CHECK(worst_v1_v2 <= 1.0);
  }
}

TEST_CASE("gemm v1 and v2 are exact on small-integer inputs") {
  for (const Shape& s : kShapes) {
    INFO("m = " << s.m << ", n = " << s.n << ", k = " << s.k);
    const auto a = small_integers(size_t(s.m) * s.k, 300 + s.k);
    const auto b = small_integers(size_t(s.k) * s.n, 400 + s.m);
    const auto ref = reference_gemm(a, b, s);
    const auto v1 = run_gemm(infer::gemm_v1_naive, a, b, s);
    const auto v2 = run_gemm(infer::gemm_v2_blocked, a, b, s);
    bool all_exact = true;
    for (size_t e = 0; e < ref.c.size(); ++e)
      all_exact = all_exact && double(v1[e]) == ref.c[e] && double(v2[e]) == ref.c[e];
    CHECK(all_exact);
  }
}

TEST_CASE("measure_gemm runs both variants and rejects an unknown one by name") {
  for (const char* variant : {"v1_naive", "v2_blocked"}) {
    const auto result = infer::measure_gemm(variant, 33, 2, 2);
    CHECK(result.ms > 0.0);
    CHECK(result.gflops > 0.0);
  }
  CHECK_THROWS_WITH_AS(infer::measure_gemm("v9_magic", 16, 1, 1), doctest::Contains("v9_magic"), infer::Error);
}

// ---- Bandwidth -----------------------------------------------------------------------------------

TEST_CASE("parallel_sum adds every element once, for any thread count and a ragged tail") {
  // 1,000,003 ones: each partial sum stays far below 2^24, so the float total is exact.
  const size_t n = 1'000'003;
  auto data = std::make_unique<float[]>(n);
  for (int threads : {1, 2, 3}) {
    INFO(threads << " threads");
    infer::parallel_fill(data.get(), n, 1.0f, threads);
    CHECK(infer::parallel_sum(data.get(), n, threads) == float(n));
  }
  CHECK(infer::parallel_sum(data.get(), 5, 2) == 5.0f);  // fewer elements than one thread's lanes
}

TEST_CASE("measure_read_bandwidth reports the buffer it read and a positive rate") {
  const auto result = infer::measure_read_bandwidth(8u << 20, 2, 2);
  CHECK(result.bytes == (8u << 20));
  CHECK(result.threads == 2);
  CHECK(result.gb_per_s > 0.0);
  CHECK_THROWS_AS(infer::measure_read_bandwidth(1 << 20, 0, 1), infer::Error);
}

TEST_CASE("cpu_model_name is never empty") { CHECK(!infer::cpu_model_name().empty()); }
