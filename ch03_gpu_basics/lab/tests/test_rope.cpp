// test_rope.cpp: ch03 lab, exercise 1: infer::cpu::rope against a float64 reference (lab_checks.h).
//
// Inputs are seeded random floats in [-1, 1]; shapes range from one pair to SmolLM2's heads (9 x 64),
// with positions > 0 so that every angle convention is exercised. On a mismatch the test prints the first
// wrong element and, when the output matches a known mistake, what that mistake is.
#include "infer/cpu/cpu_kernels.h"
#include "lab_checks.h"
#include "test_util.h"

#include <sstream>
#include <string>

using infer::RopeLayout;
using lab::RopeMistake;
using lab::RopeShape;

namespace {

// The rotation base: the original 10000, SmolLM2's 100000 and Llama 3's 500000. Every shape is checked with
// each, so a rope that ignores its theta argument fails (with theta 10000 alone it would pass).
constexpr float kThetas[] = {10000.0f, 100000.0f, 500000.0f};
constexpr float kSmolLM2Theta = 100000.0f;
constexpr float kOriginalTheta = 10000.0f;

const char* layout_name(RopeLayout layout) {
  return layout == RopeLayout::Interleaved ? "Interleaved" : "HalfSplit";
}

// Says what is wrong with `actual` (rope of `input`), for the test's failure message.
std::string diagnose(const std::vector<float>& input, const std::vector<float>& actual, const RopeShape& s,
                     float theta, RopeLayout layout, double tolerance) {
  std::ostringstream out;
  const auto expected = lab::rope_reference(input, s, theta, layout);
  out << layout_name(layout) << ", theta=" << theta << ", n=" << s.n << " tokens, " << s.n_heads << " heads, head_dim=" << s.head_dim
      << ", start_pos=" << s.start_pos << ": max error " << lab::max_abs_diff(actual, expected) << " > tolerance "
      << tolerance << ".";
  if (actual == input) return out.str() + " Nothing was rotated: x came back exactly as it went in.";

  // The first wrong element, located by token, head and pair.
  const int half = s.head_dim / 2;
  for (size_t index = 0; index < actual.size(); ++index) {
    if (std::abs(double(actual[index]) - expected[index]) <= tolerance) continue;
    const int d = int(index % size_t(s.head_dim));
    const int h = int(index / size_t(s.head_dim) % size_t(s.n_heads));
    const int t = int(index / (size_t(s.head_dim) * s.n_heads));
    const bool interleaved = layout == RopeLayout::Interleaved;
    const int i = interleaved ? d / 2 : d % half;
    const int first = interleaved ? 2 * i : i, second = interleaved ? 2 * i + 1 : i + half;
    out << "\n  first wrong value: token " << t << " (position " << s.start_pos + t << "), head " << h
        << ", dimension " << d << ": got " << actual[index] << ", expected " << expected[index] << ".\n  It belongs to"
        << " pair i=" << i << " = dimensions (" << first << ", " << second << ") in the " << layout_name(layout)
        << " layout, angle = " << s.start_pos + t << " * theta^(-" << 2 * i << "/" << s.head_dim << ").";
    const size_t base = index - size_t(d);
    if (actual[base + first] == input[base + first] && actual[base + second] == input[base + second])
      out << "\n  That pair was not rotated at all: did you apply the " << layout_name(layout) << " layout?";
    break;
  }
  for (auto mistake : lab::kRopeMistakes) {
    if (lab::max_abs_diff(actual, lab::rope_reference(input, s, theta, layout, mistake)) <= tolerance) {
      out << "\n  HINT: " << lab::rope_hint(mistake, layout);
      break;
    }
  }
  return out.str();
}



// (n tokens, heads, head_dim, start_pos): one pair; odd head counts; stories260K's heads (8 x 8); SmolLM2's
// (9 x 64, and its 3 KV heads); decode steps (n = 1) late in a sequence; a prefill chunk continuing a cache.
const RopeShape kShapes[] = {
    {1, 1, 2, 5},   {3, 2, 8, 1},  {4, 8, 8, 0},    {2, 3, 16, 17},
    {5, 9, 64, 0},  {1, 9, 64, 513}, {6, 3, 64, 250}, {1, 4, 128, 1000},
};

// Rotates seeded random input with infer::cpu::rope and checks it against the reference. Returns false
// (after one failed check, with the diagnosis) on a mismatch, so a test reports its first failing shape only.
bool check_rope(const RopeShape& s, float theta, RopeLayout layout, int threads, uint64_t seed) {
  const auto input = infer::test::random_floats(size_t(s.n) * s.n_heads * s.head_dim, seed);
  auto actual = input;
  infer::cpu::rope(actual.data(), s.n, s.n_heads, s.head_dim, s.start_pos, theta, layout, threads);
  const double tolerance = lab::rope_tolerance(s);
  const double error = lab::max_abs_diff(actual, lab::rope_reference(input, s, theta, layout));
  const std::string why = error > tolerance ? diagnose(input, actual, s, theta, layout, tolerance) : "";
  CHECK_MESSAGE(error <= tolerance, why << "\n  (threads=" << threads << ", seed=" << seed << ")");
  return error <= tolerance;
}

void check_all_shapes(RopeLayout layout, uint64_t seed) {
  for (float theta : kThetas)
    for (const auto& shape : kShapes)
      for (int threads : {1, 2})
        if (!check_rope(shape, theta, layout, threads, ++seed)) return;
}

}  // namespace

TEST_CASE("rope: Interleaved layout (pairs (2i, 2i+1)) matches the float64 reference") {
  check_all_shapes(RopeLayout::Interleaved, 100);
}

TEST_CASE("rope: HalfSplit layout (pairs (i, i + head_dim/2)) matches the float64 reference") {
  check_all_shapes(RopeLayout::HalfSplit, 200);
}

TEST_CASE("rope: decoding one token at a time equals one call over the whole sequence") {
  // Prefill rotates n tokens in one call (positions start_pos .. start_pos + n - 1); decode rotates one
  // token per call at its own position. Both must give the reference's answer for every token.
  const int n = 6, n_heads = 4, head_dim = 32, start_pos = 40;
  for (auto layout : {RopeLayout::Interleaved, RopeLayout::HalfSplit}) {
    INFO(layout_name(layout));
    const auto input = infer::test::random_floats(size_t(n) * n_heads * head_dim, 300);
    auto batched = input;
    infer::cpu::rope(batched.data(), n, n_heads, head_dim, start_pos, kSmolLM2Theta, layout, 2);
    auto one_by_one = input;
    for (int t = 0; t < n; ++t)
      infer::cpu::rope(one_by_one.data() + size_t(t) * n_heads * head_dim, 1, n_heads, head_dim, start_pos + t,
                       kSmolLM2Theta, layout, 1);
    const RopeShape shape{n, n_heads, head_dim, start_pos};
    const auto expected = lab::rope_reference(input, shape, kSmolLM2Theta, layout);
    const double tolerance = lab::rope_tolerance(shape);
    const double batched_error = lab::max_abs_diff(batched, expected);
    const double decode_error = lab::max_abs_diff(one_by_one, expected);
    CHECK_MESSAGE(batched_error <= tolerance,
                  "one call over " << n << " tokens: "
                                   << (batched_error > tolerance ? diagnose(input, batched, shape, kSmolLM2Theta, layout, tolerance) : ""));
    CHECK_MESSAGE(decode_error <= tolerance, "one call per token (n = 1, start_pos = " << start_pos << " + t)");
  }
}

TEST_CASE("rope: after rotation q.k depends only on the distance between the two positions") {
  // Why RoPE exists: rotating q at position m and k at position n by pos * w leaves q.k a function of
  // m - n. Shift both positions by the same amount and the score must not change; it must also equal
  // the float64 reference's score (a RoPE that rotates nothing would pass the first check alone).
  // (theta 10000 here: the score's change with distance, checked at the end, is largest for it.)
  const int head_dim = 64;
  const auto q = infer::test::random_floats(head_dim, 400), k = infer::test::random_floats(head_dim, 401);
  auto score = [&](int m, int n) {
    auto qr = q, kr = k;
    infer::cpu::rope(qr.data(), 1, 1, head_dim, m, kOriginalTheta, RopeLayout::Interleaved, 1);
    infer::cpu::rope(kr.data(), 1, 1, head_dim, n, kOriginalTheta, RopeLayout::Interleaved, 1);
    double dot = 0.0;
    for (int d = 0; d < head_dim; ++d) dot += double(qr[d]) * kr[d];
    return dot;
  };
  auto reference_score = [&](int m, int n) {
    const auto qr = lab::rope_reference(q, {1, 1, head_dim, m}, kOriginalTheta, RopeLayout::Interleaved);
    const auto kr = lab::rope_reference(k, {1, 1, head_dim, n}, kOriginalTheta, RopeLayout::Interleaved);
    double dot = 0.0;
    for (int d = 0; d < head_dim; ++d) dot += qr[d] * kr[d];
    return dot;
  };
  // 64 products of rotated values each within rope_tolerance of the reference (|values| <= sqrt(2)):
  // the score moves by at most 64 * 2 * sqrt(2) * tolerance; 0.05 is that bound at positions ~ 600.
  const double tolerance = 0.05;
  for (int distance : {0, 1, 7, 50}) {
    for (int shift : {0, 3, 100, 500}) {
      const int m = distance + shift, n = shift;
      INFO("query position " << m << ", key position " << n);
      CHECK(std::abs(score(m, n) - score(distance, 0)) <= tolerance);
      CHECK(std::abs(score(m, n) - reference_score(m, n)) <= tolerance);
    }
  }
  // The score must actually change with the distance (the reference's changes by ~1 here).
  CHECK(std::abs(score(7, 0) - score(0, 0)) > 10 * tolerance);
}

// A check of the tests themselves, not of the student's code: suite lab_self_check, which scripts/lab.sh
// leaves out of the grade (it passes on the untouched stubs too); the full ctest run keeps it.
TEST_CASE("rope: every mistake the hints name is caught: it moves the output of some tested shape past the tolerance" * doctest::test_suite("lab_self_check")) {
  // The tests above can only fail a mistake that changes the output by more than rope_tolerance on a shape
  // they use. For each mistake, the reference computed with that mistake must differ from the correct one by
  // more than the tolerance, on at least one (shape, theta, layout) that the Interleaved/HalfSplit tests check.
  for (auto mistake : lab::kRopeMistakes) {
    const std::string hint = lab::rope_hint(mistake, RopeLayout::Interleaved);
    CAPTURE(hint);
    int caught = 0, cases = 0;
    double largest_ratio = 0.0;
    for (auto layout : {RopeLayout::Interleaved, RopeLayout::HalfSplit})
      for (float theta : kThetas)
        for (const auto& shape : kShapes) {
          const auto input = infer::test::random_floats(size_t(shape.n) * shape.n_heads * shape.head_dim, 7);
          const auto wrong = lab::rope_reference(input, shape, theta, layout, mistake);
          const std::vector<float> wrong_as_float(wrong.begin(), wrong.end());  // what a student's code returns
          const double ratio = lab::max_abs_diff(wrong_as_float, lab::rope_reference(input, shape, theta, layout)) /
                               lab::rope_tolerance(shape);
          largest_ratio = std::max(largest_ratio, ratio);
          caught += ratio > 1.0;
          ++cases;
        }
    MESSAGE("caught on " << caught << " of " << cases << " checked cases, largest error " << largest_ratio
                         << " x the tolerance: " << hint);
    CHECK(caught > 0);
    CHECK(largest_ratio > 100.0);  // not a near miss: a wrong convention moves outputs by ~0.1 to 1
  }
}
