// test_workload.cpp: the seeded workload generator, the percentile definition and run_workload's
// bookkeeping (over the fake model of fake_runner.h).
#include "infer/core/error.h"
#include "infer/engine/workload.h"

#include "fake_runner.h"
#include "test_util.h"

using namespace infer;
using namespace infer::test;

TEST_CASE("workload: seeded, within its ranges, shared prefix in front, Poisson arrivals") {
  WorkloadOptions options;
  options.requests = 200;
  options.rate = 50.0;
  options.prompt = {LengthDistribution::Kind::uniform, 3, 9, 0};
  options.output = {LengthDistribution::Kind::geometric, 2, 40, 10.0};
  options.shared_prefix = 5;
  options.token_min = 10;
  options.token_max = 20;
  options.seed = 4;
  const auto a = make_workload(options);
  const auto b = make_workload(options);
  REQUIRE(a.size() == 200);
  double previous = -1;
  double output_sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].prompt == b[i].prompt);  // same seed, same workload
    CHECK(a[i].max_tokens == b[i].max_tokens);
    CHECK(a[i].prompt.size() >= 8);
    CHECK(a[i].prompt.size() <= 14);
    CHECK(std::equal(a[i].prompt.begin(), a[i].prompt.begin() + 5, a[0].prompt.begin()));  // the shared prefix
    for (int t : a[i].prompt) CHECK((t >= 10 && t < 20));
    CHECK(a[i].max_tokens >= 2);
    CHECK(a[i].max_tokens <= 40);
    CHECK(a[i].arrival_s >= previous);
    previous = a[i].arrival_s;
    output_sum += a[i].max_tokens;
  }
  // 199 exponential gaps of mean 1/50 s: the last arrival near 4 s (loose: +-50%).
  CHECK(a.back().arrival_s > 2.0);
  CHECK(a.back().arrival_s < 6.0);
  CHECK(output_sum / 200 > 6.0);  // geometric mean 10, clipped at 2 and 40
  CHECK(output_sum / 200 < 14.0);
  options.seed = 5;
  CHECK(make_workload(options)[0].prompt != a[0].prompt);

  options.rate = 0;
  for (const auto& r : make_workload(options)) CHECK(r.arrival_s == 0.0);
  options.prompt.min = 10;  // min > max
  CHECK_THROWS_AS(make_workload(options), Error);
}

TEST_CASE("workload: nearest-rank percentiles") {
  std::vector<double> values;
  for (int i = 100; i >= 1; --i) values.push_back(i);
  const Percentiles p = percentiles(values);
  CHECK(p.p50 == 50);
  CHECK(p.p95 == 95);
  CHECK(p.p99 == 99);
  CHECK(p.mean == doctest::Approx(50.5));
  CHECK(percentiles({7.0}).p99 == 7.0);
  CHECK(percentiles({}).count == 0);
}

TEST_CASE("workload: run_workload records every request and frees the pool") {
  WorkloadOptions options;
  options.requests = 20;
  options.rate = 2000.0;  // arrivals over ~10 ms: some arrive mid-run
  options.prompt = {LengthDistribution::Kind::uniform, 1, 12, 0};
  options.output = {LengthDistribution::Kind::uniform, 1, 10, 0};
  options.shared_prefix = 8;
  options.token_max = 50;
  const auto workload = make_workload(options);
  EngineOptions engine_options;
  engine_options.max_batch = 4;
  engine_options.max_step_tokens = 16;
  Engine engine(std::make_unique<FakeRunner>(12, 4), engine_options);
  RequestParams params;
  params.ignore_eos = true;
  int progress_calls = 0;
  const RunResult run = run_workload(engine, workload, params, [&](int, int) { ++progress_calls; });
  uint64_t generated = 0;
  for (size_t i = 0; i < workload.size(); ++i) {
    CAPTURE(i);
    const RequestRecord& r = run.requests[i];
    CHECK(r.finish == FinishReason::length);
    CHECK(r.tokens == fake_reference_tokens(workload[i].prompt, 50, workload[i].max_tokens, SamplerConfig{}));
    CHECK(r.first_token_s >= r.arrival_s);
    CHECK(r.finish_s >= r.first_token_s);
    generated += r.tokens.size();
  }
  CHECK(progress_calls > 0);
  CHECK(run.metrics.generated_tokens == generated);
  CHECK(run.metrics.prefix_hit_tokens > 0);  // the 8-token system prompt is 2 full blocks
  CHECK(run.metrics.peak_blocks <= 12);
  CHECK(run.metrics.peak_running <= 4);
  CHECK(run.metrics.ttft_ms.count == 20);
  CHECK(run.stats.blocks_free == run.stats.blocks_total);
}
