// test_engine_scheduler.cpp: the Engine's scheduler against a fake model (fake_runner.h), so every case
// runs in milliseconds: continuous and static batching give each request exactly what it gives decoded
// alone, with preemption (a small pool), prefix sharing, chunked prefill and requests arriving mid-run;
// bad input is refused with the sizes named; abort frees at once; the pool is all free after every run.
// The same properties with real models (synthetic and stories260K) are in test_engine.cpp.
#include "infer/core/error.h"
#include "infer/engine/engine.h"

#include "fake_runner.h"
#include "test_util.h"

#include <map>
#include <random>

using namespace infer;
using namespace infer::test;

namespace {

struct Collected {
  std::map<RequestId, std::vector<int>> tokens;
  std::map<RequestId, FinishReason> finish;
  std::map<RequestId, RequestTimes> times;
  RequestCallback callback() {
    return [this](const RequestEvent& e) {
      if (e.token >= 0) tokens[e.id].push_back(e.token);
      if (e.finish != FinishReason::none) {
        CHECK(finish.count(e.id) == 0);  // one finish event per request
        finish[e.id] = e.finish;
        times[e.id] = e.times;
      }
    };
  }
};

struct Job {
  std::vector<int> prompt;
  int max_tokens;
  int arrive_at_step;  // added before this step
  SamplerConfig sampler;
};

// Seeded jobs: prompts drawn over 3 shared prefixes (2 blocks of 4) and random tails, mixed lengths.
std::vector<Job> make_jobs(int count, uint64_t seed, int vocab, bool sampled) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<std::vector<int>> prefixes(3);
  for (auto& p : prefixes)
    for (int i = 0; i < 8; ++i) p.push_back(uniform(0, vocab - 1));
  std::vector<Job> jobs;
  for (int i = 0; i < count; ++i) {
    Job job;
    job.prompt = prefixes[size_t(uniform(0, 2))];
    job.prompt.resize(size_t(uniform(1, 30)), 0);
    for (size_t k = 8; k < job.prompt.size(); ++k) job.prompt[k] = uniform(0, vocab - 1);
    job.max_tokens = uniform(1, 24);
    job.arrive_at_step = i < count / 2 ? 0 : uniform(1, 40);
    job.sampler.temperature = sampled ? 0.9f : 0.0f;
    job.sampler.seed = uint64_t(1000 + i);
    jobs.push_back(job);
  }
  return jobs;
}

// Runs the jobs through an engine over a FakeRunner, checking the block manager's invariants after every
// step; returns the engine's stats, fills `collected`.
EngineStats run_jobs(const std::vector<Job>& jobs, EngineOptions options, int num_blocks, int block_size,
                     Collected& collected, std::map<size_t, RequestId>& ids, int* passes_out = nullptr) {
  auto runner = std::make_unique<FakeRunner>(num_blocks, block_size);
  FakeRunner* runner_ptr = runner.get();  // owned by the engine below
  Engine engine(std::move(runner), options);
  int step = 0;
  size_t added = 0;
  while (added < jobs.size() || engine.has_work()) {
    for (size_t i = 0; i < jobs.size(); ++i)
      if (!ids.count(i) && jobs[i].arrive_at_step <= step) {
        RequestParams params;
        params.max_tokens = jobs[i].max_tokens;
        params.sampler = jobs[i].sampler;
        ids[i] = engine.add_request(jobs[i].prompt, params, collected.callback());
        ++added;
      }
    engine.step();
    engine.block_manager().check_invariants();
    REQUIRE(step < 10000);
    ++step;
  }
  const EngineStats stats = engine.stats();
  CHECK(stats.blocks_free == stats.blocks_total);  // every block back in the pool
  CHECK(engine.block_manager().num_sequences() == 0);
  CHECK(runner_ptr->max_sequences_seen <= options.max_batch);
  CHECK(runner_ptr->max_tokens_seen <= options.max_step_tokens);
  if (passes_out) *passes_out = runner_ptr->passes;
  return stats;
}

void check_against_reference(const std::vector<Job>& jobs, const Collected& collected,
                             const std::map<size_t, RequestId>& ids) {
  for (size_t i = 0; i < jobs.size(); ++i) {
    CAPTURE(i);
    const RequestId id = ids.at(i);
    const std::vector<int> expected =
        fake_reference_tokens(jobs[i].prompt, 50, jobs[i].max_tokens, jobs[i].sampler);
    CHECK(collected.tokens.at(id) == expected);
    CHECK(collected.finish.at(id) == FinishReason::length);
    CHECK(collected.times.at(id).generated == jobs[i].max_tokens);
  }
}

}  // namespace

TEST_CASE("engine scheduler: continuous batching equals each request decoded alone (preemption, prefix sharing, chunks, arrivals)") {
  for (bool sampled : {false, true}) {
    CAPTURE(sampled);
    const std::vector<Job> jobs = make_jobs(24, 7, 50, sampled);
    EngineOptions options;
    options.max_batch = 8;
    options.max_step_tokens = 24;  // prompts up to 30 tokens: chunked
    Collected collected;
    std::map<size_t, RequestId> ids;
    // 14 blocks of 4 = 56 positions for 8 sequences of up to 54: preemption is forced.
    const EngineStats stats = run_jobs(jobs, options, 14, 4, collected, ids);
    check_against_reference(jobs, collected, ids);
    CHECK(stats.preemptions > 0);
    CHECK(stats.prefix_cache_hit_tokens > 0);
    CHECK(stats.finished == jobs.size());
    CHECK(stats.peak_blocks_used <= 14);
  }
}

TEST_CASE("engine scheduler: the same outputs with prefix caching off, chunking off, and a roomy pool") {
  const std::vector<Job> jobs = make_jobs(16, 11, 50, false);
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    EngineOptions options;
    options.max_batch = 6;
    options.max_step_tokens = 64;
    options.prefix_caching = variant != 0;
    options.chunked_prefill = variant != 1;
    Collected collected;
    std::map<size_t, RequestId> ids;
    const EngineStats stats = run_jobs(jobs, options, variant == 2 ? 200 : 20, 4, collected, ids);
    check_against_reference(jobs, collected, ids);
    if (variant == 0) CHECK(stats.prefix_cache_hit_tokens == 0);
    if (variant == 2) CHECK(stats.preemptions == 0);
  }
}

TEST_CASE("engine scheduler: static batching gives the same outputs and waits for its longest member") {
  // Mixed output lengths, all at once: a static batch holds its slots until its longest request ends.
  std::vector<Job> jobs = make_jobs(16, 3, 50, false);
  for (size_t i = 0; i < jobs.size(); ++i) {
    jobs[i].arrive_at_step = 0;
    jobs[i].max_tokens = i % 4 == 0 ? 40 : 4;
  }
  EngineOptions options;
  options.max_batch = 4;
  options.max_step_tokens = 128;
  Collected continuous_out, static_out;
  std::map<size_t, RequestId> continuous_ids, static_ids;
  int continuous_passes = 0, static_passes = 0;
  run_jobs(jobs, options, 200, 4, continuous_out, continuous_ids, &continuous_passes);
  options.policy = SchedulePolicy::static_batch;
  run_jobs(jobs, options, 200, 4, static_out, static_ids, &static_passes);
  check_against_reference(jobs, continuous_out, continuous_ids);
  check_against_reference(jobs, static_out, static_ids);
  // 4 static batches of one 40-token and three 4-token requests: >= 4 x 40 passes; continuous refills
  // the short requests' slots and needs far fewer.
  CHECK(static_passes >= 160);
  CHECK(continuous_passes < static_passes);
  MESSAGE("forward passes: static " << static_passes << ", continuous " << continuous_passes);
}

TEST_CASE("engine scheduler: stop tokens, max_tokens and ignore_eos") {
  auto runner = std::make_unique<FakeRunner>(32, 4);
  Engine engine(std::move(runner), EngineOptions{});
  const std::vector<int> prompt{3, 1, 4, 1, 5};
  SamplerConfig greedy;
  const std::vector<int> free_run = fake_reference_tokens(prompt, 50, 12, greedy);
  REQUIRE(free_run.size() == 12);
  const int stop = free_run[5];
  const size_t first_stop = size_t(std::find(free_run.begin(), free_run.end(), stop) - free_run.begin());

  std::vector<RequestEvent> stopped_events, ignored_events;
  RequestParams params;
  params.max_tokens = 12;
  params.stop_tokens = {stop};
  engine.add_request(prompt, params, [&](const RequestEvent& e) { stopped_events.push_back(e); });
  params.ignore_eos = true;
  engine.add_request(prompt, params, [&](const RequestEvent& e) { ignored_events.push_back(e); });
  while (engine.has_work()) engine.step();

  // Stopped: the tokens before the stop token, then a finish event without a token.
  REQUIRE(stopped_events.size() == first_stop + 1);
  for (size_t i = 0; i < first_stop; ++i) CHECK(stopped_events[i].token == free_run[i]);
  CHECK(stopped_events.back().token == -1);
  CHECK(stopped_events.back().finish == FinishReason::stop);
  // ignore_eos: all 12, the last one together with finish == length.
  REQUIRE(ignored_events.size() == 12);
  for (size_t i = 0; i < 12; ++i) CHECK(ignored_events[i].token == free_run[i]);
  CHECK(ignored_events.back().finish == FinishReason::length);
  CHECK(ignored_events.back().times.generated == 12);
  CHECK(engine.stats().blocks_free == 32);
}

TEST_CASE("engine scheduler: bad requests are refused with their sizes and the others carry on") {
  auto runner = std::make_unique<FakeRunner>(/*num_blocks=*/8, /*block_size=*/4, /*vocab=*/50, /*context=*/40);
  Engine engine(std::move(runner), EngineOptions{});
  Collected collected;
  RequestParams params;
  params.max_tokens = 4;
  const RequestId good = engine.add_request({1, 2, 3}, params, collected.callback());
  engine.step();  // the good one is running

  CHECK_THROWS_WITH_AS(engine.add_request({}, params, collected.callback()), doctest::Contains("empty prompt"), Error);
  CHECK_THROWS_WITH_AS(engine.add_request({1, 50}, params, collected.callback()),
                       doctest::Contains("outside the vocabulary of 50"), Error);
  params.max_tokens = 0;
  CHECK_THROWS_AS(engine.add_request({1}, params, collected.callback()), Error);
  // Longer than the context: 38 + 4 = 42 > 40.
  params.max_tokens = 4;
  CHECK_THROWS_WITH_AS(engine.add_request(std::vector<int>(38, 1), params, collected.callback()),
                       doctest::Contains("42 positions exceeds the model's context of 40"), Error);
  // Within the context but beyond the pool: 30 + 4 = 34 positions = 9 blocks of 4 > 8.
  CHECK_THROWS_WITH_AS(engine.add_request(std::vector<int>(30, 1), params, collected.callback()),
                       doctest::Contains("needs 9 blocks of 4 positions but the whole KV pool holds 8 blocks (32 positions)"),
                       Error);
  while (engine.has_work()) engine.step();
  CHECK(collected.tokens.at(good) == fake_reference_tokens({1, 2, 3}, 50, 4, SamplerConfig{}));
  CHECK(collected.finish.size() == 1);
  CHECK(engine.stats().blocks_free == 8);
}

TEST_CASE("engine scheduler: abort mid-generation, while waiting, and from a callback frees the blocks at once") {
  auto runner = std::make_unique<FakeRunner>(64, 4);
  EngineOptions options;
  options.max_batch = 2;
  Engine engine(std::move(runner), options);
  Collected collected;
  RequestParams params;
  params.max_tokens = 30;
  const RequestId a = engine.add_request({1, 2, 3, 4, 5, 6, 7, 8, 9}, params, collected.callback());
  const RequestId b = engine.add_request({9, 8, 7}, params, collected.callback());
  const RequestId c = engine.add_request({5, 5}, params, collected.callback());  // waits: max_batch 2
  for (int i = 0; i < 5; ++i) engine.step();
  CHECK(engine.stats().running == 2);
  const int free_before = engine.stats().blocks_free;
  const int a_blocks = int(engine.block_manager().block_table(a).size());
  CHECK(engine.abort(a));
  CHECK(engine.stats().blocks_free == free_before + a_blocks);
  CHECK(collected.finish.at(a) == FinishReason::aborted);  // delivered at once outside step()
  CHECK(collected.tokens.at(a).size() == 5);
  CHECK_FALSE(engine.abort(a));     // gone
  CHECK_FALSE(engine.abort(12345)); // never existed

  // Abort a waiting request (nothing allocated) from another request's callback: e is queued before d, so
  // when e runs (b and c hold the two slots until b ends) d is still waiting.
  RequestId d = 0;
  bool aborted_d = false;
  RequestParams short_params;
  short_params.max_tokens = 2;
  engine.add_request({7}, short_params, [&](const RequestEvent&) {
    if (!aborted_d) aborted_d = engine.abort(d);
  });
  d = engine.add_request({4, 4, 4}, params, collected.callback());
  while (engine.has_work()) engine.step();
  CHECK(aborted_d);
  CHECK(collected.finish.at(d) == FinishReason::aborted);
  CHECK(collected.tokens.count(d) == 0);
  CHECK(collected.finish.at(b) == FinishReason::length);
  CHECK(collected.finish.at(c) == FinishReason::length);
  CHECK(collected.tokens.at(c) == fake_reference_tokens({5, 5}, 50, 30, SamplerConfig{}));
  CHECK(engine.stats().blocks_free == 64);
  engine.block_manager().check_invariants();
}

TEST_CASE("engine scheduler: a sequence needing the whole pool runs alone, preempting the others") {
  // 10 blocks of 4 = 40 positions; one request needs 36 (+ its last token), two small ones need a few.
  auto runner = std::make_unique<FakeRunner>(10, 4);
  EngineOptions options;
  options.max_step_tokens = 8;
  Engine engine(std::move(runner), options);
  Collected collected;
  RequestParams small;
  small.max_tokens = 20;
  RequestParams big;
  big.max_tokens = 16;
  std::vector<int> long_prompt(20);
  for (int i = 0; i < 20; ++i) long_prompt[size_t(i)] = (i * 7) % 50;
  const RequestId s1 = engine.add_request({1, 2}, small, collected.callback());
  const RequestId l = engine.add_request(long_prompt, big, collected.callback());
  const RequestId s2 = engine.add_request({3, 4}, small, collected.callback());
  while (engine.has_work()) {
    engine.step();
    engine.block_manager().check_invariants();
  }
  CHECK(engine.stats().preemptions > 0);
  CHECK(collected.tokens.at(s1) == fake_reference_tokens({1, 2}, 50, 20, SamplerConfig{}));
  CHECK(collected.tokens.at(l) == fake_reference_tokens(long_prompt, 50, 16, SamplerConfig{}));
  CHECK(collected.tokens.at(s2) == fake_reference_tokens({3, 4}, 50, 20, SamplerConfig{}));
  CHECK(engine.stats().blocks_free == 10);
}

TEST_CASE("engine scheduler: requests submitted together with a shared system prompt compute it once") {
  // 12 requests, a 32-token system prompt (8 blocks of 4) + 4 own tokens each, all submitted at once.
  std::vector<int> system(32);
  for (int i = 0; i < 32; ++i) system[size_t(i)] = (i * 13) % 50;
  std::vector<std::vector<int>> prompts;
  for (int r = 0; r < 12; ++r) {
    std::vector<int> p = system;
    for (int k = 0; k < 4; ++k) p.push_back((r * 7 + k) % 50);
    prompts.push_back(p);
  }
  for (bool caching : {false, true}) {
    CAPTURE(caching);
    EngineOptions options;
    options.prefix_caching = caching;
    options.max_step_tokens = 64;
    Engine engine(std::make_unique<FakeRunner>(200, 4), options);
    Collected collected;
    std::vector<RequestId> ids;
    RequestParams params;
    params.max_tokens = 5;
    for (const auto& p : prompts) ids.push_back(engine.add_request(p, params, collected.callback()));
    while (engine.has_work()) engine.step();
    for (size_t r = 0; r < prompts.size(); ++r)
      CHECK(collected.tokens.at(ids[r]) == fake_reference_tokens(prompts[r], 50, 5, SamplerConfig{}));
    const EngineStats stats = engine.stats();
    // Without the cache every prompt token is prefilled: 12 * 36. With it the system prompt once (32) plus
    // 4 own tokens per request.
    CHECK(stats.prefill_tokens == (caching ? 32u + 12u * 4u : 12u * 36u));
    CHECK(stats.blocks_free == 200);
  }
}
