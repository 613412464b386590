// bench.h: `ch09_production bench`, a load generator for any OpenAI-compatible /v1/completions server.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace infer {

struct BenchOptions {
  std::string url = "http://127.0.0.1:8080";
  std::string model;             // empty: the first id /v1/models lists
  std::string api_key;
  int concurrency = 8;           // requests in flight at most (one client thread each)
  int requests = 64;
  double rate = 0.0;             // requests/s, Poisson arrivals; 0: all at once (as concurrency allows)
  int prompt_tokens = 64;        // each prompt: this many seeded random token ids in [3, token_id_max)
  int output_tokens = 64;        // max_tokens, with ignore_eos so every request generates exactly this many
  int token_id_max = 500;        // below every vocabulary the tests use (stories260K has 512)
  bool stream = true;
  bool shared_prompt = false;    // every request sends the same prompt (prefix caching's best case)
  std::vector<int> prompt_ids;   // when set, every request sends exactly these token ids (the ladder's workload)
  bool quiet = false;            // no progress on stderr
  uint64_t seed = 42;
  std::string json;              // write the result here
};

struct RequestTiming {
  bool ok = false;
  std::string error;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double ttft_ms = 0.0;          // request sent -> first text (streaming) or -> response (not)
  double tpot_ms = 0.0;          // (last text - first text) / (tokens - 1), streaming only
  double latency_ms = 0.0;
  std::string text;
};

struct BenchResult {
  std::vector<RequestTiming> requests;
  double wall_s = 0.0;
  int completed = 0, failed = 0;
  uint64_t generated_tokens = 0;
  double generated_tok_per_s = 0.0;
  double requests_per_s = 0.0;
  nlohmann::ordered_json to_json(const BenchOptions& options) const;
};

void add_bench_options(CLI::App& app, BenchOptions& options);
// Runs the load (the server must be up) and returns every request's timing.
BenchResult run_load(const BenchOptions& options);
// The subcommand: runs the load, prints the summary (and --json).
int run_bench(const BenchOptions& options);

// The p-th percentile (0..100) by linear interpolation between order statistics; 0 for no values.
double percentile(std::vector<double> values, double p);

}  // namespace infer
