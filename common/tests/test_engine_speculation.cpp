// test_engine_speculation.cpp: speculative decoding inside the batching engine (EngineOptions::speculation, ch08).
//
//   greedy: every request's tokens under engine speculation equal plain decoding's token for token (a synthetic
//           model alone and batched with preemption, prefix sharing and chunked prefill; stories260K's golden
//           text), for gamma 1, 3 and 8, with guesses both accepted and rejected; the pool is all free after
//   sampling: over a fake model, the first two tokens of thousands of seeded requests follow the plain
//           distribution (Pearson's chi-square, significance level 0.001): the rule min(1, p/q) and the residual
//           draw of the engine's own verification
//   policy: the batch limit follows the cost curve (flat: always, linear: never), and a burst of requests
//           switches speculation off while the batch is above the limit and back on as it drains
#include "infer/core/error.h"
#include "infer/engine/engine.h"
#include "infer/engine/speculative.h"
#include "infer/formats/synthetic.h"

#include "chi_square.h"
#include "fake_runner.h"
#include "golden_util.h"
#include "test_util.h"

#include <functional>
#include <map>
#include <random>

using namespace infer;
using namespace infer::test;

namespace {

struct SpecJob {
  std::vector<int> prompt;
  int max_tokens;
  int arrive_at_step;
  SamplerConfig sampler{};
};

// Prompts that repeat a random phrase (so prompt lookup has something to propose), some sharing a prefix.
std::vector<SpecJob> repetitive_jobs(int count, int vocab, int max_new, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<int> shared;
  for (int i = 0; i < 8; ++i) shared.push_back(uniform(1, vocab - 1));
  std::vector<SpecJob> jobs;
  for (int i = 0; i < count; ++i) {
    SpecJob job;
    if (i % 2 == 0) job.prompt = shared;
    std::vector<int> phrase;
    for (int j = uniform(2, 5); j > 0; --j) phrase.push_back(uniform(1, vocab - 1));
    for (int r = uniform(2, 4); r > 0; --r) job.prompt.insert(job.prompt.end(), phrase.begin(), phrase.end());
    job.max_tokens = uniform(max_new / 2, max_new);
    job.arrive_at_step = i < count / 2 ? 0 : uniform(1, max_new);
    jobs.push_back(job);
  }
  return jobs;
}

// Runs the jobs through `engine`; returns each job's tokens. `on_step` sees the engine after every step.
std::vector<std::vector<int>> run_jobs(Engine& engine, const std::vector<SpecJob>& jobs, std::vector<int> stop_tokens = {},
                                       const std::function<void(const Engine&, int decoding_before)>& on_step = {}) {
  std::map<RequestId, std::vector<int>> tokens;
  std::map<size_t, RequestId> ids;
  int step = 0;
  while (ids.size() < jobs.size() || engine.has_work()) {
    for (size_t i = 0; i < jobs.size(); ++i)
      if (!ids.count(i) && jobs[i].arrive_at_step <= step) {
        RequestParams params;
        params.max_tokens = jobs[i].max_tokens;
        params.stop_tokens = stop_tokens;
        params.sampler = jobs[i].sampler;
        ids[i] = engine.add_request(jobs[i].prompt, params, [&tokens](const RequestEvent& e) {
          if (e.token >= 0) tokens[e.id].push_back(e.token);
          if (e.finish == FinishReason::error) FAIL_CHECK("request " << e.id << ": " << e.error);
        });
      }
    const int running_before = engine.stats().running;
    engine.step();
    engine.block_manager().check_invariants();
    if (on_step) on_step(engine, running_before);
    REQUIRE(++step < 200000);
  }
  const EngineStats stats = engine.stats();
  CHECK(stats.blocks_free == stats.blocks_total);  // the pool is all free again
  std::vector<std::vector<int>> out;
  for (size_t i = 0; i < jobs.size(); ++i) out.push_back(tokens[ids[i]]);
  return out;
}

EngineSpeculation prompt_lookup(int gamma) {
  EngineSpeculation spec;
  spec.draft = EngineDraft::prompt_lookup;
  spec.gamma = gamma;
  return spec;
}

}  // namespace

TEST_CASE("engine speculation: the batch limit follows the cost curve") {
  EngineSpeculation spec = prompt_lookup(4);
  // Perfectly bandwidth-bound (a pass costs the same whatever its width): speculation always pays.
  spec.pass_cost = {{1, 1.0}, {2, 1.0}};
  CHECK(speculation_batch_limit(spec, 0.6, 64) == 65);
  // Compute-bound (C(n) = n): 1 + gamma tokens cost 1 + gamma times one, E < 1 + gamma: never.
  spec.pass_cost = {{1, 1.0}, {2, 2.0}};
  CHECK(speculation_batch_limit(spec, 0.6, 64) == 1);
  CHECK(speculation_gain(spec, 1, 0.6) == doctest::Approx(expected_tokens_per_round(0.6, 4) / 5.0));
  // The default curve (a measured CPU): pays for small batches only, and less as the batch grows.
  spec.pass_cost = EngineSpeculation{}.pass_cost;
  const int limit = speculation_batch_limit(spec, 0.6, 64);
  CHECK(limit > 1);
  CHECK(limit < 64);
  CHECK(speculation_gain(spec, limit - 1, 0.6) >= spec.min_gain);
  CHECK(speculation_gain(spec, limit, 0.6) < spec.min_gain);
  for (int b = 1; b < 32; ++b) CHECK(speculation_gain(spec, b + 1, 0.6) <= speculation_gain(spec, b, 0.6) + 1e-12);
  CHECK(speculation_batch_limit(spec, 0.9, 64) >= limit);  // better guesses pay longer
  spec.max_batch = 3;
  CHECK(speculation_batch_limit(spec, 0.6, 64) == 3);  // a fixed threshold
  // Malformed curves are refused with the numbers.
  spec.pass_cost = {{2, 1.0}};
  CHECK_THROWS_WITH_AS(speculation_gain(spec, 1, 0.6), doctest::Contains("start with (1"), Error);
  spec.pass_cost = {{1, 1.0}, {4, 0.5}};
  CHECK_THROWS_WITH_AS(speculation_gain(spec, 1, 0.6), doctest::Contains("C(4) = 0.5"), Error);
  EngineOptions options;
  options.speculation = prompt_lookup(0);
  CHECK_THROWS_WITH_AS(Engine(std::make_unique<FakeRunner>(16, 4), options), doctest::Contains("gamma must be >= 1"), Error);
}

TEST_CASE("engine speculation: greedy outputs equal plain decoding on a synthetic model (alone, batched, preemption)") {
  ModelFile file = model_file_from_synthetic(make_synthetic_model(synthetic_preset("tiny"), 21));
  auto backend = make_cpu_backend(2);
  Weights weights(file, WeightFormat::F32, *backend);
  Transformer model(weights, *backend, 64);
  const std::vector<SpecJob> jobs = repetitive_jobs(10, file.config.vocab_size, 32, 7);

  EngineOptions plain;
  plain.block_size = 4;
  plain.num_blocks = 40;       // 160 positions for up to 6 sequences of up to 60: preemption is forced
  plain.max_batch = 6;
  plain.max_step_tokens = 24;  // prompts of up to 28 tokens: chunked
  Engine plain_engine(model, plain);
  const auto expected = run_jobs(plain_engine, jobs);
  for (size_t i = 0; i < 3; ++i)  // the plain engine itself against ch05's decoder (test_engine.cpp does the rest)
    CHECK(expected[i] == CachedGenerator(model).generate(jobs[i].prompt, greedy_options(jobs[i].max_tokens)).tokens);

  for (int gamma : {1, 3, 8}) {
    CAPTURE(gamma);
    EngineOptions options = plain;
    options.speculation = prompt_lookup(gamma);
    options.speculation.max_batch = 100;  // speculate at every batch size: this test is about the outputs
    Engine engine(model, options);
    const auto got = run_jobs(engine, jobs);
    for (size_t i = 0; i < jobs.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i] == expected[i]);
    }
    const EngineStats stats = engine.stats();
    CHECK(stats.preemptions > 0);
    CHECK(stats.spec_rounds > 0);
    CHECK(stats.spec_accepted > 0);                     // some guesses were right ...
    CHECK(stats.spec_accepted < stats.spec_proposed);   // ... and some wrong: both paths ran
    CHECK(stats.generated_tokens == plain_engine.stats().generated_tokens);

    // Alone (one request per engine), and with a stop token taken from the plain output.
    const int stop = expected[1][expected[1].size() / 2];
    for (size_t i = 0; i < 3; ++i) {
      Engine alone(model, options);
      SpecJob job = jobs[i];
      job.arrive_at_step = 0;
      CHECK(run_jobs(alone, {job})[0] == expected[i]);
      Engine plain_alone(model, plain);
      Engine spec_alone(model, options);
      CHECK(run_jobs(spec_alone, {job}, {stop})[0] == run_jobs(plain_alone, {job}, {stop})[0]);
    }
  }
}

TEST_CASE("engine speculation: stories260K's golden text with prompt lookup, sharing its batches") {
  INFER_MODEL_FILE(path, test::kStories260K);
  INFER_MODEL_FILE(tokenizer_path, test::kTok512);
  INFER_MODEL_FILE(golden_path, test::kGoldenText);
  const ModelFile file = load_model_file(path.string());
  const auto tokenizer = load_llama2c_tokenizer(tokenizer_path.string(), file.config.vocab_size);
  const int bos = tokenizer->bos_id();
  auto backend = make_cpu_backend(2);
  Weights weights(file, WeightFormat::F32, *backend);
  Transformer model(weights, *backend, 64);

  std::vector<SpecJob> jobs = repetitive_jobs(4, file.config.vocab_size, 60, 9);
  jobs.insert(jobs.begin(), SpecJob{{bos}, kGoldenSteps, 0});
  EngineOptions options;
  options.block_size = 16;
  options.num_blocks = 40;
  options.max_batch = 4;
  options.max_step_tokens = 32;
  options.speculation = prompt_lookup(4);
  options.speculation.max_batch = 100;
  Engine engine(model, options);
  const auto got = run_jobs(engine, jobs, {bos});
  CHECK(decode_as_printed(*tokenizer, bos, got[0]) == read_text(golden_path, kGoldenTextBytes));
  for (size_t i = 1; i < jobs.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == CachedGenerator(model).generate(jobs[i].prompt, greedy_options(jobs[i].max_tokens, {bos})).tokens);
  }
  CHECK(engine.stats().spec_accepted > 0);
}

TEST_CASE("engine speculation: switched off while the batch is above the cost curve's limit, back on as it drains") {
  const int vocab = 8;  // a small vocabulary: prompt lookup's guesses are right now and then
  EngineOptions options;
  options.max_batch = 32;
  options.speculation = prompt_lookup(4);  // the default (measured) cost curve
  Engine engine(std::make_unique<FakeRunner>(400, 4, vocab), options);
  std::vector<SpecJob> jobs = repetitive_jobs(24, vocab, 40, 3);
  for (size_t i = 0; i < jobs.size(); ++i) {  // a burst, then a drain: lengths spread from 4 to 50
    jobs[i].arrive_at_step = 0;
    jobs[i].max_tokens = 4 + int(i) * 2;
  }
  int above_limit_steps = 0, speculating_steps = 0;
  const auto got = run_jobs(engine, jobs, {}, [&](const Engine& e, int running_before) {
    const EngineStats s = e.stats();
    if (running_before >= s.spec_batch_limit) {
      ++above_limit_steps;
      CHECK_FALSE(s.speculating);  // every running sequence was decoding (no prefill after the first steps)
    }
    if (s.speculating && running_before > 0) {
      ++speculating_steps;
      CHECK(running_before < s.spec_batch_limit);
    }
  });
  for (size_t i = 0; i < jobs.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == fake_reference_tokens(jobs[i].prompt, vocab, jobs[i].max_tokens, SamplerConfig{}));
  }
  const EngineStats stats = engine.stats();
  INFO("limit " << stats.spec_batch_limit << ", acceptance " << stats.spec_acceptance);
  CHECK(above_limit_steps > 0);
  CHECK(speculating_steps > 0);
  CHECK(stats.spec_switched_off >= 1);
  CHECK(stats.spec_switched_on >= 1);   // on at first, off for the burst, on again as it drains
  CHECK(stats.spec_rounds > 0);
}

TEST_CASE("engine speculation: sampling follows the plain distribution (chi-square, significance 0.001)") {
  // A prompt holding every bigram (0, t): whatever the first token t1 (drawn by the prefill pass), prompt lookup
  // guesses the next ones, so t2 and t3 come from speculative rounds (gamma 1: a guess, then the bonus token
  // when it is accepted; gamma 2: two guesses). Thousands of requests with their own seeds, batched; the pair
  // (t2, t3) must follow sum over t1 of p(t1) p(t2 | t1) p(t3 | t1, t2), from the fake model's logits alone.
  const int vocab = 6;
  const std::vector<int> prompt = {0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0};
  const std::vector<std::pair<const char*, SamplerConfig>> configs = {
      {"temperature 2", SamplerConfig{2.0f}}, {"temperature 1.5, top-k 4", SamplerConfig{1.5f, 4}}};
  for (const auto& [name, base] : configs) {
    Sampler sampler(base);
    TokenDistribution dist;
    std::vector<float> logits(static_cast<size_t>(vocab));
    auto distribution_after = [&](const std::vector<int>& context) {
      uint64_t h = 0;
      for (int p = 0; p < int(context.size()); ++p) h = fake_mix(h ^ uint64_t(fake_slot_value(context[size_t(p)], p)));
      fake_logits(h, vocab, logits.data());
      sampler.distribution(logits, context, dist);
      std::vector<float> dense(static_cast<size_t>(vocab));
      dist.to_dense(dense);
      return dense;
    };
    std::vector<double> probs(size_t(vocab * vocab), 0.0);
    const std::vector<float> p1 = distribution_after(prompt);
    for (int t1 = 0; t1 < vocab; ++t1) {
      std::vector<int> context = prompt;
      context.push_back(t1);
      const std::vector<float> p2 = distribution_after(context);
      for (int t2 = 0; t2 < vocab; ++t2) {
        context.push_back(t2);
        const std::vector<float> p3 = distribution_after(context);
        context.pop_back();
        for (int t3 = 0; t3 < vocab; ++t3)
          probs[size_t(t2 * vocab + t3)] += double(p1[size_t(t1)]) * p2[size_t(t2)] * p3[size_t(t3)];
      }
    }

    // gamma 1 and 2 with the right rule; gamma 2 accepting every guess (a wrong rule) must fail the test.
    using Rule = bool (*)(double, double, double);
    const Rule right = accept_draft_token;
    const Rule keep_every_guess = [](double, double, double) { return true; };
    for (const auto& [gamma, rule] : {std::pair{1, right}, std::pair{2, right}, std::pair{2, keep_every_guess}}) {
      const bool wrong = rule != right;
      CAPTURE(name);
      CAPTURE(gamma);
      CAPTURE(wrong);
      constexpr int kSamples = 4000;
      std::vector<SpecJob> jobs(kSamples);
      for (int i = 0; i < kSamples; ++i) {
        jobs[size_t(i)] = {prompt, 4, 0, base};
        jobs[size_t(i)].sampler.seed = 1000 + uint64_t(i);
      }
      EngineOptions options;
      options.max_batch = 64;
      options.speculation = prompt_lookup(gamma);
      options.speculation.max_batch = 1000;
      options.speculation.accept_rule = rule;
      Engine engine(std::make_unique<FakeRunner>(800, 4, vocab), options);
      const auto got = run_jobs(engine, jobs);
      std::vector<int> counts(size_t(vocab * vocab), 0);
      for (const auto& tokens : got) {
        REQUIRE(tokens.size() == 4);
        ++counts[size_t(tokens[1] * vocab + tokens[2])];
      }
      const auto [statistic, df] = chi_square(counts, probs, kSamples);
      INFO("chi-square " << statistic << " against critical " << chi_square_critical_001(df) << " (df " << df << ")");
      CHECK((statistic < chi_square_critical_001(df)) == !wrong);
      if (wrong) continue;
      const EngineStats stats = engine.stats();
      INFO("rounds " << stats.spec_rounds << ", proposed " << stats.spec_proposed << ", accepted " << stats.spec_accepted);
      CHECK(stats.spec_rounds >= uint64_t(kSamples));  // every request's second step was a speculative round
      CHECK(stats.spec_accepted > uint64_t(kSamples / 20));
      CHECK(stats.spec_accepted < stats.spec_proposed);
    }
  }
}

TEST_CASE("engine speculation: a request asking for logprobs decodes plainly and gets them on every token") {
  ModelFile file = model_file_from_synthetic(make_synthetic_model(synthetic_preset("tiny"), 21));
  auto backend = make_cpu_backend(2);
  Weights weights(file, WeightFormat::F32, *backend);
  Transformer model(weights, *backend, 64);
  const std::vector<SpecJob> jobs = repetitive_jobs(4, file.config.vocab_size, 24, 11);
  EngineOptions options;
  options.block_size = 4;
  options.num_blocks = 80;
  options.speculation = prompt_lookup(4);
  options.speculation.max_batch = 100;
  EngineOptions plain_options;  // the same pool, no speculation
  plain_options.block_size = 4;
  plain_options.num_blocks = 80;
  Engine plain_engine(model, plain_options);
  const auto expected = run_jobs(plain_engine, jobs);

  Engine engine(model, options);
  std::map<RequestId, std::vector<int>> tokens;
  std::map<RequestId, int> with_logprobs;
  std::vector<RequestId> ids;
  for (size_t i = 0; i < jobs.size(); ++i) {
    RequestParams params;
    params.max_tokens = jobs[i].max_tokens;
    params.logprobs = i % 2 == 0 ? 3 : -1;  // every other request asks
    ids.push_back(engine.add_request(jobs[i].prompt, params, [&](const RequestEvent& e) {
      if (e.token < 0) return;
      tokens[e.id].push_back(e.token);
      if (e.logprobs) ++with_logprobs[e.id];
    }));
  }
  while (engine.has_work()) engine.step();
  CHECK(engine.stats().spec_rounds > 0);  // the others speculated
  for (size_t i = 0; i < jobs.size(); ++i) {
    CAPTURE(i);
    CHECK(tokens[ids[i]] == expected[i]);
    CHECK(with_logprobs[ids[i]] == (i % 2 == 0 ? int(expected[i].size()) : 0));
  }
  CHECK(engine.stats().blocks_free == engine.stats().blocks_total);
}
