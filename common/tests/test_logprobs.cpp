// test_logprobs.cpp: per-token log-probabilities (engine/logprobs.h) against a readable reference, and the
// engine carrying them in its events (over the fake model of fake_runner.h, so the logits of every position
// can be recomputed from the tokens alone).
#include "infer/core/error.h"
#include "infer/engine/engine.h"
#include "infer/engine/logprobs.h"

#include "fake_runner.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

using namespace infer;
using namespace infer::test;

namespace {

// The textbook definition, no tricks: log(exp(l_t) / sum_v exp(l_v)), in long double.
std::vector<double> reference_log_softmax(const std::vector<float>& logits) {
  long double sum = 0;
  for (float l : logits) sum += std::exp((long double)l);
  std::vector<double> out;
  for (float l : logits) out.push_back(double(std::log(std::exp((long double)l) / sum)));
  return out;
}

// The reference top-N: sort every id by (logprob desc, id asc), keep the first N.
std::vector<int> reference_top(const std::vector<double>& logprobs, int n) {
  std::vector<int> ids(logprobs.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int(i);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return logprobs[size_t(a)] > logprobs[size_t(b)]; });
  ids.resize(size_t(n));
  return ids;
}

// The fake model's logits after `tokens` (what FakeRunner computes through its KV pool).
std::vector<float> fake_row(const std::vector<int>& tokens, int vocab) {
  uint64_t h = 0;
  for (int p = 0; p < int(tokens.size()); ++p) h = fake_mix(h ^ uint64_t(fake_slot_value(tokens[size_t(p)], p)));
  std::vector<float> row(static_cast<size_t>(vocab));
  fake_logits(h, vocab, row.data());
  return row;
}

}  // namespace

TEST_CASE("logprobs: the token's logprob and the top-N equal log_softmax of a readable reference (random rows, ties)") {
  std::mt19937_64 rng(14);
  for (int trial = 0; trial < 50; ++trial) {
    const int vocab = 1 + int(rng() % 300);
    std::vector<float> logits(static_cast<size_t>(vocab));
    std::normal_distribution<float> normal(0.0f, 4.0f);
    for (float& l : logits) l = trial % 5 == 0 ? float(int(normal(rng))) : normal(rng);  // integers: many ties
    if (trial % 7 == 0) logits[0] = 80.0f;  // a large logit: exp without the max subtracted would overflow float
    const std::vector<double> expected = reference_log_softmax(logits);
    const int top_n = int(rng() % (kMaxTopLogprobs + 1));
    const int token = int(rng() % uint64_t(vocab));
    const TokenLogprobs got = compute_token_logprobs(logits, token, top_n);
    CHECK(got.logprob == doctest::Approx(expected[size_t(token)]).epsilon(1e-5));
    CHECK(got.logprob <= 0.0f);
    const std::vector<int> top = reference_top(expected, std::min(top_n, vocab));
    REQUIRE(got.top.size() == top.size());
    for (size_t i = 0; i < top.size(); ++i) {
      CHECK(got.top[i].token == top[i]);
      CHECK(got.top[i].logprob == doctest::Approx(expected[size_t(top[i])]).epsilon(1e-5));
      if (i > 0) CHECK(got.top[i].logprob <= got.top[i - 1].logprob);  // sorted, most likely first
    }
    if (!got.top.empty()) CHECK(got.top[0].token == argmax(logits));  // the same tie rule as greedy
  }
}

TEST_CASE("logprobs: bad input is an error naming the problem, not a crash") {
  const std::vector<float> row = {1.0f, 2.0f, 3.0f};
  CHECK_THROWS_WITH_AS(compute_token_logprobs({}, 0, 0), doctest::Contains("empty"), Error);
  CHECK_THROWS_WITH_AS(compute_token_logprobs(row, 3, 0), doctest::Contains("outside the vocabulary of 3"), Error);
  CHECK_THROWS_WITH_AS(compute_token_logprobs(row, 0, 21), doctest::Contains("top_n"), Error);
  CHECK_THROWS_WITH_AS(compute_token_logprobs(std::vector<float>{1.0f, NAN}, 0, 1), doctest::Contains("NaN"), Error);
  CHECK_THROWS_WITH_AS(compute_token_logprobs(std::vector<float>{-INFINITY, -INFINITY}, 0, 1),
                       doctest::Contains("finite"), Error);
}

TEST_CASE("engine scheduler: logprobs in the events equal log_softmax of the raw logits, requests without get none") {
  constexpr int kVocab = 50;
  Engine engine(std::make_unique<FakeRunner>(64, 4, kVocab), EngineOptions{});
  struct Got {
    std::vector<int> tokens;
    std::vector<std::optional<TokenLogprobs>> logprobs;
  };
  std::map<RequestId, Got> got;
  auto collect = [&](const RequestEvent& e) {
    if (e.token < 0) {
      CHECK(!e.logprobs);  // finish events without a token carry none
      return;
    }
    got[e.id].tokens.push_back(e.token);
    got[e.id].logprobs.push_back(e.logprobs);
  };
  const std::vector<int> prompt = {3, 14, 15, 9, 26, 5, 35};
  RequestParams greedy;
  greedy.max_tokens = 12;
  greedy.logprobs = 5;
  RequestParams plain = greedy;  // the same request without logprobs
  plain.logprobs = -1;
  RequestParams penalized = greedy;  // sampled with penalties and a temperature: logprobs stay the raw model's
  penalized.logprobs = 20;
  penalized.sampler.temperature = 0.8f;
  penalized.sampler.presence_penalty = 1.5f;
  penalized.sampler.frequency_penalty = 0.5f;
  penalized.sampler.seed = 7;
  const RequestId a = engine.add_request(prompt, greedy, collect);
  const RequestId b = engine.add_request(prompt, plain, collect);
  const RequestId c = engine.add_request(prompt, penalized, collect);
  while (engine.has_work()) engine.step();

  CHECK(got[a].tokens == got[b].tokens);  // asking for logprobs changes nothing else
  for (const auto& lp : got[b].logprobs) CHECK(!lp);
  for (const RequestId id : {a, c}) {
    const RequestParams& params = id == a ? greedy : penalized;
    CAPTURE(id);
    REQUIRE(got[id].tokens.size() == size_t(params.max_tokens));
    std::vector<int> context = prompt;
    for (size_t i = 0; i < got[id].tokens.size(); ++i) {
      const int token = got[id].tokens[i];
      REQUIRE(got[id].logprobs[i].has_value());
      const TokenLogprobs& lp = *got[id].logprobs[i];
      const std::vector<float> row = fake_row(context, kVocab);
      const std::vector<double> expected = reference_log_softmax(row);
      CHECK(lp.logprob == doctest::Approx(expected[size_t(token)]).epsilon(1e-5));
      const std::vector<int> top = reference_top(expected, params.logprobs);
      REQUIRE(lp.top.size() == top.size());
      for (size_t k = 0; k < top.size(); ++k) CHECK(lp.top[k].token == top[k]);
      if (id == a) {  // greedy without penalties: the sampled token is the most likely one
        CHECK(lp.top[0].token == token);
        CHECK(lp.top[0].logprob == lp.logprob);
      }
      context.push_back(token);
    }
  }
  CHECK(engine.stats().blocks_free == engine.stats().blocks_total);
}

TEST_CASE("engine scheduler: logprobs outside [-1, 20] are refused with the value") {
  Engine engine(std::make_unique<FakeRunner>(16, 4), EngineOptions{});
  RequestParams params;
  params.logprobs = 21;
  CHECK_THROWS_WITH_AS(engine.add_request({1, 2}, params, nullptr), doctest::Contains("got 21"), Error);
  params.logprobs = -2;
  CHECK_THROWS_WITH_AS(engine.add_request({1, 2}, params, nullptr), doctest::Contains("got -2"), Error);
  CHECK(!engine.has_work());
}
