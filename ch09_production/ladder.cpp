// ladder.cpp: the speedup ladder. One model, one workload, one run, every step the book takes, in two views:
//
//   single stream (batch 1, the latency a user feels):  naive -> + KV cache -> + the batching engine
//   throughput (N requests at once, the server's view): naive one at a time -> KV cache one at a time ->
//                                                        continuous batching over the paged KV cache
//   then + quantized weights (ch07) and + speculative decoding (ch08) once those chapters are in the build:
//   until then they are listed as absent, never estimated.
//
// Each row: generated tok/s, speedup over the row before and over naive, % of the measured bandwidth (weight
// bytes counted in code / time), and $ per million tokens at --usd-per-hour. Greedy decoding with end-of-text
// ignored, so every row generates exactly the same tokens; the engine's tokens are checked against the
// KV-cache decoder's (tokens_identical). Writes report.json (--json), report.md and ladder.png.
#include "ladder.h"

#include "bench.h"
#include "png_plot.h"
#include "server.h"

#include "infer/app/hardware.h"
#include "infer/core/error.h"
#include "infer/core/timer.h"
#include "infer/engine/engine.h"
#include "infer/engine/generator.h"
#include "infer/serve/text_stream.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>

namespace infer {

void add_ladder_options(CLI::App& app, CommonOptions& common, LadderOptions& options) {
  add_common_options(app, common);
  // Greedy by construction (rows must generate the same tokens): the sampling flags are not offered.
  remove_options(app, kSamplingOptionNames);
  app.add_option("--requests", options.requests, "Requests in the throughput view (submitted at once)")->check(CLI::Range(1, 4096));
  app.add_option("--naive-requests", options.naive_requests, "Requests the naive one-at-a-time baseline runs")->check(CLI::Range(1, 4096));
  app.add_option("--cached-requests", options.cached_requests, "Requests the KV-cache one-at-a-time baseline runs")->check(CLI::Range(1, 4096));
  app.add_option("--usd-per-hour", options.usd_per_hour, "Price of the machine per hour, for $ per million tokens")->check(CLI::Range(0.0, 1e6));
  app.add_option("--out-dir", options.out_dir, "Folder for report.md and ladder.png (and report.json without --json)");
  app.add_option("--bandwidth-gb-s", options.bandwidth_gb_s, "Use this bandwidth instead of measuring it");
  app.add_option("--max-batch", options.max_batch, "The engine's max batch")->check(CLI::Range(1, 4096));
}

namespace {

using Clock = std::chrono::steady_clock;

struct Step {
  std::string view;       // "single" or "throughput"
  std::string name;       // "naive", "+ KV cache", ...
  int tokens = 0;
  double ms = 0.0;
  uint64_t bytes = 0;     // weight (+ KV) bytes moved, counted in code
  std::string note;
};

// The engine over `count` copies of the prompt (each its own request), all submitted at once.
struct EngineRun {
  double ms = 0.0;
  int tokens = 0;
  uint64_t steps = 0;
  std::vector<std::vector<int>> outputs;
  bool blocks_free_after = false;
};

EngineRun run_engine(Transformer& model, const std::vector<int>& prompt, int max_tokens, int count, int max_batch) {
  EngineOptions options;
  options.max_batch = max_batch;
  options.prefix_caching = false;  // the rows measure batching alone; ch06 measures prefix caching
  Engine engine(model, options);
  EngineRun run;
  run.outputs.resize(size_t(count));
  RequestParams params;
  params.sampler.temperature = 0.0f;
  params.max_tokens = max_tokens;
  params.ignore_eos = true;
  const auto start = Clock::now();
  for (int r = 0; r < count; ++r) {
    engine.add_request(prompt, params, [&run, r](const RequestEvent& event) {
      if (event.token >= 0) run.outputs[size_t(r)].push_back(event.token);
    });
  }
  while (engine.has_work()) engine.step();
  run.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  const EngineStats stats = engine.stats();
  run.steps = stats.steps;
  run.tokens = int(stats.generated_tokens);
  run.blocks_free_after = stats.blocks_free == stats.blocks_total;
  return run;
}

double usd_per_million(double usd_per_hour, double tok_per_s) {
  return tok_per_s > 0 ? usd_per_hour / 3600.0 / tok_per_s * 1e6 : 0.0;
}

}  // namespace

int run_ladder(const CommonOptions& common, const LadderOptions& options) {
  const int threads = resolve_threads(common.threads);
  auto backend = make_backend(common.device, threads);
  LoadedModel model = load_model(common);
  Weights weights(model.file, parse_weight_format(common.weights), *backend);
  const uint64_t weight_bytes = weights.bytes_per_forward(1);
  const std::vector<int> prompt = encode_prompt(model, common);
  const int max_tokens = common.max_tokens;
  check_generation_length(model.file.config, prompt.size(), max_tokens, model.file.config.max_seq_len);
  const int buffer = int(prompt.size()) + max_tokens;
  Transformer transformer(weights, *backend, std::max(buffer, 512));
  transformer.set_check_finite(common.check_numerics);

  double bandwidth = options.bandwidth_gb_s;
  if (bandwidth <= 0) {
    fmt::print(stderr, "measuring memory bandwidth (1024 MiB, {} threads)...\n", threads);
    bandwidth = measure_read_bandwidth(size_t(1024) << 20, threads, 5).gb_per_s;
  }
  fmt::print("ch09_production ladder: {} ({} weights, {:.1f} MB read per token), {} prompt tokens, {} generated "
             "per request, greedy, end-of-text ignored\n",
             model.description, common.weights, weight_bytes / 1e6, prompt.size(), max_tokens);

  GenerationOptions generation;
  generation.max_new_tokens = max_tokens;
  generation.sampler.temperature = 0.0f;
  std::vector<Step> steps;

  // ---- single stream ----
  fmt::print(stderr, "single stream: naive...\n");
  NaiveGenerator naive(transformer);
  const GenerationResult naive_one = naive.generate(prompt, generation);
  steps.push_back({"single", "naive", int(naive_one.tokens.size()), naive_one.total_ms, naive_one.bytes_moved, ""});
  fmt::print(stderr, "single stream: KV cache...\n");
  CachedGenerator cached(transformer);
  const GenerationResult cached_one = cached.generate(prompt, generation);
  steps.push_back({"single", "+ KV cache", int(cached_one.tokens.size()), cached_one.total_ms, cached_one.bytes_moved, ""});
  fmt::print(stderr, "single stream: engine...\n");
  const EngineRun engine_one = run_engine(transformer, prompt, max_tokens, 1, options.max_batch);
  steps.push_back({"single", "+ paged engine (batch 1)", engine_one.tokens, engine_one.ms, engine_one.steps * weight_bytes,
                   "bytes: weights per step"});

  // ---- throughput ----
  const int n = options.requests;
  auto sequential = [&](Generator& generator, int count, const char* name) {
    Step step{"throughput", name, 0, 0.0, 0, ""};
    for (int r = 0; r < count; ++r) {
      fmt::print(stderr, "throughput: {} {}/{}...\n", name, r + 1, count);
      const GenerationResult result = generator.generate(prompt, generation);
      step.tokens += int(result.tokens.size());
      step.ms += result.total_ms;
      step.bytes += result.bytes_moved;
    }
    if (count < n) step.note = fmt::format("{} of the {} requests run (one at a time, so the rate is the same)", count, n);
    return step;
  };
  steps.push_back(sequential(naive, std::min(options.naive_requests, n), "naive, one at a time"));
  steps.push_back(sequential(cached, std::min(options.cached_requests, n), "+ KV cache, one at a time"));
  fmt::print(stderr, "throughput: continuous batching, {} requests...\n", n);
  const EngineRun engine_n = run_engine(transformer, prompt, max_tokens, n, options.max_batch);
  steps.push_back({"throughput", fmt::format("+ continuous batching ({} at once)", n), engine_n.tokens, engine_n.ms,
                   engine_n.steps * weight_bytes, "bytes: weights per step"});

  // The same workload through the HTTP server, in this process on a free loopback port: n streaming clients
  // (the bench's), each sending the prompt's token ids. What this row loses against the row before it is
  // what HTTP, JSON, SSE and the engine thread's hand-offs cost.
  fmt::print(stderr, "throughput: the same {} requests through the HTTP server ({} streaming clients)...\n", n, n);
  ServeOptions serve_options;
  serve_options.port = 0;
  serve_options.engine.max_batch = options.max_batch;
  serve_options.engine.prefix_caching = false;
  serve_options.http_threads = std::max(8, n + 4);
  BenchResult http;
  {
    HttpServer server(model, transformer, serve_options, max_tokens, 0);
    server.start();
    BenchOptions load;
    load.url = fmt::format("http://127.0.0.1:{}", server.port());
    load.model = server.model_id();
    load.concurrency = n;
    load.requests = n;
    load.prompt_ids = prompt;
    load.prompt_tokens = int(prompt.size());
    load.output_tokens = max_tokens;
    load.quiet = true;
    http = run_load(load);
    server.drain(10.0);
  }
  if (http.failed > 0) {
    for (const RequestTiming& timing : http.requests) {
      if (!timing.ok) fail("the HTTP server failed a request of the ladder: {}", timing.error);
    }
  }
  std::vector<double> ttft;
  for (const RequestTiming& timing : http.requests) ttft.push_back(timing.ttft_ms);
  Step http_step{"throughput", fmt::format("+ HTTP server ({} streaming clients)", n), int(http.generated_tokens),
                 http.wall_s * 1000.0, 0, "bytes: not counted over HTTP"};
  steps.push_back(http_step);

  bool identical = engine_one.outputs[0] == cached_one.tokens;
  for (const auto& output : engine_n.outputs) identical = identical && output == cached_one.tokens;
  // Over HTTP the client sees text: it must be the KV-cache decoder's tokens, detokenized.
  serve::IncrementalDetokenizer detokenizer(*model.tokenizer, prompt.back());
  std::string expected_text;
  for (int token : cached_one.tokens) expected_text += detokenizer.push(token);
  expected_text += detokenizer.flush();
  for (const RequestTiming& timing : http.requests) identical = identical && timing.text == expected_text;

  // ---- the report ----
  Report report("ch09_production", describe_machine(threads, bandwidth), model_json(model, common.weights));
  double naive_rate[2] = {0, 0}, previous = 0;
  std::string previous_view;
  for (const Step& step : steps) {
    ReportRow row = Report::make_row(fmt::format("{}: {}", step.view, step.name), step.tokens, step.ms, step.bytes);
    const int view = step.view == "single" ? 0 : 1;
    if (step.view != previous_view) naive_rate[view] = row.tok_per_s, previous = row.tok_per_s;
    row.extra["view"] = step.view;
    row.extra["vs_previous"] = row.tok_per_s / previous;
    row.extra["vs_naive"] = row.tok_per_s / naive_rate[view];
    row.extra["usd_per_m_tokens"] = usd_per_million(options.usd_per_hour, row.tok_per_s);
    if (!step.note.empty()) row.extra["note"] = step.note;
    if (step.name.rfind("+ HTTP server", 0) == 0) {
      row.extra["ttft_p50_ms"] = percentile(ttft, 50);
      row.extra["ttft_p99_ms"] = percentile(ttft, 99);
    }
    previous = row.tok_per_s;
    previous_view = step.view;
    report.add_row(std::move(row));
  }
  const nlohmann::ordered_json absent = nlohmann::ordered_json::array(
      {{{"step", "+ quantized weights (int8, int4)"}, {"chapter", "ch07_quantization"}, {"reason", "ch07 is in the build, not wired into the ladder yet"}},
       {{"step", "+ speculative decoding"}, {"chapter", "ch08_speculative"}, {"reason", "ch08 is in the build (batch 1, outside the engine), not wired into the ladder yet"}}});
  report.set_field("absent", absent);
  report.set_field("tokens_identical", identical);
  report.set_field("blocks_free_after", engine_n.blocks_free_after);
  report.set_field("usd_per_hour", options.usd_per_hour);
  report.set_field("workload", {{"prompt_tokens", prompt.size()}, {"output_tokens", max_tokens}, {"requests", n}});
  // The server's acceptance: its generated-token throughput against the engine's in-process throughput.
  const double in_process = report.rows()[report.rows().size() - 2].tok_per_s;
  const double over_http = report.rows().back().tok_per_s;
  report.set_field("http_vs_in_process", over_http / in_process);

  fmt::print("\n");
  report.print_table(stdout);
  for (const auto& step : absent) fmt::print("absent: {} ({}: {})\n", step["step"].get<std::string>(), step["chapter"].get<std::string>(), step["reason"].get<std::string>());
  fmt::print("tokens identical: {} (every engine request = the KV-cache decoder's greedy tokens, and every HTTP reply its "
             "text); KV blocks all free after: {}\n", identical ? "yes" : "NO", engine_n.blocks_free_after ? "yes" : "NO");
  fmt::print("HTTP server: {:.1f}% of the engine's in-process throughput on the same workload; TTFT p50 {:.1f} ms, "
             "p99 {:.1f} ms at {} concurrent streams\n", 100.0 * over_http / in_process, percentile(ttft, 50),
             percentile(ttft, 99), n);
  fmt::print("speedup: vs the first row; vs_previous / vs_naive: within the view; usd_per_m_tokens at ${}/hour\n",
             options.usd_per_hour);

  std::filesystem::create_directories(options.out_dir);
  const std::string json_path = common.json.empty() ? (std::filesystem::path(options.out_dir) / "report.json").string() : common.json;
  write_report_json(report, json_path);
  // report.md: the same rows as a Markdown table.
  const std::string md_path = (std::filesystem::path(options.out_dir) / "report.md").string();
  std::ofstream md(md_path);
  if (!md) fail("cannot write {}", md_path);
  md << fmt::format("# The speedup ladder\n\n{} on {} ({} threads, measured bandwidth {:.1f} GB/s); {} prompt tokens, {} "
                    "generated per request, greedy.\n\n",
                    model.description, report.machine().cpu, threads, bandwidth, prompt.size(), max_tokens);
  md << "| view | step | tok/s | vs previous | vs naive | % BW | $/M tokens |\n|---|---|---:|---:|---:|---:|---:|\n";
  for (const ReportRow& row : report.rows()) {
    md << fmt::format("| {} | {} | {:.2f} | {:.2f}x | {:.2f}x | {:.1f} | {:.2f} |\n", row.extra["view"].get<std::string>(),
                      row.variant.substr(row.variant.find(": ") + 2), row.tok_per_s, row.extra["vs_previous"].get<double>(),
                      row.extra["vs_naive"].get<double>(), row.bandwidth_pct, row.extra["usd_per_m_tokens"].get<double>());
  }
  for (const auto& step : absent) md << fmt::format("| - | {} | absent ({}) | | | | |\n", step["step"].get<std::string>(), step["chapter"].get<std::string>());
  md << fmt::format("\ntokens identical: {}; KV blocks all free after: {}. Plot: ladder.png (tok/s, log scale; left "
                    "group single stream, right group throughput, rows in table order).\n",
                    identical ? "yes" : "no", engine_n.blocks_free_after ? "yes" : "no");
  md.close();
  // ladder.png: one bar per row, the two views as two groups.
  std::vector<BarGroup> groups(2);
  const uint32_t colors[] = {0x999999, 0x4477AA, 0x228833, 0xCCBB44, 0xEE6677};
  for (const ReportRow& row : report.rows()) {
    BarGroup& group = groups[row.extra["view"] == "single" ? 0 : 1];
    group.bars.push_back({row.tok_per_s, colors[group.bars.size() % 5]});
  }
  const std::string png_path = (std::filesystem::path(options.out_dir) / "ladder.png").string();
  write_bar_chart_png(png_path, groups);
  fmt::print(stderr, "wrote {} and {}\n", md_path, png_path);
  return identical && engine_n.blocks_free_after ? 0 : 1;
}

}  // namespace infer
