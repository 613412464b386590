// test_silu.cpp: the feed-forward gate silu(g) * up (silu_cpu.cpp) against a float64 reference, and one
// formula for every element: a buffer's body, its tail and one element alone give the same bits.
#include "infer/cpu/cpu_kernels.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using namespace infer;

namespace {

// Distance in float ulps between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = std::numeric_limits<int32_t>::min() - ia;
  if (ib < 0) ib = std::numeric_limits<int32_t>::min() - ib;
  return std::llabs(int64_t(ia) - int64_t(ib));
}

}  // namespace

TEST_CASE("silu: within 4 ulps of float64 silu(g) * up, over the range a model's gate takes and beyond") {
  const int count = 100003;  // not a multiple of 16: the masked tail runs too
  std::vector<float> gate = test::random_floats(size_t(count), 7, -30.0f, 30.0f);
  const std::vector<float> up = test::random_floats(size_t(count), 8, -4.0f, 4.0f);
  for (int i = 0; i < 200; ++i) gate[size_t(i)] *= 1e-3f;  // around 0, where silu(g) ~ g / 2
  const std::vector<float> input = gate;
  cpu::silu_mul(gate.data(), up.data(), gate.size(), 2);
  int64_t worst = 0;
  for (int i = 0; i < count; ++i) {
    const double g = input[size_t(i)];
    const float expected = float(g / (1.0 + std::exp(-g)) * double(up[size_t(i)]));
    if (std::fabs(expected) < 1e-30f) continue;  // silu(-30) * up: the relative error means nothing at 1e-13
    worst = std::max(worst, ulps(gate[size_t(i)], expected));
  }
  MESSAGE("worst error: " << worst << " ulps");
  CHECK(worst <= 4);
}

TEST_CASE("silu: every element the same bits, alone, in a buffer's body or in its tail, with 1 or 2 threads") {
  const std::vector<float> gate = test::random_floats(37000, 9, -12.0f, 12.0f);
  const std::vector<float> up = test::random_floats(37000, 10, -2.0f, 2.0f);
  std::vector<float> one = gate, two = gate;
  cpu::silu_mul(one.data(), up.data(), one.size(), 1);
  cpu::silu_mul(two.data(), up.data(), two.size(), 2);
  CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
  for (size_t offset : {size_t(0), size_t(5), size_t(16), size_t(36991)}) {  // 36991: a 9-element tail
    std::vector<float> part(gate.begin() + ptrdiff_t(offset), gate.end());
    cpu::silu_mul(part.data(), up.data() + offset, part.size(), 2);
    CHECK(std::memcmp(part.data(), one.data() + offset, part.size() * sizeof(float)) == 0);
  }
  for (size_t i : {size_t(0), size_t(17), size_t(36999)}) {
    const float alone = cpu::silu_mul_scalar(gate[i], up[i]);
    CHECK(std::memcmp(&alone, &one[i], sizeof(float)) == 0);
  }
}

TEST_CASE("silu: NaN and infinities behave as g / (1 + exp(-g)) * up does") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> gate{nan, inf, -inf, 200.0f, -200.0f, 0.0f, 1.0f}, up(gate.size(), 2.0f);
  cpu::silu_mul(gate.data(), up.data(), gate.size(), 1);
  CHECK(std::isnan(gate[0]));
  CHECK(gate[1] == inf);
  CHECK(std::isnan(gate[2]));  // -inf / inf
  CHECK(gate[3] == 400.0f);
  CHECK(gate[4] == 0.0f);      // -200 / (1 + e^200 = inf): -0, times 2
  CHECK(gate[5] == 0.0f);
  CHECK(gate[6] == doctest::Approx(2.0 / (1.0 + std::exp(-1.0))).epsilon(1e-6));
  // The scalar path agrees on each of them.
  const std::vector<float> again{nan, inf, -inf, 200.0f, -200.0f, 0.0f, 1.0f};
  for (size_t i = 1; i < again.size(); ++i) {
    const float alone = cpu::silu_mul_scalar(again[i], 2.0f);
    if (std::isnan(gate[i])) {
      CHECK(std::isnan(alone));
    } else {
      CHECK(alone == gate[i]);
    }
  }
}
