// test_cuda_attention.cpp: attention v2_split_context (split-K decode attention) against v1 and the CPU.
//
// Three angles, because a tolerance alone cannot see a dropped or doubled position in a long context
// (one of 5000 near-equal softmax weights moves the output by ~1e-4, inside the rounding bound):
//  1. seeded random q, K, V over context lengths 1, 7, 100, 1000, 5000 (not multiples of the 64-position
//     tile), GQA groups 1, 3, 4, 8 (and 12: more heads than one block takes), head_dim 3, 64, 128, 129,
//     256: v2 against v1 on the GPU and against the CPU reference, within a stated rounding bound;
//  2. counting, exactly: identical K rows make every score of a head equal, so each weight is exactly
//     exp(0) = 1 at every tile and split, and small-integer V rows sum exactly; the result is then
//     (exact integer sum) / (exact position count), one rounding. A position dropped, doubled or seen
//     past the causal limit changes the integer sum.
//  3. indexing, exactly: one key aligned with the query, scoring at least 120 above every other, makes
//     the softmax one-hot in fp32 (exp(-120) underflows to 0), so the output must equal that
//     position's V row bit for bit, wherever it sits (first, tile and split boundaries, last).
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "cuda_test_util.h"
#include "infer/cpu/cpu_kernels.h"

#include <fmt/format.h>

#include <cmath>

using namespace infer;
using namespace infer::test;

namespace {

struct Shape {
  int n, start_pos, n_heads, n_kv_heads, head_dim;
  int positions() const { return start_pos + n; }
  size_t q_count() const { return size_t(n) * n_heads * head_dim; }
  size_t kv_count() const { return size_t(positions()) * n_kv_heads * head_dim; }
};

std::string describe(const Shape& s) {
  return fmt::format("n {} start {} heads {}/{} head_dim {}", s.n, s.start_pos, s.n_heads, s.n_kv_heads, s.head_dim);
}

// The GPU inputs of one case, and v1's and v2's outputs (each launched on its own, then synchronised).
struct GpuAttention {
  std::vector<float> v1, v2;
};

GpuAttention run_gpu(Backend& cuda, const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, bool with_v1) {
  auto q_gpu = to_backend(cuda, q), k_gpu = to_backend(cuda, k), v_gpu = to_backend(cuda, v);
  DeviceArray<float> out_gpu(cuda, s.q_count());
  GpuAttention result;
  const size_t workspace_bytes = cuda::attention_v2_workspace_bytes(s.n, s.n_heads, s.head_dim);
  DeviceArray<uint8_t> workspace(cuda, workspace_bytes);
  cuda.synchronize();  // allocate() zero-fills on the backend's stream; the launches below use the default one
  cuda::attention_v2(q_gpu.data(), k_gpu.data(), v_gpu.data(), out_gpu.data(), s.n, s.start_pos, s.n_heads,
                     s.n_kv_heads, s.head_dim, workspace.data(), workspace_bytes, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());  // the launchers ran on the default stream, download() uses the backend's
  result.v2 = from_backend(cuda, out_gpu);
  if (with_v1) {
    DeviceArray<float> out_v1(cuda, s.q_count());
    cuda.synchronize();
    cuda::attention_v1(q_gpu.data(), k_gpu.data(), v_gpu.data(), out_v1.data(), s.n, s.start_pos, s.n_heads,
                       s.n_kv_heads, s.head_dim, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    result.v1 = from_backend(cuda, out_v1);
  }
  return result;
}

// |v2 - reference| for |q|, |k|, |v| <= 1, where the reference is v1 (GPU) or v1_naive (CPU), both fp32:
//  - a score is a head_dim-term dot product times 1/sqrt(head_dim): each side is within
//    head_dim 2^-24 sum|q_i k_i| / sqrt(head_dim) <= (head_dim + 2) 2^-24 sqrt(head_dim) of the exact
//    score, so the two differ by delta = twice that; exp turns a score error into a relative weight
//    error, counted twice (numerator and sum): 2 delta;
//  - the reference sums all positions in one sequence (<= positions 2^-24 relative to sum|w v| <= 1,
//    for the weights and for the weighted values: 2 positions), v2 sums a split (fewer) then the
//    splits: together below 4 positions + 16 ulps (16 for the expf's and the final division);
//  - v2 multiplies each weight by rescale factors exp(m_old - m_new): at most one per tile of the
//    split and one in the combine, each 2 ulp (expf) + 1 (the product), counted twice as above.
double attention_bound(const Shape& s) {
  const double delta = 2.0 * (s.head_dim + 2) * kUlp24 * std::sqrt(double(s.head_dim));
  const double rescales = s.positions() / 64.0 + 2.0;
  return 2.0 * delta + (4.0 * s.positions() + 6.0 * rescales + 16.0) * kUlp24;
}

}  // namespace

TEST_CASE("cuda attention v2 (split context) == v1 == cpu on random inputs") {
  BothBackends b;
  std::vector<Shape> shapes;
  // Decode (n == 1) over the brief's grid: context x group x head_dim, 2 kv heads.
  for (int positions : {1, 7, 100, 1000, 5000})
    for (int group : {1, 3, 4, 8})
      for (int head_dim : {3, 64, 128, 129})
        shapes.push_back({1, positions - 1, 2 * group, 2, head_dim});
  // Several queries per pass (causal limits differ per query; more than 16 queries: two launches), a
  // group wider than one block (12 heads -> two head batches), head_dim at v2's limit.
  shapes.push_back({3, 97, 8, 2, 64});
  shapes.push_back({20, 0, 4, 4, 64});
  shapes.push_back({5, 4995, 24, 2, 128});
  shapes.push_back({1, 2999, 12, 1, 256});
  shapes.push_back({2, 130, 32, 8, 128});  // Llama-3-8B's heads
  uint64_t seed = 1000;
  for (const Shape& s : shapes) {
    CAPTURE(describe(s));
    const std::vector<float> q = random_floats(s.q_count(), ++seed);
    const std::vector<float> k = random_floats(s.kv_count(), ++seed);
    const std::vector<float> v = random_floats(s.kv_count(), ++seed);
    const GpuAttention gpu = run_gpu(*b.cuda, s, q, k, v, /*with_v1=*/true);
    std::vector<float> cpu_out(s.q_count());
    cpu::attention_v1_naive(q.data(), k.data(), v.data(), cpu_out.data(), s.n, s.start_pos, s.n_heads, s.n_kv_heads,
                            s.head_dim, 2);
    const std::vector<double> tolerance(s.q_count(), attention_bound(s));
    check_within(gpu.v2, gpu.v1, tolerance, "v2 vs v1 (gpu), " + describe(s));
    check_within(gpu.v2, cpu_out, tolerance, "v2 vs cpu v1_naive, " + describe(s));
  }
}

TEST_CASE("cuda attention v2 counts every visible position exactly once (equal scores, integer values)") {
  BothBackends b;
  const Shape shapes[] = {{1, 0, 2, 1, 64},     {1, 6, 6, 2, 64},     {1, 99, 8, 2, 128},  {1, 999, 3, 1, 129},
                          {1, 4999, 8, 1, 128}, {1, 19999, 4, 2, 64}, {4, 60, 8, 2, 64},   {17, 120, 4, 2, 3}};
  uint64_t seed = 2000;
  for (const Shape& s : shapes) {
    CAPTURE(describe(s));
    const int kv_dim = s.n_kv_heads * s.head_dim;
    const std::vector<float> q = random_floats(s.q_count(), ++seed);
    // Every position's K row is the same (per kv head): all scores of a head are equal.
    const std::vector<float> k_row = random_floats(size_t(kv_dim), ++seed);
    std::vector<float> k(s.kv_count()), v(s.kv_count());
    for (int p = 0; p < s.positions(); ++p)
      for (int i = 0; i < kv_dim; ++i) {
        k[size_t(p) * kv_dim + i] = k_row[size_t(i)];
        v[size_t(p) * kv_dim + i] = float((p * 7 + i * 3) % 9 - 4);  // integers in [-4, 4]
      }
    const std::vector<float> got = run_gpu(*b.cuda, s, q, k, v, /*with_v1=*/false).v2;
    // Exact: the mean of the visible rows, in float64.
    const int group = s.n_heads / s.n_kv_heads;
    std::vector<float> expected(s.q_count());
    std::vector<double> tolerance(s.q_count());
    for (int t = 0; t < s.n; ++t)
      for (int h = 0; h < s.n_heads; ++h)
        for (int i = 0; i < s.head_dim; ++i) {
          double sum = 0.0;
          const int last = s.start_pos + t;
          for (int p = 0; p <= last; ++p) sum += v[size_t(p) * kv_dim + size_t(h / group) * s.head_dim + i];
          const double mean = sum / double(last + 1);
          const size_t index = (size_t(t) * s.n_heads + h) * s.head_dim + i;
          expected[index] = float(mean);
          // One correctly rounded division of exact fp32 integers: half an ulp, <= 2^-24 |mean|.
          tolerance[index] = kUlp24 * std::fabs(mean);
        }
    check_within(got, expected, tolerance, "counting, " + describe(s));
  }
}

TEST_CASE("cuda attention v2 reads the right position (one-hot softmax, exact)") {
  BothBackends b;
  // 5000 positions: one tile per split; 20000: three tiles per split (split boundaries at 192 k).
  for (const Shape& s : {Shape{1, 4999, 8, 2, 64}, Shape{1, 19999, 4, 1, 128}, Shape{3, 198, 6, 2, 129}}) {
    for (int target : {0, 1, 63, 64, 191, 192, 198, 4095, 4999, 19999}) {
      if (target > s.start_pos) continue;  // every query of the pass must see it
      CAPTURE(describe(s));
      CAPTURE(target);
      const int kv_dim = s.n_kv_heads * s.head_dim;
      // The other keys are within [-0.5, 0.5]: their scores trail the target's by at least
      // amplitude * head_dim / 2 / sqrt(head_dim) = 120.
      std::vector<float> k = random_floats(s.kv_count(), 3000 + target, -0.5f, 0.5f);
      const std::vector<float> v = random_floats(s.kv_count(), 4000 + target);
      const std::vector<float> signs = random_floats(size_t(kv_dim), 5000 + target);
      const float amplitude = 240.0f / std::sqrt(float(s.head_dim));
      std::vector<float> q(s.q_count());
      const int group = s.n_heads / s.n_kv_heads;
      for (int i = 0; i < kv_dim; ++i) k[size_t(target) * kv_dim + i] = signs[size_t(i)] < 0 ? -1.0f : 1.0f;
      for (int t = 0; t < s.n; ++t)
        for (int h = 0; h < s.n_heads; ++h)
          for (int i = 0; i < s.head_dim; ++i)
            q[(size_t(t) * s.n_heads + h) * s.head_dim + i] =
                amplitude * k[size_t(target) * kv_dim + size_t(h / group) * s.head_dim + i];
      std::vector<float> expected(s.q_count());
      for (int t = 0; t < s.n; ++t)
        for (int h = 0; h < s.n_heads; ++h)
          for (int i = 0; i < s.head_dim; ++i)
            expected[(size_t(t) * s.n_heads + h) * s.head_dim + i] =
                v[size_t(target) * kv_dim + size_t(h / group) * s.head_dim + i];
      check_equal(run_gpu(*b.cuda, s, q, k, v, /*with_v1=*/false).v2, expected,
                  fmt::format("one-hot at {}, {}", target, describe(s)));
    }
  }
}

TEST_CASE("cuda attention v2 refuses what it cannot do with a clear error") {
  BothBackends b;
  DeviceArray<float> buffer(*b.cuda, 1024);
  CHECK_FALSE(cuda::attention_v2_supported(257));
  CHECK_THROWS_AS(cuda::attention_v2(buffer.data(), buffer.data(), buffer.data(), buffer.data(), 1, 0, 1, 1, 257,
                                     buffer.data(), buffer.bytes(), nullptr),
                  Error);
  // A workspace smaller than attention_v2_workspace_bytes is refused before any launch.
  CHECK_THROWS_AS(cuda::attention_v2(buffer.data(), buffer.data(), buffer.data(), buffer.data(), 1, 0, 8, 2, 64,
                                     buffer.data(), 16, nullptr),
                  Error);
}
