// workload.cpp: seeded workloads, running one through the Engine, and the metrics of the run (workload.h).
#include "infer/engine/workload.h"

#include "infer/core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

namespace infer {

std::string LengthDistribution::describe() const {
  if (min == max) return fmt::format("{}", min);
  if (kind == Kind::geometric) return fmt::format("geometric mean {:.0f} in [{}, {}]", mean, min, max);
  return fmt::format("uniform [{}, {}]", min, max);
}

namespace {

int draw_length(const LengthDistribution& d, std::mt19937_64& rng) {
  if (d.min == d.max) return d.min;
  if (d.kind == LengthDistribution::Kind::geometric) {
    // Geometric with mean `mean` (success probability 1 / mean), clipped to the range.
    std::geometric_distribution<int> geometric(1.0 / std::max(d.mean, 1.0));
    return std::clamp(geometric(rng) + 1, d.min, d.max);
  }
  return std::uniform_int_distribution<int>(d.min, d.max)(rng);
}

void check_distribution(const LengthDistribution& d, const char* what, int lowest) {
  if (d.min < lowest || d.max < d.min)
    fail("workload: {} lengths [{}, {}] must satisfy {} <= min <= max", what, d.min, d.max, lowest);
  if (d.kind == LengthDistribution::Kind::geometric && !(d.mean >= 1.0))
    fail("workload: {} geometric mean must be >= 1 (got {})", what, d.mean);
}

}  // namespace

std::vector<WorkloadRequest> make_workload(const WorkloadOptions& options) {
  if (options.requests < 1) fail("workload: needs at least one request (got {})", options.requests);
  if (options.rate < 0 || !std::isfinite(options.rate)) fail("workload: rate must be >= 0 (got {})", options.rate);
  check_distribution(options.prompt, "prompt", options.shared_prefix > 0 ? 0 : 1);
  check_distribution(options.output, "output", 1);
  if (options.shared_prefix < 0) fail("workload: shared prefix of {} tokens", options.shared_prefix);
  if (options.token_min < 0 || options.token_max <= options.token_min)
    fail("workload: token range [{}, {}) is empty", options.token_min, options.token_max);

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int> token(options.token_min, options.token_max - 1);
  std::vector<int> prefix(size_t(options.shared_prefix));
  for (int& t : prefix) t = token(rng);
  std::exponential_distribution<double> gap(options.rate > 0 ? options.rate : 1.0);

  std::vector<WorkloadRequest> workload;
  double clock = 0.0;
  for (int i = 0; i < options.requests; ++i) {
    WorkloadRequest request;
    if (options.rate > 0 && i > 0) clock += gap(rng);
    request.arrival_s = clock;
    request.prompt = prefix;
    const int own = draw_length(options.prompt, rng);
    for (int k = 0; k < own; ++k) request.prompt.push_back(token(rng));
    request.max_tokens = draw_length(options.output, rng);
    workload.push_back(std::move(request));
  }
  return workload;
}

Percentiles percentiles(std::vector<double> values) {
  Percentiles p;
  p.count = int(values.size());
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  auto rank = [&](double q) {
    const size_t index = size_t(std::ceil(q / 100.0 * double(values.size())));
    return values[std::clamp<size_t>(index, 1, values.size()) - 1];
  };
  p.p50 = rank(50);
  p.p95 = rank(95);
  p.p99 = rank(99);
  double sum = 0;
  for (double v : values) sum += v;
  p.mean = sum / double(values.size());
  return p;
}

RunResult run_workload(Engine& engine, const std::vector<WorkloadRequest>& workload, const RequestParams& params,
                       const std::function<void(int done, int total)>& progress) {
  RunResult result;
  result.requests.resize(workload.size());
  const EngineStats before = engine.stats();
  const auto start = EngineClock::now();
  auto seconds = [&](EngineClock::time_point t) { return std::chrono::duration<double>(t - start).count(); };
  int done = 0;
  size_t next = 0;
  while (next < workload.size() || engine.has_work()) {
    const double now = seconds(EngineClock::now());
    while (next < workload.size() && workload[next].arrival_s <= now) {
      RequestParams request_params = params;
      request_params.max_tokens = workload[next].max_tokens;
      RequestRecord& record = result.requests[next];
      record.prompt_tokens = int(workload[next].prompt.size());
      try {
        record.id = engine.add_request(workload[next].prompt, request_params, [&record, &done, &seconds](const RequestEvent& e) {
          if (e.token >= 0) record.tokens.push_back(e.token);
          if (e.finish == FinishReason::none) return;
          record.finish = e.finish;
          record.error = e.error;
          record.cached_tokens = e.times.cached_tokens;
          record.preemptions = e.times.preemptions;
          record.arrival_s = seconds(e.times.arrival);
          record.first_token_s = e.times.generated > 0 ? seconds(e.times.first_token) : seconds(e.times.finish);
          record.finish_s = seconds(e.times.finish);
          ++done;
        });
      } catch (const Error& error) {  // refused (too long for the context or the pool): recorded, the rest go on
        record.finish = FinishReason::error;
        record.error = error.what();
        record.arrival_s = record.first_token_s = record.finish_s = now;
        ++done;
      }
      ++next;
    }
    if (engine.has_work()) {
      engine.step();
      if (progress) progress(done, int(workload.size()));
    } else if (next < workload.size()) {  // idle until the next arrival
      std::this_thread::sleep_for(std::chrono::duration<double>(workload[next].arrival_s - now));
    }
  }
  const EngineStats after = engine.stats();
  result.stats = after;

  RunMetrics& m = result.metrics;
  m.wall_s = seconds(EngineClock::now());
  std::vector<double> ttft, tpot, e2e;
  for (size_t i = 0; i < workload.size(); ++i) {
    const RequestRecord& r = result.requests[i];
    if (r.finish == FinishReason::error) continue;
    m.prompt_tokens += uint64_t(r.prompt_tokens);
    m.generated_tokens += r.tokens.size();
    if (r.tokens.empty()) continue;
    ttft.push_back(1000.0 * (r.first_token_s - r.arrival_s));
    e2e.push_back(1000.0 * (r.finish_s - r.arrival_s));
    if (r.tokens.size() >= 2) tpot.push_back(1000.0 * (r.finish_s - r.first_token_s) / double(r.tokens.size() - 1));
  }
  m.ttft_ms = percentiles(ttft);
  m.tpot_ms = percentiles(tpot);
  m.e2e_ms = percentiles(e2e);
  m.prefill_tokens = after.prefill_tokens - before.prefill_tokens;
  m.steps = after.steps - before.steps;
  m.generated_tok_per_s = m.wall_s > 0 ? double(m.generated_tokens) / m.wall_s : 0;
  m.total_tok_per_s = m.wall_s > 0 ? double(m.prompt_tokens + m.generated_tokens) / m.wall_s : 0;
  m.peak_blocks = after.peak_blocks_used;
  m.peak_running = after.peak_running;
  const uint64_t per_block = engine.runner().bytes_per_block();
  m.peak_kv_bytes = uint64_t(m.peak_blocks) * per_block;
  m.kv_bytes_per_position = per_block / uint64_t(engine.runner().block_size());
  m.preemptions = after.preemptions - before.preemptions;
  m.prefix_hit_tokens = after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens;
  m.prefix_hit_rate = m.prompt_tokens ? double(m.prefix_hit_tokens) / double(m.prompt_tokens) : 0;
  m.forward_bytes = after.forward_bytes - before.forward_bytes;
  return result;
}

}  // namespace infer
