// metrics.cpp: Prometheus text format and the server's metrics (metrics.h).
#include "infer/serve/metrics.h"

#include "infer/core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace infer::serve {

// ==== Histogram ===========================================================================================

Histogram::Histogram(std::vector<double> upper_bounds) : upper_bounds_(std::move(upper_bounds)) {
  if (!std::is_sorted(upper_bounds_.begin(), upper_bounds_.end())) fail("histogram bounds must be ascending");
  counts_.assign(upper_bounds_.size() + 1, 0);
}

void Histogram::observe(double value) {
  // The first bucket whose bound is >= value (Prometheus buckets are "less than or equal").
  const size_t bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  ++counts_[bucket];
  ++count_;
  sum_ += value;
}

// ==== text format =========================================================================================

std::string prometheus_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return fmt::format("{}", int64_t(value));
  return fmt::format("{}", value);
}

std::string prometheus_escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void PrometheusWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  text_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void PrometheusWriter::sample(std::string_view name, const Labels& labels, double value) {
  text_ += name;
  if (!labels.empty()) {
    text_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      text_ += fmt::format("{}{}=\"{}\"", i ? "," : "", labels[i].first, prometheus_escape(labels[i].second));
    }
    text_ += '}';
  }
  text_ += ' ';
  text_ += prometheus_number(value);
  text_ += '\n';
}

void PrometheusWriter::histogram(std::string_view name, const Histogram& histogram) {
  uint64_t cumulative = 0;
  const std::string bucket = fmt::format("{}_bucket", name);
  for (size_t i = 0; i < histogram.upper_bounds().size(); ++i) {
    cumulative += histogram.bucket_counts()[i];
    sample(bucket, {{"le", prometheus_number(histogram.upper_bounds()[i])}}, double(cumulative));
  }
  sample(bucket, {{"le", "+Inf"}}, double(histogram.count()));
  sample(fmt::format("{}_sum", name), {}, histogram.sum());
  sample(fmt::format("{}_count", name), {}, double(histogram.count()));
}

// ==== ServerMetrics =======================================================================================

namespace {
// Seconds: from 5 ms (a decode step on a small model) to a minute (a long request on a loaded CPU).
const std::vector<double> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
const std::vector<double> kTpotBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
}  // namespace

ServerMetrics::ServerMetrics() : ttft_(kLatencyBounds), tpot_(kTpotBounds), latency_(kLatencyBounds) {}

void ServerMetrics::count_response(int status) {
  std::lock_guard lock(mutex_);
  ++responses_by_status_[status];
}

void ServerMetrics::count_tokens(uint64_t prompt_tokens, uint64_t generated_tokens) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += prompt_tokens;
  generated_tokens_ += generated_tokens;
}

void ServerMetrics::count_cancelled() {
  std::lock_guard lock(mutex_);
  ++cancelled_;
}

void ServerMetrics::observe_request(std::optional<double> ttft_seconds, std::optional<double> tpot_seconds,
                                    double latency_seconds) {
  std::lock_guard lock(mutex_);
  if (ttft_seconds) ttft_.observe(*ttft_seconds);
  if (tpot_seconds) tpot_.observe(*tpot_seconds);
  latency_.observe(latency_seconds);
}

uint64_t ServerMetrics::responses(int status) const {
  std::lock_guard lock(mutex_);
  auto it = responses_by_status_.find(status);
  return it == responses_by_status_.end() ? 0 : it->second;
}

std::string ServerMetrics::render(const EngineGauges& gauges) const {
  std::lock_guard lock(mutex_);
  PrometheusWriter out;
  out.family("infer_requests_total", "counter", "HTTP requests answered, by status code.");
  for (const auto& [status, count] : responses_by_status_) {
    out.sample("infer_requests_total", {{"status", std::to_string(status)}}, double(count));
  }
  out.family("infer_prompt_tokens_total", "counter", "Prompt tokens of the completed requests.");
  out.sample("infer_prompt_tokens_total", {}, double(prompt_tokens_));
  out.family("infer_generation_tokens_total", "counter", "Tokens generated for the completed requests.");
  out.sample("infer_generation_tokens_total", {}, double(generated_tokens_));
  out.family("infer_requests_cancelled_total", "counter",
             "Requests aborted before their end (client gone or stop string matched); their blocks were freed.");
  out.sample("infer_requests_cancelled_total", {}, double(cancelled_));
  out.family("infer_time_to_first_token_seconds", "histogram", "Time from a request's arrival to its first token.");
  out.histogram("infer_time_to_first_token_seconds", ttft_);
  out.family("infer_time_per_output_token_seconds", "histogram",
             "Mean time between a request's tokens after the first (one sample per request).");
  out.histogram("infer_time_per_output_token_seconds", tpot_);
  out.family("infer_request_latency_seconds", "histogram", "Time from a request's arrival to its last byte.");
  out.histogram("infer_request_latency_seconds", latency_);
  out.family("infer_requests_running", "gauge", "Requests in the engine's running batch.");
  out.sample("infer_requests_running", {}, gauges.running);
  out.family("infer_requests_waiting", "gauge", "Requests queued for the engine.");
  out.sample("infer_requests_waiting", {}, gauges.waiting);
  out.family("infer_kv_blocks", "gauge", "KV-cache blocks of the paged pool, by state.");
  out.sample("infer_kv_blocks", {{"state", "used"}}, gauges.blocks_total - gauges.blocks_free);
  out.sample("infer_kv_blocks", {{"state", "free"}}, gauges.blocks_free);
  out.family("infer_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache.");
  out.sample("infer_prefix_cache_hit_tokens_total", {}, double(gauges.prefix_cache_hit_tokens));
  out.family("infer_engine_prompt_tokens_total", "counter", "Prompt tokens admitted by the engine (the hit rate's denominator).");
  out.sample("infer_engine_prompt_tokens_total", {}, double(gauges.prompt_tokens));
  out.family("infer_engine_generated_tokens_total", "counter", "Tokens the engine generated, cancelled requests included.");
  out.sample("infer_engine_generated_tokens_total", {}, double(gauges.generated_tokens));
  out.family("infer_preemptions_total", "counter", "Sequences preempted when the KV pool ran out.");
  out.sample("infer_preemptions_total", {}, double(gauges.preemptions));
  if (gauges.speculative_acceptance) {
    out.family("infer_speculative_acceptance_ratio", "gauge", "Drafted tokens accepted / drafted tokens.");
    out.sample("infer_speculative_acceptance_ratio", {}, *gauges.speculative_acceptance);
  }
  return out.text();
}

}  // namespace infer::serve
