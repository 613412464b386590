// metrics.h: the server's counters and histograms, written in the Prometheus text exposition format
// (version 0.0.4, what GET /metrics serves):
//
//   # HELP infer_requests_total HTTP requests answered, by status code.
//   # TYPE infer_requests_total counter
//   infer_requests_total{status="200"} 12
//   # TYPE infer_time_to_first_token_seconds histogram
//   infer_time_to_first_token_seconds_bucket{le="0.05"} 3      (cumulative counts, ending with le="+Inf")
//   infer_time_to_first_token_seconds_sum 1.25
//   infer_time_to_first_token_seconds_count 12
//
// ServerMetrics is updated from the HTTP threads (a mutex guards it); the engine's gauges (running and
// waiting requests, KV blocks) come in an EngineGauges snapshot at render time.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace infer::serve {

// A Prometheus histogram: counts per upper bound (cumulative when written), plus sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implicit
  void observe(double value);
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  const std::vector<uint64_t>& bucket_counts() const { return counts_; }  // per bucket, not cumulative
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;  // one per bound, plus the +Inf bucket
  uint64_t count_ = 0;
  double sum_ = 0.0;
};

// Builds the text format one metric family at a time.
class PrometheusWriter {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  // Starts a family: its # HELP and # TYPE lines (type: counter, gauge, histogram).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const Labels& labels, double value);
  void histogram(std::string_view name, const Histogram& histogram);
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// A number as Prometheus writes it: integers without a fraction, +Inf / -Inf / NaN spelled out.
std::string prometheus_number(double value);
// A label value with \ " and newline escaped.
std::string prometheus_escape(std::string_view value);

// What the engine thread publishes after each step.
struct EngineGauges {
  int running = 0;
  int waiting = 0;             // in the engine's queue, plus requests handed over but not yet added
  int blocks_total = 0;
  int blocks_free = 0;
  uint64_t prefix_cache_hit_tokens = 0;
  uint64_t prompt_tokens = 0;  // admitted by the engine (the denominator of the hit rate)
  uint64_t preemptions = 0;
  uint64_t generated_tokens = 0;  // by the engine, including requests that were cancelled
  std::optional<double> speculative_acceptance;  // only when speculative decoding is on
};

class ServerMetrics {
 public:
  ServerMetrics();
  void count_response(int status);
  void count_tokens(uint64_t prompt_tokens, uint64_t generated_tokens);
  void count_cancelled();  // a request ended early: its client went away or a stop string matched
  void observe_request(std::optional<double> ttft_seconds, std::optional<double> tpot_seconds, double latency_seconds);
  std::string render(const EngineGauges& gauges) const;
  uint64_t responses(int status) const;

 private:
  mutable std::mutex mutex_;
  std::map<int, uint64_t> responses_by_status_;
  uint64_t prompt_tokens_ = 0;
  uint64_t generated_tokens_ = 0;
  uint64_t cancelled_ = 0;
  Histogram ttft_, tpot_, latency_;
};

}  // namespace infer::serve
