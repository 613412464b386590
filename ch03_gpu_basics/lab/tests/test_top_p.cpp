// test_top_p.cpp: ch03 lab, exercise 2: infer::select_nucleus (top-p) against the definition
// (lab::nucleus_reference: sort everything, take the shortest prefix whose float64 mass reaches top_p).
#include "infer/engine/sampler.h"
#include "infer/engine/sampling_filters.h"
#include "lab_checks.h"
#include "test_util.h"

#include <algorithm>
#include <random>
#include <set>
#include <sstream>
#include <string>

using lab::Candidates;

namespace {

std::string show_ids(const std::vector<int>& ids, size_t limit = 12) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < ids.size() && i < limit; ++i) out << (i ? " " : "") << ids[i];
  if (ids.size() > limit) out << " ... (" << ids.size() << " ids)";
  out << "]";
  return out.str();
}

// Runs select_nucleus on a copy of `candidates` and compares keep and the kept prefix with the reference.
// Returns false after a failed check (with a hint), so loops can stop at their first failing case.
bool check_nucleus(const Candidates& candidates, float top_p) {
  const auto expected = lab::nucleus_reference(candidates, top_p);
  auto actual_candidates = candidates;
  const size_t keep = infer::select_nucleus(actual_candidates, top_p);
  INFO("vocabulary " << candidates.size() << ", top_p " << top_p);
  if (keep != expected.size()) {
    std::string hint;
    if (keep == candidates.size()) hint = " You kept every candidate: top-p had no effect.";
    else if (keep == expected.size() + 1) hint = " One too many: stop at the first prefix whose mass is >= top_p.";
    else if (keep + 1 == expected.size()) hint = " One too few: the token that brings the mass to top_p is kept.";
    FAIL_CHECK("returned keep = " << keep << ", expected " << expected.size() << "." << hint);
    return false;
  }
  std::vector<int> actual(keep);
  for (size_t i = 0; i < keep; ++i) actual[i] = actual_candidates[i].second;
  if (actual != expected) {
    const bool same_set = std::set<int>(actual.begin(), actual.end()) == std::set<int>(expected.begin(), expected.end());
    FAIL_CHECK("the first " << keep << " candidates hold ids " << show_ids(actual) << ", expected "
                            << show_ids(expected) << "."
                            << (same_set ? " The right tokens in the wrong order: leave them in rank order "
                                           "(higher probability first, then the lower id)."
                                         : " Rank by probability, highest first (ties: lower id first)."));
  }
  CHECK(actual == expected);
  return actual == expected;
}

Candidates shuffled(Candidates candidates, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::shuffle(candidates.begin(), candidates.end(), rng);
  return candidates;
}

}  // namespace

TEST_CASE("top_p: a worked example (0.5 0.3 0.15 0.05 given in shuffled order)") {
  // Ids 0..3 hold 0.15, 0.5, 0.05, 0.3: ranked, ids 1, 3, 0, 2 with running mass 0.5, 0.8, 0.95, 1.0.
  const Candidates example{{0.15f, 0}, {0.5f, 1}, {0.05f, 2}, {0.3f, 3}};
  struct Case {
    float top_p;
    size_t keep;
  };
  for (const Case c : {Case{0.3f, 1}, Case{0.5f, 1}, Case{0.6f, 2}, Case{0.9f, 3}, Case{0.97f, 4}}) {
    CHECK(lab::nucleus_reference(example, c.top_p).size() == c.keep);  // the reference agrees with the comment
    check_nucleus(example, c.top_p);
  }
}

TEST_CASE("top_p: matches the definition on random distributions (10 to 50000 tokens)") {
  // Logits spread from peaked (scale 8: a few tokens hold most of the mass) to flat (scale 0.5: the
  // nucleus holds thousands of tokens), vocabularies up to SmolLM2's size.
  std::mt19937_64 rng(500);
  int checked = 0;
  for (size_t vocabulary : {size_t(10), size_t(300), size_t(5000), size_t(50000)}) {
    for (float scale : {0.5f, 2.0f, 8.0f}) {
      const auto logits = infer::test::random_floats(vocabulary, rng(), -scale, scale);
      const auto candidates = lab::softmax_candidates(logits);
      for (float top_p : {0.1f, 0.5f, 0.9f, 0.95f, 0.999f}) {
        if (lab::distance_to_a_prefix_sum(candidates, top_p) < 1e-7) continue;  // a rounding tie: no answer
        if (!check_nucleus(candidates, top_p)) return;
        ++checked;
      }
    }
  }
  CHECK(checked >= 55);  // of 60: only a rare rounding tie is left out
}

TEST_CASE("top_p: equal probabilities rank the lower token id first") {
  // Ten tokens of 0.1: the running mass passes 0.35 at the fourth, so ids 0, 1, 2, 3 are kept, in order.
  Candidates uniform;
  for (int id = 0; id < 10; ++id) uniform.emplace_back(0.1f, id);
  check_nucleus(shuffled(uniform, 1), 0.35f);
  // Ties mixed with distinct values: 0.3 (id 7), then 0.2 for ids 2, 5, 8, then 0.1 for ids 0, 1.
  const Candidates mixed{{0.1f, 0}, {0.1f, 1}, {0.2f, 2}, {0.2f, 5}, {0.3f, 7}, {0.2f, 8}};
  check_nucleus(shuffled(mixed, 2), 0.65f);  // 0.3 + 0.2 + 0.2 = 0.7 >= 0.65: ids 7, 2, 5
}

TEST_CASE("top_p: a tiny top_p keeps exactly the most likely token") {
  const auto candidates = lab::softmax_candidates(infer::test::random_floats(1000, 600, -3.0f, 3.0f));
  check_nucleus(candidates, 1e-6f);
}

TEST_CASE("top_p: the sampler draws only from the nucleus") {
  // End to end through infer::Sampler (temperature 1, top_p 0.6): every draw must come from the
  // reference nucleus, and with 4000 draws every nucleus token (p > 1% each here) shows up.
  const auto logits = infer::test::random_floats(200, 700, -4.0f, 4.0f);
  const float top_p = 0.6f;
  const auto nucleus = lab::nucleus_reference(lab::softmax_candidates(logits), top_p);
  const std::set<int> allowed(nucleus.begin(), nucleus.end());
  infer::Sampler sampler(infer::SamplerConfig{.temperature = 1.0f, .top_p = top_p, .seed = 7});
  std::set<int> drawn, outside;
  for (int draw = 0; draw < 4000; ++draw) {
    auto row = logits;
    const int token = sampler.sample(row, {});
    (allowed.count(token) ? drawn : outside).insert(token);
  }
  INFO("nucleus " << show_ids(nucleus) << " (" << nucleus.size() << " of 200 tokens)");
  if (!outside.empty())
    FAIL_CHECK("the sampler drew " << outside.size() << " distinct tokens outside the nucleus, e.g. "
                                   << *outside.begin() << ": is select_nucleus returning the nucleus size?");
  CHECK(outside.empty());
  CHECK(drawn.size() == allowed.size());
}
