// test_attention.cpp: ch05 lab, exercise 2: infer::cpu::attention (the CPU backend's attention op) against
// a float64 reference (lab_checks.h).
//
// Inputs are seeded random floats; shapes cover multi-head (group 1), GQA groups of 2 to 8, one kv head
// (MQA), head_dim not a multiple of 8, decode steps (n = 1) late in a sequence and prefill chunks (n > 1)
// from position 0 and after cached positions. The caches have rows past start_pos + n that hold NaN, as
// a real cache holds rows not written yet: reading them is a bug. Each shape runs with 1 and 2 threads.
#include "infer/cpu/cpu_kernels.h"
#include "lab_checks.h"
#include "test_util.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

using lab::AttentionMistake;
using lab::AttentionShape;

namespace {

constexpr int kUnwrittenRows = 3;  // rows past start_pos + n in each test cache, all NaN
constexpr float kUntouched = 12345.0f;

struct Inputs {
  std::vector<float> q, k_cache, v_cache;  // caches: (positions + kUnwrittenRows, n_kv_heads, head_dim)
};

Inputs make_inputs(const AttentionShape& s, uint64_t seed, float q_range = 2.0f) {
  Inputs in;
  // Queries in [-2, 2] so the scores span several units: the softmax is neither flat nor one-hot.
  in.q = infer::test::random_floats(size_t(s.n) * s.n_heads * s.head_dim, seed, -q_range, q_range);
  in.k_cache = infer::test::random_floats(size_t(s.positions()) * s.kv_dim(), seed + 1);
  in.v_cache = infer::test::random_floats(size_t(s.positions()) * s.kv_dim(), seed + 2);
  in.k_cache.resize(size_t(s.positions() + kUnwrittenRows) * s.kv_dim(), std::numeric_limits<float>::quiet_NaN());
  in.v_cache.resize(in.k_cache.size(), std::numeric_limits<float>::quiet_NaN());
  return in;
}

std::vector<float> run_attention(const Inputs& in, const AttentionShape& s, int threads) {
  std::vector<float> out(size_t(s.n) * s.n_heads * s.head_dim, kUntouched);
  infer::cpu::attention(in.q.data(), in.k_cache.data(), in.v_cache.data(), out.data(), s.n, s.start_pos, s.n_heads,
                        s.n_kv_heads, s.head_dim, threads);
  return out;
}

// Says what is wrong with `actual`, for the test's failure message.
std::string diagnose(const Inputs& in, const std::vector<float>& actual, const AttentionShape& s, int threads,
                     double tolerance) {
  const auto expected = lab::attention_reference(in.q, in.k_cache, in.v_cache, s);
  std::ostringstream out;
  out << "n=" << s.n << " queries at start_pos=" << s.start_pos << ", " << s.n_heads << " query heads, "
      << s.n_kv_heads << " kv heads, head_dim=" << s.head_dim << ", " << threads << " thread(s): max error "
      << lab::max_abs_diff(actual, expected) << " > tolerance " << tolerance << ".";
  if (std::all_of(actual.begin(), actual.end(), [](float x) { return x == kUntouched; }))
    return out.str() + " out was not written at all (is attention still the stub?).";
  for (size_t index = 0; index < actual.size(); ++index) {
    const double diff = std::abs(double(actual[index]) - expected[index]);
    if (diff <= tolerance) continue;
    const int i = int(index % size_t(s.head_dim));
    const int h = int(index / size_t(s.head_dim) % size_t(s.n_heads));
    const int t = int(index / (size_t(s.head_dim) * s.n_heads));
    out << "\n  first wrong value: query t=" << t << " (position " << s.start_pos + t << "), head " << h
        << " (kv head " << h / s.group() << "), element " << i << ": got " << actual[index] << ", expected "
        << expected[index] << ".";
    if (actual[index] == kUntouched) out << " It was never written: loop over every query t and every head h.";
    if (std::isnan(actual[index]) || std::isinf(actual[index]))
      out << "\n  NaN/inf: did you read cache rows at or past start_pos + n (they are NaN here, as unwritten rows "
             "would be garbage), or call exp on scores without subtracting their max?";
    break;
  }
  for (auto mistake : lab::kAttentionMistakes) {
    if (lab::max_abs_diff(actual, lab::attention_reference(in.q, in.k_cache, in.v_cache, s, mistake)) <= tolerance) {
      out << "\n  HINT: " << lab::attention_hint(mistake);
      break;
    }
  }
  return out.str();
}

// Checks one shape with 1 and 2 threads; returns false (after one failed check with the diagnosis) on a
// mismatch, so a test reports its first failing shape only.
bool check_attention(const AttentionShape& s, uint64_t seed) {
  const Inputs in = make_inputs(s, seed);
  const auto expected = lab::attention_reference(in.q, in.k_cache, in.v_cache, s);
  for (int threads : {1, 2}) {
    const auto actual = run_attention(in, s, threads);
    if (lab::max_abs_diff(actual, expected) > lab::kAttentionTolerance) {
      FAIL_CHECK(diagnose(in, actual, s, threads, lab::kAttentionTolerance));
      return false;
    }
  }
  return true;
}

// (n, start_pos, n_heads, n_kv_heads, head_dim) of the decode-step test.
const AttentionShape kDecodeShapes[] = {
    {1, 0, 4, 2, 16},     // the first token: one position to attend to
    {1, 1, 4, 4, 8},      // multi-head (group 1), two positions
    {1, 37, 9, 3, 64},    // SmolLM2-135M's heads (group 3)
    {1, 200, 8, 4, 8},    // stories260K's heads, a long context
    {1, 129, 6, 2, 10},   // group 3, head_dim 10
    {1, 63, 3, 1, 7},     // one kv head for all (MQA), head_dim 7
    {1, 300, 32, 4, 64},  // group 8
};
// ... and of the prefill test.
const AttentionShape kPrefillShapes[] = {
    {7, 0, 6, 2, 10},   // a prompt of 7 from the start
    {2, 0, 2, 2, 3},    // the smallest causal case: query 0 must not see position 1
    {5, 11, 8, 2, 17},  // a chunk continuing a cache of 11, head_dim 17
    {19, 3, 9, 3, 64},  // SmolLM2's heads
    {12, 0, 8, 4, 8},   // stories260K's heads
};

}  // namespace

TEST_CASE("attention: decode steps (n = 1) at positions > 0 match the float64 reference") {
  uint64_t seed = 10;
  for (const AttentionShape& s : kDecodeShapes) {
    CAPTURE(s.start_pos);
    CAPTURE(s.n_heads);
    CAPTURE(s.n_kv_heads);
    CAPTURE(s.head_dim);
    if (!check_attention(s, seed += 3)) break;
  }
}

TEST_CASE("attention: prefill (n > 1) is causal, from position 0 and after cached positions") {
  uint64_t seed = 50;
  for (const AttentionShape& s : kPrefillShapes) {
    CAPTURE(s.n);
    CAPTURE(s.start_pos);
    CAPTURE(s.n_heads);
    CAPTURE(s.n_kv_heads);
    CAPTURE(s.head_dim);
    if (!check_attention(s, seed += 3)) break;
  }
}

TEST_CASE("attention: scores far from 0 (+100 and -100) neither overflow nor underflow") {
  // Every key gets element 0 = 1 and every query element 0 = +-100 * sqrt(head_dim), so every score is
  // +-100 plus a random O(1) part. exp(100) overflows float (max ~3.4e38 = e^88.7) and exp(-100) is below
  // its smallest normal, so a softmax that does not subtract the max score first returns inf/inf or 0/0.
  // Tolerance: a score near 100 carries fp32 rounding of ~1e-5 (its ulp is 7.6e-6), which moves softmax
  // weights by ~1e-5 relative; 1e-4 absolute on outputs in [-1, 1] is 10x that, while an overflow gives NaN.
  const AttentionShape s{3, 20, 4, 2, 16};
  for (const float offset : {100.0f, -100.0f}) {
    CAPTURE(offset);
    Inputs in = make_inputs(s, offset > 0 ? 91 : 92);
    for (int p = 0; p < s.positions(); ++p)
      for (int g = 0; g < s.n_kv_heads; ++g) in.k_cache[size_t(p) * s.kv_dim() + size_t(g) * s.head_dim] = 1.0f;
    for (int t = 0; t < s.n; ++t)
      for (int h = 0; h < s.n_heads; ++h)
        in.q[(size_t(t) * s.n_heads + h) * s.head_dim] = offset * std::sqrt(float(s.head_dim));
    const auto expected = lab::attention_reference(in.q, in.k_cache, in.v_cache, s);
    const auto actual = run_attention(in, s, 1);
    constexpr double kTolerance = 1e-4;
    if (lab::max_abs_diff(actual, expected) > kTolerance) {
      FAIL_CHECK(diagnose(in, actual, s, 1, kTolerance)
                 << "\n  (Scores are about " << offset << " here: subtract the largest score of each (t, h) before "
                 << "std::exp; softmax is unchanged by it and exp's argument is then <= 0.)");
    }
  }
}

// A check of the tests themselves, not of the student's code: suite lab_self_check, which scripts/lab.sh
// leaves out of the grade (it passes on the untouched stubs too); the full ctest run keeps it.
TEST_CASE("attention: every mistake the hints name is caught: it moves some tested shape's output past the tolerance" * doctest::test_suite("lab_self_check")) {
  // The decode and prefill tests can only fail a mistake that changes the output by more than
  // kAttentionTolerance on a shape they check. For each mistake, the reference computed with it must differ
  // from the correct one by more than the tolerance on at least one of those shapes, with their inputs.
  for (auto mistake : lab::kAttentionMistakes) {
    const std::string hint = lab::attention_hint(mistake);
    CAPTURE(hint);
    int caught = 0, cases = 0;
    double largest_ratio = 0.0;
    auto measure = [&](const AttentionShape& s, uint64_t seed) {
      const Inputs in = make_inputs(s, seed);
      const auto wrong = lab::attention_reference(in.q, in.k_cache, in.v_cache, s, mistake);
      const std::vector<float> wrong_as_float(wrong.begin(), wrong.end());  // what a student's code returns
      const double ratio =
          lab::max_abs_diff(wrong_as_float, lab::attention_reference(in.q, in.k_cache, in.v_cache, s)) /
          lab::kAttentionTolerance;
      largest_ratio = std::max(largest_ratio, ratio);
      caught += ratio > 1.0;
      ++cases;
    };
    uint64_t seed = 10;  // the seeds the two tests above use
    for (const AttentionShape& s : kDecodeShapes) measure(s, seed += 3);
    seed = 50;
    for (const AttentionShape& s : kPrefillShapes) measure(s, seed += 3);
    MESSAGE("caught on " << caught << " of " << cases << " tested shapes, largest error " << largest_ratio
                         << " x the tolerance: " << hint);
    CHECK(caught > 0);
    CHECK(largest_ratio > 100.0);  // not a near miss
  }
}
