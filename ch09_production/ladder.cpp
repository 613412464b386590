// ladder.cpp: the speedup ladder. One model, one workload, one run, every step the book takes, in two views:
//
//   single stream (batch 1, the latency a user feels):  naive -> + KV cache -> + the batching engine
//   throughput (N requests at once, the server's view): naive one at a time -> KV cache one at a time ->
//                                                        continuous batching over the paged KV cache
//   then, in both views, + quantized weights (ch07: int8 = q8_0, int4 = the model file's own q4_1 by default,
//   --int4 q4_0 to requantize) through the same engine, and in the single-stream view + speculative decoding
//   (ch08's SpeculativeGenerator) on the int4 target with two drafts: prompt lookup (free) and an early exit
//   of the int4 target itself (its first --early-exit-layers layers).
//
// Each row: generated tok/s, speedup over the row before and over naive, % of the measured bandwidth (weight
// bytes of the row's format counted in code / time), and $ per million tokens at --usd-per-hour. Greedy
// decoding with end-of-text ignored. The f32 rows generate exactly the same tokens; the engine's are checked
// against the KV-cache decoder's (tokens_identical). A quantized format changes the model, so its tokens
// are checked against its own batch-1 run instead (batching changes nothing), and the speculative rows
// against plain greedy decoding of their int4 target (speculative_identical: speculation changes nothing).
// The HTTP row is a side measurement: the rows after it are compared with the in-process row before it.
// Writes report.json (--json), report.md and ladder.png.
#include "ladder.h"

#include "bench.h"
#include "png_plot.h"
#include "server.h"

#include "infer/app/hardware.h"
#include "infer/core/error.h"
#include "infer/core/fresh_thread.h"
#include "infer/core/timer.h"
#include "infer/engine/draft.h"
#include "infer/engine/engine.h"
#include "infer/engine/generator.h"
#include "infer/engine/speculative.h"
#include "infer/serve/text_stream.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

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
  app.add_option("--int4", options.int4_format, "The int4 row's format: q4_1 (SmolLM2's file format: used as stored) or q4_0")
      ->check(CLI::IsMember({"q4_0", "q4_1"}));
  app.add_option("--early-exit-layers", options.early_exit_layers,
                 "Layers of the early-exit draft of the speculative row (0: a quarter of the model's; -1: no such row)")
      ->check(CLI::Range(-1, 1024));
  app.add_flag("!--no-quantized", options.quantized, "Skip the quantized and speculative rows");
  app.add_option("--http-pairs", options.http_pairs,
                 "Runs of the in-process / HTTP comparison, alternated; each row keeps its fastest, the ratio is the pairs' median")->check(CLI::Range(1, 20));
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
  bool side = false;      // a side measurement (HTTP, a second draft): the next row is compared with the row before
};

// The engine over `count` copies of the prompt (each its own request), all submitted at once.
struct EngineRun {
  double ms = 0.0;
  int tokens = 0;
  uint64_t steps = 0;
  std::vector<std::vector<int>> outputs;
  bool blocks_free_after = false;
  uint64_t spec_proposed = 0, spec_accepted = 0, spec_steps = 0;  // engine speculation (0 when off)
};

EngineRun run_engine_here(Transformer& model, const std::vector<int>& prompt, int max_tokens, int count, int max_batch,
                          EngineDraft draft = EngineDraft::none) {
  EngineOptions options;
  options.max_batch = max_batch;
  options.speculation.draft = draft;  // prompt lookup inside the engine (ch08), switched off at large batches
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
  run.spec_proposed = stats.spec_proposed;
  run.spec_accepted = stats.spec_accepted;
  run.spec_steps = stats.spec_steps;
  return run;
}

// Every OpenMP user of the ladder (loading weights, the bandwidth probe, every row) runs on a fresh thread that
// exits afterwards (core/fresh_thread.h): at most one OpenMP pool is alive at a time, so the in-process rows and
// the HTTP server's engine thread each run as they would alone (with the main thread's pool alive beside the
// engine's, the batch-1 engine took 21.5 ms per token instead of 12.1).
EngineRun run_engine(Transformer& model, const std::vector<int>& prompt, int max_tokens, int count, int max_batch,
                     EngineDraft draft = EngineDraft::none) {
  return on_fresh_thread([&] { return run_engine_here(model, prompt, max_tokens, count, max_batch, draft); });
}

// How many leading tokens two greedy outputs share.
size_t common_prefix(const std::vector<int>& a, const std::vector<int>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

double usd_per_million(double usd_per_hour, double tok_per_s) {
  return tok_per_s > 0 ? usd_per_hour / 3600.0 / tok_per_s * 1e6 : 0.0;
}

}  // namespace

int run_ladder(const CommonOptions& common, const LadderOptions& options) {
  const int threads = resolve_threads(common.threads);
  auto backend = make_backend(common.device, threads, common.weight_layout);
  LoadedModel model = load_model(common);
  const std::unique_ptr<Weights> weights_owner = on_fresh_thread(
      [&] { return std::make_unique<Weights>(model.file, parse_weight_format(common.weights), *backend); });
  Weights& weights = *weights_owner;
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
    bandwidth = on_fresh_thread([&] { return measure_read_bandwidth(size_t(1024) << 20, threads, 5).gb_per_s; });
  }
  fmt::print("ch09_production ladder: {} ({} weights, {:.1f} MB read per token), {} prompt tokens, {} generated "
             "per request, greedy, end-of-text ignored\n",
             model.description, common.weights, weight_bytes / 1e6, prompt.size(), max_tokens);

  GenerationOptions generation;
  generation.max_new_tokens = max_tokens;
  generation.sampler.temperature = 0.0f;
  std::vector<Step> single, throughput;  // the two views, printed one after the other

  // ---- single stream ----
  fmt::print(stderr, "single stream: naive...\n");
  NaiveGenerator naive(transformer);
  const GenerationResult naive_one = on_fresh_thread([&] { return naive.generate(prompt, generation); });
  single.push_back({"single", "naive", int(naive_one.tokens.size()), naive_one.total_ms, naive_one.bytes_moved, ""});
  fmt::print(stderr, "single stream: KV cache...\n");
  CachedGenerator cached(transformer);
  const GenerationResult cached_one = on_fresh_thread([&] { return cached.generate(prompt, generation); });
  single.push_back({"single", "+ KV cache", int(cached_one.tokens.size()), cached_one.total_ms, cached_one.bytes_moved, ""});
  fmt::print(stderr, "single stream: engine...\n");
  const EngineRun engine_one = run_engine(transformer, prompt, max_tokens, 1, options.max_batch);
  single.push_back({"single", "+ paged engine (batch 1)", engine_one.tokens, engine_one.ms, engine_one.steps * weight_bytes,
                   "bytes: weights per step"});

  // ---- throughput ----
  const int n = options.requests;
  auto sequential = [&](Generator& generator, int count, const char* name) {
    Step step{"throughput", name, 0, 0.0, 0, ""};
    for (int r = 0; r < count; ++r) {
      fmt::print(stderr, "throughput: {} {}/{}...\n", name, r + 1, count);
      const GenerationResult result = on_fresh_thread([&] { return generator.generate(prompt, generation); });
      step.tokens += int(result.tokens.size());
      step.ms += result.total_ms;
      step.bytes += result.bytes_moved;
    }
    if (count < n) step.note = fmt::format("{} of the {} requests run (one at a time, so the rate is the same)", count, n);
    return step;
  };
  throughput.push_back(sequential(naive, std::min(options.naive_requests, n), "naive, one at a time"));
  throughput.push_back(sequential(cached, std::min(options.cached_requests, n), "+ KV cache, one at a time"));
  // Continuous batching in process, and the same workload through the HTTP server, in this process on a free
  // loopback port: n streaming clients (the bench's), each sending the prompt's token ids. What the HTTP row
  // loses against the in-process row is what HTTP, JSON, SSE and the engine thread's hand-offs cost. Both use
  // the same Transformer, the same EngineOptions (max_batch, prefix caching off, the defaults otherwise) and an
  // engine on a thread of its own; they run alternated --http-pairs times, each row keeps its fastest run (a
  // shared machine only ever slows a run down), and http_vs_in_process is the median of the pairs' ratios (the
  // two runs of a pair are seconds apart, so a change of load between pairs cancels; the fastest HTTP run over
  // the fastest in-process run would favour whichever side varies more).
  ServeOptions serve_options;
  serve_options.port = 0;
  serve_options.engine.max_batch = options.max_batch;
  serve_options.engine.prefix_caching = false;
  serve_options.http_threads = std::max(8, n + 4);
  // Over HTTP the client sees text: it must be the KV-cache decoder's tokens, detokenized.
  serve::IncrementalDetokenizer detokenizer(*model.tokenizer, prompt.back());
  std::string expected_text;
  for (int token : cached_one.tokens) expected_text += detokenizer.push(token);
  expected_text += detokenizer.flush();
  bool batched_identical = true;
  EngineRun engine_n;
  BenchResult http;
  std::vector<double> pair_ratios;
  for (int pair = 0; pair < options.http_pairs; ++pair) {
    fmt::print(stderr, "throughput: continuous batching, {} requests (pair {}/{})...\n", n, pair + 1, options.http_pairs);
    EngineRun engine_run = run_engine(transformer, prompt, max_tokens, n, options.max_batch);
    for (const auto& output : engine_run.outputs) batched_identical = batched_identical && output == cached_one.tokens;
    batched_identical = batched_identical && engine_run.blocks_free_after;
    fmt::print(stderr, "throughput: the same {} requests through the HTTP server ({} streaming clients, pair {}/{})...\n",
               n, n, pair + 1, options.http_pairs);
    BenchResult http_run;
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
      http_run = run_load(load);
      server.drain(10.0);
    }
    if (http_run.failed > 0) {
      for (const RequestTiming& timing : http_run.requests) {
        if (!timing.ok) fail("the HTTP server failed a request of the ladder: {}", timing.error);
      }
    }
    for (const RequestTiming& timing : http_run.requests) batched_identical = batched_identical && timing.text == expected_text;
    pair_ratios.push_back((double(http_run.generated_tokens) / http_run.wall_s) / (1000.0 * engine_run.tokens / engine_run.ms));
    fmt::print(stderr, "  pair {}: in process {:.1f} tok/s ({} steps), HTTP {:.1f} tok/s\n", pair + 1,
               1000.0 * engine_run.tokens / engine_run.ms, engine_run.steps, double(http_run.generated_tokens) / http_run.wall_s);
    if (pair == 0 || engine_run.ms < engine_n.ms) engine_n = std::move(engine_run);
    if (pair == 0 || http_run.wall_s < http.wall_s) http = std::move(http_run);
  }
  throughput.push_back({"throughput", fmt::format("+ continuous batching ({} at once)", n), engine_n.tokens, engine_n.ms,
                        engine_n.steps * weight_bytes,
                        fmt::format("bytes: weights per step; fastest of {} alternated with HTTP", options.http_pairs)});
  std::vector<double> ttft;
  for (const RequestTiming& timing : http.requests) ttft.push_back(timing.ttft_ms);
  Step http_step{"throughput", fmt::format("+ HTTP server ({} streaming clients)", n), int(http.generated_tokens),
                 http.wall_s * 1000.0, 0,
                 fmt::format("bytes: not counted over HTTP; a side measurement; fastest of {}", options.http_pairs), true};
  throughput.push_back(http_step);
  const double in_process_rate = 1000.0 * engine_n.tokens / engine_n.ms;
  const double http_rate = 1000.0 * double(http.generated_tokens) / (http.wall_s * 1000.0);

  // ---- + quantized weights (ch07), both views, through the same engine ----
  nlohmann::ordered_json quantized_checks = nlohmann::ordered_json::array();
  bool quantized_consistent = true;
  std::unique_ptr<Weights> int4_weights;
  std::unique_ptr<Transformer> int4_model;
  EngineRun int4_one;
  if (options.quantized) {
    const std::pair<std::string, std::string> formats[] = {{"int8", "q8_0"}, {"int4", options.int4_format}};
    for (const auto& [kind, format] : formats) {
      fmt::print(stderr, "quantized weights: {} ({})...\n", kind, format);
      const WeightFormat q_format = parse_weight_format(format);  // (a lambda may not capture a structured binding
                                                                   // in clang < 16)
      auto q_weights = on_fresh_thread([&] { return std::make_unique<Weights>(model.file, q_format, *backend); });
      auto q_model = std::make_unique<Transformer>(*q_weights, *backend, std::max(buffer, 512));
      q_model->set_check_finite(common.check_numerics);
      const uint64_t q_bytes = q_weights->bytes_per_forward(1);
      const EngineRun one = run_engine(*q_model, prompt, max_tokens, 1, options.max_batch);
      const EngineRun many = run_engine(*q_model, prompt, max_tokens, n, options.max_batch);
      const std::string label = fmt::format("+ quantized weights {} ({})", kind, format);
      const std::string note = fmt::format("bytes: {} weights per step ({:.1f} MB)", format, q_bytes / 1e6);
      single.push_back({"single", label + " (batch 1)", one.tokens, one.ms, one.steps * q_bytes, note});
      throughput.push_back({"throughput", fmt::format("{} ({} at once)", label, n), many.tokens, many.ms,
                            many.steps * q_bytes, note});
      bool batch_invariant = many.blocks_free_after && one.blocks_free_after;
      for (const auto& output : many.outputs) batch_invariant = batch_invariant && output == one.outputs[0];
      quantized_consistent = quantized_consistent && batch_invariant;
      quantized_checks.push_back({{"format", format},
                                  {"bytes_per_token", q_bytes},
                                  {"batched_equals_batch_1", batch_invariant},
                                  {"greedy_tokens_equal_to_f32", common_prefix(one.outputs[0], cached_one.tokens)},
                                  {"compared_tokens", max_tokens}});
      if (kind == "int4") {
        int4_weights = std::move(q_weights);
        int4_model = std::move(q_model);
        int4_one = one;
      }
    }
  }

  // ---- + speculative decoding (ch08), single stream, on the int4 target ----
  nlohmann::ordered_json speculative_checks = nlohmann::ordered_json::array();
  bool speculative_identical = true;
  if (int4_model) {
    const int layers = model.file.config.n_layers;
    const int exit_layers = options.early_exit_layers == 0 ? std::max(1, layers / 4) : options.early_exit_layers;
    SpeculativeOptions speculative;  // ch08's defaults: adaptive gamma, off while it does not pay
    const int capacity = int(prompt.size()) + max_tokens + speculative.max_gamma + 1;
    std::unique_ptr<Transformer> early_model;
    struct Candidate {
      std::string name;
      std::unique_ptr<Draft> draft;
    };
    std::vector<Candidate> drafts;
    drafts.push_back({"prompt lookup", std::make_unique<NgramDraft>()});
    if (options.early_exit_layers >= 0 && exit_layers < layers) {
      early_model = std::make_unique<Transformer>(*int4_weights, *backend, std::max(buffer, 512));
      early_model->set_layer_limit(exit_layers);
      const std::string name = fmt::format("early exit {}/{}", exit_layers, layers);
      drafts.push_back({name, std::make_unique<ModelDraft>(name, *early_model, capacity)});
    }
    const uint64_t int4_bytes = int4_weights->bytes_per_forward(1);
    for (size_t d = 0; d < drafts.size(); ++d) {
      fmt::print(stderr, "speculative decoding: {} int4 target, {} draft...\n", options.int4_format, drafts[d].name);
      SpeculativeGenerator generator(*int4_model, *drafts[d].draft, speculative);
      const GenerationResult result = on_fresh_thread([&] { return generator.generate(prompt, generation); });
      const SpeculativeStats& stats = generator.stats();
      const bool same = result.tokens == int4_one.outputs[0];
      speculative_identical = speculative_identical && same;
      single.push_back({"single", fmt::format("+ speculative decoding ({} target, {} draft)", options.int4_format,
                                              drafts[d].name),
                        int(result.tokens.size()), result.total_ms, result.bytes_moved,
                        fmt::format("acceptance {:.2f}, {} target passes for {} tokens; vs_previous: vs the int4 row",
                                    stats.acceptance_rate(), stats.target_passes(), result.tokens.size()),
                        d + 1 < drafts.size()});
      speculative_checks.push_back({{"draft", drafts[d].name},
                                    {"equals_plain_greedy", same},
                                    {"acceptance", stats.acceptance_rate()},
                                    {"target_passes", stats.target_passes()},
                                    {"tokens", result.tokens.size()},
                                    {"bytes_per_token", int4_bytes}});
    }
    // Throughput view: prompt lookup inside the engine (each decoding request adds its guesses to the step's
    // batch), on the same int4 target and workload as the int4 row; the engine's policy switches it off while
    // the batch is too large for speculation to pay (ch08's Part 4).
    fmt::print(stderr, "speculative decoding: {} int4 target, prompt lookup inside the engine, {} requests...\n",
               options.int4_format, n);
    const EngineRun spec_many = run_engine(*int4_model, prompt, max_tokens, n, options.max_batch, EngineDraft::prompt_lookup);
    bool same = spec_many.blocks_free_after;
    for (const auto& output : spec_many.outputs) same = same && output == int4_one.outputs[0];
    speculative_identical = speculative_identical && same;
    throughput.push_back({"throughput",
                          fmt::format("+ speculative decoding (prompt lookup in the engine, {} target, {} at once)",
                                      options.int4_format, n),
                          spec_many.tokens, spec_many.ms, spec_many.steps * int4_bytes,
                          fmt::format("{} of {} steps speculated, {} of {} guesses accepted; vs_previous: vs the int4 row",
                                      spec_many.spec_steps, spec_many.steps, spec_many.spec_accepted,
                                      spec_many.spec_proposed)});
    speculative_checks.push_back({{"draft", "prompt lookup in the engine"},
                                  {"requests", n},
                                  {"equals_plain_greedy", same},
                                  {"speculating_steps", spec_many.spec_steps},
                                  {"steps", spec_many.steps},
                                  {"proposed", spec_many.spec_proposed},
                                  {"accepted", spec_many.spec_accepted}});
  }
  std::vector<Step> steps = single;
  steps.insert(steps.end(), throughput.begin(), throughput.end());

  const bool identical = engine_one.outputs[0] == cached_one.tokens && batched_identical;

  // ---- the report ----
  Report report("ch09_production", describe_machine(threads, bandwidth), model_json(model, common.weights));
  double naive_rate[2] = {0, 0}, previous = 0;
  std::string previous_view;
  for (const Step& step : steps) {
    ReportRow row = Report::make_row(fmt::format("{}: {}", step.view, step.name), step.tokens, step.ms, step.bytes);
    const int view = step.view == "single" ? 0 : 1;
    if (step.view != previous_view) naive_rate[view] = row.tok_per_s, previous = row.tok_per_s;
    row.extra["side"] = step.side;
    row.extra["view"] = step.view;
    row.extra["vs_previous"] = row.tok_per_s / previous;
    row.extra["vs_naive"] = row.tok_per_s / naive_rate[view];
    row.extra["usd_per_m_tokens"] = usd_per_million(options.usd_per_hour, row.tok_per_s);
    if (!step.note.empty()) row.extra["note"] = step.note;
    if (step.name.rfind("+ HTTP server", 0) == 0) {
      row.extra["ttft_p50_ms"] = percentile(ttft, 50);
      row.extra["ttft_p99_ms"] = percentile(ttft, 99);
    }
    if (!step.side) previous = row.tok_per_s;  // a side row is compared, never compared with
    previous_view = step.view;
    report.add_row(std::move(row));
  }
  nlohmann::ordered_json absent = nlohmann::ordered_json::array();
  if (!options.quantized) {
    absent.push_back({{"step", "+ quantized weights (int8, int4)"}, {"chapter", "ch07_quantization"}, {"reason", "--no-quantized"}});
    absent.push_back({{"step", "+ speculative decoding"}, {"chapter", "ch08_speculative"}, {"reason", "--no-quantized"}});
  }
  report.set_field("absent", absent);
  report.set_field("tokens_identical", identical);
  report.set_field("quantized", quantized_checks);
  report.set_field("speculative", speculative_checks);
  report.set_field("speculative_identical", speculative_identical);
  report.set_field("blocks_free_after", engine_n.blocks_free_after);
  report.set_field("usd_per_hour", options.usd_per_hour);
  report.set_field("workload", {{"prompt_tokens", prompt.size()}, {"output_tokens", max_tokens}, {"requests", n}});
  // The server's acceptance: its generated-token throughput against the engine's in-process throughput.
  std::vector<double> sorted_ratios = pair_ratios;
  std::sort(sorted_ratios.begin(), sorted_ratios.end());
  const size_t middle = sorted_ratios.size() / 2;
  const double http_vs_in_process = sorted_ratios.size() % 2 ? sorted_ratios[middle]
                                                             : 0.5 * (sorted_ratios[middle - 1] + sorted_ratios[middle]);
  report.set_field("http_vs_in_process", http_vs_in_process);
  report.set_field("http_vs_in_process_pairs", pair_ratios);
  report.set_field("http_vs_in_process_fastest", http_rate / in_process_rate);

  fmt::print("\n");
  report.print_table(stdout);
  for (const auto& step : absent) fmt::print("absent: {} ({}: {})\n", step["step"].get<std::string>(), step["chapter"].get<std::string>(), step["reason"].get<std::string>());
  fmt::print("tokens identical: {} (every engine request = the KV-cache decoder's greedy tokens, and every HTTP reply its "
             "text); KV blocks all free after: {}\n", identical ? "yes" : "NO", engine_n.blocks_free_after ? "yes" : "NO");
  for (const auto& q : quantized_checks)
    fmt::print("quantized {}: {:.1f} MB per token; batched = batch 1: {}; greedy tokens equal to f32's: first {} of {}\n",
               q["format"].get<std::string>(), q["bytes_per_token"].get<uint64_t>() / 1e6,
               q["batched_equals_batch_1"].get<bool>() ? "yes" : "NO", q["greedy_tokens_equal_to_f32"].get<size_t>(),
               max_tokens);
  for (const auto& sp : speculative_checks) {
    if (sp.contains("requests")) {  // prompt lookup inside the engine (throughput view)
      fmt::print("speculative, {} ({} requests): output = plain greedy of its target: {}; {} of {} steps speculated, {} "
                 "of {} guesses accepted\n", sp["draft"].get<std::string>(), sp["requests"].get<int>(),
                 sp["equals_plain_greedy"].get<bool>() ? "yes" : "NO", sp["speculating_steps"].get<uint64_t>(),
                 sp["steps"].get<uint64_t>(), sp["accepted"].get<uint64_t>(), sp["proposed"].get<uint64_t>());
      continue;
    }
    fmt::print("speculative, {} draft: output = plain greedy of its target: {}; acceptance {:.2f}; {} target passes for {} "
               "tokens\n", sp["draft"].get<std::string>(), sp["equals_plain_greedy"].get<bool>() ? "yes" : "NO",
               sp["acceptance"].get<double>(), sp["target_passes"].get<int>(), sp["tokens"].get<size_t>());
  }
  fmt::print("HTTP server: {:.1f}% of the engine's in-process throughput on the same workload (median of {} alternated "
             "pairs: {:.2f}; fastest of each: {:.2f}); TTFT p50 {:.1f} ms, p99 {:.1f} ms at {} concurrent streams\n",
             100.0 * http_vs_in_process, options.http_pairs, fmt::join(pair_ratios, ", "), http_rate / in_process_rate,
             percentile(ttft, 50), percentile(ttft, 99), n);
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
  md << fmt::format("\ntokens identical: {}; quantized rows batched = batch 1: {}; speculative output = plain greedy: {}; "
                    "KV blocks all free after: {}. Side rows (HTTP, a second draft) are not a step: the row after one "
                    "is compared with the row before it. Plot: ladder.png (tok/s, log scale; left group single stream, "
                    "right group throughput, rows in table order).\n",
                    identical ? "yes" : "no", quantized_consistent ? "yes" : "no", speculative_identical ? "yes" : "no",
                    engine_n.blocks_free_after ? "yes" : "no");
  md.close();
  // ladder.png: one bar per row, the two views as two groups.
  std::vector<BarGroup> groups(2);
  const uint32_t colors[] = {0x999999, 0x4477AA, 0x228833, 0xCCBB44, 0xEE6677, 0x66CCEE, 0xAA3377, 0xBBBBBB};
  for (const ReportRow& row : report.rows()) {
    BarGroup& group = groups[row.extra["view"] == "single" ? 0 : 1];
    group.bars.push_back({row.tok_per_s, colors[group.bars.size() % 8]});
  }
  const std::string png_path = (std::filesystem::path(options.out_dir) / "ladder.png").string();
  write_bar_chart_png(png_path, groups);
  fmt::print(stderr, "wrote {} and {}\n", md_path, png_path);
  return identical && engine_n.blocks_free_after && quantized_consistent && speculative_identical ? 0 : 1;
}

}  // namespace infer
