// ch06_batching: many requests through one forward pass: one at a time vs static vs continuous batching,
// over a paged KV cache with prefix sharing.
//
// Part 1 (the acceptance run): N requests submitted at once (default 64 with 64-token prompts and 64 output
//   tokens, end-of-text ignored): one request at a time through ch05's CachedGenerator (a subset, --solo),
//   static batching (a batch of max_batch waits for its longest member) and continuous batching. Every
//   engine output is compared with the same request decoded alone (the subset that ran alone) and between
//   the two engines (all requests); the pool must be all free after each run.
// Part 2: the max-batch sweep (1, 4, 16, 64) on a smaller workload: throughput against TPOT.
// Part 3: mixed output lengths (geometric): static vs continuous, and peak paged KV bytes against a
//   contiguous max-length reservation per request.
// Part 4: a shared system prompt, prefix caching off vs on: prefill tokens run and TTFT.
// Part 5: long contexts: prefill and decode speed with 32, 128 and 2,048 tokens (measure_long_context).
// All rows come from this one run; the JSON (--json) records outputs_identical and blocks_free_after.
#include "infer/app/app.h"
#include "infer/app/gpu_hardware.h"
#include "infer/app/hardware.h"
#include "infer/app/long_context.h"
#include "infer/core/error.h"
#include "infer/engine/engine.h"
#include "infer/engine/generator.h"
#include "infer/engine/workload.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

using namespace infer;

namespace {

// "\r  continuous  1234/4096 tokens" on stderr while a run goes.
std::function<void(int, int)> progress(const std::string& label, Engine& engine, uint64_t total_tokens) {
  return [label, &engine, total_tokens, last = EngineClock::now()](int done, int total) mutable {
    const auto now = EngineClock::now();
    if (done < total && now - last < std::chrono::milliseconds(500)) return;
    last = now;
    fmt::print(stderr, "\r  {:<28} {:6}/{} tokens, {:3}/{} requests done", label, engine.stats().generated_tokens,
               total_tokens, done, total);
    if (done == total) fmt::print(stderr, "\n");
  };
}

uint64_t total_output(const std::vector<WorkloadRequest>& workload) {
  uint64_t total = 0;
  for (const auto& r : workload) total += uint64_t(r.max_tokens);
  return total;
}

std::vector<int> parse_list(const std::string& text, const char* option) {
  std::vector<int> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      values.push_back(std::stoi(item));
    } catch (...) {
      fail("{}: '{}' is not a number", option, item);
    }
    if (values.back() < 1) fail("{}: {} must be >= 1", option, values.back());
  }
  if (values.empty()) fail("{}: empty list", option);
  return values;
}

struct EngineRun {
  RunResult result;
  bool blocks_free_after = false;
};

struct Setup {
  Transformer* model;
  int block_size;
  int num_blocks;
  int step_tokens;
  KVDType kv_dtype;
};

EngineRun run_engine(const Setup& setup, const std::string& label, const std::vector<WorkloadRequest>& workload,
                     int max_batch, SchedulePolicy policy, bool prefix_caching) {
  EngineOptions options;
  options.block_size = setup.block_size;
  options.kv_dtype = setup.kv_dtype;
  options.num_blocks = setup.num_blocks;
  if (options.num_blocks == 0) {  // enough for every running request's full length: no preemption
    int longest = 0;
    for (const auto& r : workload) longest = std::max(longest, int(r.prompt.size()) + r.max_tokens);
    options.num_blocks = std::min(max_batch, int(workload.size())) * ((longest + setup.block_size - 1) / setup.block_size);
  }
  options.max_batch = max_batch;
  options.max_step_tokens = setup.step_tokens;
  options.prefix_caching = prefix_caching;
  options.policy = policy;
  Engine engine(*setup.model, options);
  RequestParams params;
  params.sampler.temperature = 0.0f;  // greedy: outputs comparable token for token
  params.ignore_eos = true;
  fmt::print(stderr, "{}: {} requests, max batch {}\n", label, workload.size(), max_batch);
  EngineRun run;
  run.result = run_workload(engine, workload, params, progress(label, engine, total_output(workload)));
  const EngineStats stats = engine.stats();
  run.blocks_free_after = stats.blocks_free == stats.blocks_total && stats.running == 0 && stats.waiting == 0;
  for (const RequestRecord& r : run.result.requests)
    if (r.finish != FinishReason::length) fail("{}: request {} ended with {} ({})", label, r.id, finish_reason_name(r.finish), r.error);
  return run;
}

// The common row of an engine run plus its latency / memory columns.
ReportRow engine_row(const std::string& variant, const EngineRun& run, int max_batch) {
  const RunMetrics& m = run.result.metrics;
  ReportRow row = Report::make_row(variant, int(m.generated_tokens), 1000.0 * m.wall_s, m.forward_bytes);
  row.extra["max_batch"] = max_batch;
  row.extra["total_tok_per_s"] = m.total_tok_per_s;
  row.extra["ttft_p50_ms"] = m.ttft_ms.p50;
  row.extra["ttft_p99_ms"] = m.ttft_ms.p99;
  row.extra["tpot_p50_ms"] = m.tpot_ms.p50;
  row.extra["tpot_p99_ms"] = m.tpot_ms.p99;
  row.extra["e2e_p50_ms"] = m.e2e_ms.p50;
  row.extra["e2e_p99_ms"] = m.e2e_ms.p99;
  row.extra["prefill_tokens"] = m.prefill_tokens;
  row.extra["peak_kv_blocks"] = m.peak_blocks;
  row.extra["peak_kv_mb"] = double(m.peak_kv_bytes) / 1e6;
  row.extra["preemptions"] = m.preemptions;
  row.extra["blocks_free_after"] = run.blocks_free_after;
  return row;
}

std::vector<std::vector<int>> outputs_of(const RunResult& run) {
  std::vector<std::vector<int>> out;
  for (const auto& r : run.requests) out.push_back(r.tokens);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ch06_batching: one request at a time vs static vs continuous batching over a paged KV cache"};
  CommonOptions options;
  options.max_tokens = 64;  // output tokens per request
  options.threads = 2;
  add_common_options(app, options);
  // The workloads are seeded token ids decoded greedily (outputs compared token for token): the prompt, chat
  // and sampling flags would not be honoured, so they are not offered (--seed seeds the workloads).
  remove_options(app, {"--prompt", "--chat", "--temperature", "--top-p", "--top-k", "--min-p", "--repeat-penalty",
                       "--presence-penalty", "--frequency-penalty"});
  int requests = 64;
  int prompt_len = 64;
  int solo = 8;
  int max_batch = 64;
  int block_size = 16;
  int num_blocks = 0;
  int step_tokens = 512;
  std::string sweep_text = "1,4,16,64";
  int sweep_requests = 64;
  int sweep_prompt = 16;
  int sweep_output = 8;
  int mixed_requests = 64;
  int mixed_prompt = 32;
  double mixed_mean = 32;
  int mixed_max = 512;
  std::string contexts_text = "32,128,2048";
  int shared_requests = 16;
  int shared_own = 32;
  int mixed_max_batch = 16;
  int system_prompt = 256;
  int shared_output = 16;
  bool skip_parts = false;
  int bandwidth_mib = 512;
  double given_bandwidth = 0.0;
  std::string kv_cache = "f32";
  app.add_option("--requests", requests, "Requests of the main run (submitted at once)")->check(CLI::Range(1, 100000));
  app.add_option("--prompt-len", prompt_len, "Prompt tokens per request (random ids)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--solo", solo, "Requests of the main run also decoded one at a time (ch05 path; 0 = none)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--max-batch", max_batch, "Sequences in one step at most")->check(CLI::Range(1, 4096));
  app.add_option("--block-size", block_size, "Positions per KV block")->check(CLI::Range(1, 4096));
  app.add_option("--num-blocks", num_blocks, "KV pool size in blocks (0: every request's full length fits)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--step-tokens", step_tokens, "Token budget of one step (decode tokens + prefill chunks)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--sweep", sweep_text, "Max-batch values of the sweep (Part 2)");
  app.add_option("--sweep-requests", sweep_requests, "Requests of the sweep")->check(CLI::Range(1, 100000));
  app.add_option("--sweep-prompt", sweep_prompt, "Prompt tokens per request in the sweep")->check(CLI::Range(1, 1 << 20));
  app.add_option("--sweep-output", sweep_output, "Output tokens per request in the sweep")->check(CLI::Range(1, 1 << 20));
  app.add_option("--mixed-prompt", mixed_prompt, "Prompt tokens per request in the mixed run")->check(CLI::Range(1, 1 << 20));
  app.add_option("--contexts", contexts_text, "Context lengths of the long-context rows (Part 5; empty: skip)");
  app.add_option("--mixed-requests", mixed_requests, "Requests of the mixed-length run (Part 3)")->check(CLI::Range(1, 100000));
  app.add_option("--mixed-mean", mixed_mean, "Mean output length of the mixed run (geometric)")->check(CLI::Range(1.0, 1e6));
  app.add_option("--mixed-max", mixed_max, "max_tokens cap of the mixed run (its longest possible output)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--shared-requests", shared_requests, "Requests of the shared-system-prompt run (Part 4)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--shared-own", shared_own, "Own prompt tokens per request after the system prompt (Part 4)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--mixed-max-batch", mixed_max_batch, "Max batch of the mixed-length run (fewer than its requests, "
                 "so that static batches form one after another)")->check(CLI::Range(1, 4096));
  app.add_option("--system-prompt", system_prompt, "Tokens of the shared system prompt")->check(CLI::Range(1, 1 << 20));
  app.add_option("--shared-output", shared_output, "Output tokens per request in Part 4")->check(CLI::Range(1, 1 << 20));
  app.add_flag("--main-only", skip_parts, "Run Part 1 only");
  app.add_option("--bandwidth-mib", bandwidth_mib, "Buffer size for the bandwidth measurement")->check(CLI::Range(16, 65536));
  app.add_option("--bandwidth-gb-s", given_bandwidth, "Use this bandwidth instead of measuring it");
  app.add_option("--kv-cache", kv_cache, "KV cache element type of every run: f32, or int8 (ch07: one scale per "
                                         "position and kv head)");
  CLI11_PARSE(app, argc, argv);

  return run_reporting_errors([&] {
    fall_back_to_cpu_without_gpu(options);  // no usable GPU: the same notice and CPU run as every chapter
    const int threads = resolve_threads(options.threads);
    auto backend = make_backend(options.device, threads, options.weight_layout);
    // --device cuda: the same engine on the GPU (paged KV pool in device memory, the CUDA paged attention);
    // "% BW" is then against the GPU's device-to-device copy bandwidth, as in ch05.
    const bool on_gpu = backend->name() == "cuda";
    const std::string gpu_name = on_gpu ? query_gpu().name : std::string();
    LoadedModel model = load_model(options);
    const ModelConfig& config = model.file.config;
    const KVDType kv_dtype = parse_kv_dtype(kv_cache);
    // What one cached position costs over all layers, K and V (scales included for int8): paged_kv_cache.h.
    const uint64_t per_position = PagedKVCache::bytes_per_position(config, kv_dtype);
    Weights weights(model.file, parse_weight_format(options.weights), *backend);
    const int output_len = options.max_tokens;
    const std::vector<int> sweep = parse_list(sweep_text, "--sweep");
    const std::vector<int> contexts = contexts_text.empty() ? std::vector<int>{} : parse_list(contexts_text, "--contexts");
    solo = std::min(solo, requests);

    fmt::print("ch06_batching: one at a time vs static vs continuous batching (paged KV cache, block {})\n", block_size);
    fmt::print("  cpu     {}\n  threads {}\n", cpu_model_name(), threads);
    if (on_gpu) fmt::print("  gpu     {} (--device cuda: every run below is on it)\n", gpu_name);
    fmt::print("  model   {} ({:.1f} M params, {} weights, {:.1f} MB read per pass)\n", model.description,
               config.n_params() / 1e6, options.weights, weights.bytes_per_forward(1) / 1e6);
    if (model.synthetic) fmt::print("  note    synthetic model (random weights): the tokens are gibberish, the costs are real\n");
    double bandwidth = given_bandwidth;
    if (bandwidth <= 0.0 && on_gpu) {
      fmt::print(stderr, "measuring GPU copy bandwidth ({} MiB buffer)...\n", bandwidth_mib);
      bandwidth = measure_gpu_copy_bandwidth(size_t(bandwidth_mib) << 20, 10).gb_per_s;
    } else if (bandwidth <= 0.0) {
      fmt::print(stderr, "measuring memory bandwidth ({} MiB buffer, {} threads)...\n", bandwidth_mib, threads);
      bandwidth = measure_read_bandwidth(size_t(bandwidth_mib) << 20, threads, 5).gb_per_s;
    }
    fmt::print("  {}: {:.1f} GB/s (measured in this run)\n",
               on_gpu ? std::string("GPU copy bandwidth") : fmt::format("memory read bandwidth ({} threads)", threads), bandwidth);

    // Prompt ids drawn past the first 256 ids (special and byte tokens) of the vocabulary.
    const int token_min = config.vocab_size > 512 ? 256 : 0;
    const int pool_blocks = num_blocks;  // 0: each run's pool holds its running requests' full lengths
    Transformer transformer(weights, *backend, std::max({step_tokens, prompt_len, system_prompt + shared_own}));
    transformer.set_check_finite(options.check_numerics);
    const Setup setup{&transformer, block_size, pool_blocks, step_tokens, kv_dtype};
    fmt::print("  engine  max batch {}, step budget {} tokens, KV blocks of {} positions, pool {}\n", max_batch, step_tokens,
               block_size, pool_blocks > 0 ? fmt::format("{} blocks", pool_blocks)
                                           : std::string("per run: max batch x the longest request's blocks (no preemption)"));
    fmt::print("  KV      {} cache, {} bytes per position ({})\n", kv_dtype_name(kv_dtype), per_position,
               kv_dtype == KVDType::f32
                   ? fmt::format("2 * {} layers * {} kv_dim * 4", config.n_layers, config.kv_dim())
                   : fmt::format("2 * {} layers * ({} kv_dim * 1 + {} kv heads * 4)", config.n_layers, config.kv_dim(),
                                 config.n_kv_heads));

    MachineInfo machine = describe_machine(threads, bandwidth);
    if (on_gpu) machine.gpu = gpu_name;
    Report report("ch06_batching", machine, model_json(model, options.weights));

    // ---- Part 1 ---------------------------------------------------------------------------------------
    WorkloadOptions main_options;
    main_options.requests = requests;
    main_options.prompt = {LengthDistribution::Kind::uniform, prompt_len, prompt_len, 0};
    main_options.output = {LengthDistribution::Kind::uniform, output_len, output_len, 0};
    main_options.token_min = token_min;
    main_options.token_max = config.vocab_size;
    main_options.seed = options.seed;
    const std::vector<WorkloadRequest> workload = make_workload(main_options);
    fmt::print("\n== Part 1: {} requests at once, {}-token prompts, {} output tokens, greedy, end-of-text ignored ==\n",
               requests, prompt_len, output_len);

    // One at a time: ch05's CachedGenerator, request after request (a subset: it is the slow baseline).
    std::vector<std::vector<int>> solo_outputs;
    std::vector<double> solo_ttft, solo_tpot;
    double solo_ms = 0;
    uint64_t solo_tokens = 0, solo_bytes = 0;
    if (solo > 0) {
      CachedGenerator generator(transformer, kv_dtype);
      GenerationOptions generation;
      generation.max_new_tokens = output_len;
      generation.sampler.temperature = 0.0f;
      for (int i = 0; i < solo; ++i) {
        fmt::print(stderr, "\r  one at a time (ch05 path)    request {:3}/{}", i + 1, solo);
        GenerationResult result = generator.generate(workload[size_t(i)].prompt, generation);
        solo_ms += result.total_ms;
        solo_tokens += result.tokens.size();
        solo_bytes += result.bytes_moved;
        solo_ttft.push_back(result.first_token_ms);
        if (result.tokens.size() > 1) solo_tpot.push_back(result.decode_ms / double(result.tokens.size() - 1));
        solo_outputs.push_back(std::move(result.tokens));
      }
      fmt::print(stderr, "\n");
    }
    const EngineRun static_run = run_engine(setup, "static", workload, max_batch, SchedulePolicy::static_batch, true);
    const EngineRun continuous_run = run_engine(setup, "continuous", workload, max_batch, SchedulePolicy::continuous, true);

    // Identical outputs: the subset run alone against both engines; the two engines against each other.
    const auto static_outputs = outputs_of(static_run.result);
    const auto continuous_outputs = outputs_of(continuous_run.result);
    int solo_mismatches = 0;
    for (int i = 0; i < solo; ++i)
      solo_mismatches += int(solo_outputs[size_t(i)] != static_outputs[size_t(i)]) +
                         int(solo_outputs[size_t(i)] != continuous_outputs[size_t(i)]);
    int engine_mismatches = 0;
    for (int i = 0; i < requests; ++i) engine_mismatches += int(static_outputs[size_t(i)] != continuous_outputs[size_t(i)]);
    bool outputs_identical = solo_mismatches == 0 && engine_mismatches == 0;
    bool blocks_free_after = static_run.blocks_free_after && continuous_run.blocks_free_after;

    if (solo > 0) {
      ReportRow row = Report::make_row("one_at_a_time", int(solo_tokens), solo_ms, solo_bytes);
      row.extra["max_batch"] = 1;
      row.extra["requests_run"] = solo;
      // Per request, alone: TTFT = its prefill (no queueing: the requests behind it wait outside this number),
      // TPOT = its decode steps.
      row.extra["ttft_p50_ms"] = percentiles(solo_ttft).p50;
      row.extra["tpot_p50_ms"] = percentiles(solo_tpot).p50;
      report.add_row(std::move(row));
    }
    report.add_row(engine_row("static", static_run, max_batch));
    report.add_row(engine_row("continuous", continuous_run, max_batch));
    report.print_table(stdout);
    const double continuous_rate = continuous_run.result.metrics.generated_tok_per_s;
    const double static_rate = static_run.result.metrics.generated_tok_per_s;
    if (solo > 0) {
      const double solo_rate = 1000.0 * double(solo_tokens) / solo_ms;
      fmt::print("one at a time ran {} of the {} requests (its rate does not depend on how many: each runs alone; its\n"
                 "TTFT is the prefill alone, without the wait behind the requests before it).\n", solo, requests);
      fmt::print("continuous / one at a time: {:.2f}x generated tokens per second (the book: 3-10x)\n",
                 continuous_rate / solo_rate);
    }
    fmt::print("continuous / static: {:.2f}x (equal lengths: static loses little here; see Part 3)\n",
               continuous_rate / static_rate);
    fmt::print("outputs identical: {} ({} requests decoded alone = static = continuous, token for token; all {} static = "
               "continuous)\n", outputs_identical ? "yes" : "NO", solo, requests);
    fmt::print("blocks free after each run: {}\n", blocks_free_after ? "yes" : "NO");

    // ---- Part 2: max-batch sweep ----------------------------------------------------------------------
    nlohmann::ordered_json sweep_json = nlohmann::ordered_json::array();
    nlohmann::ordered_json mixed_json, shared_json, long_json;
    if (!skip_parts) {
      WorkloadOptions sweep_options = main_options;
      sweep_options.requests = sweep_requests;
      sweep_options.prompt = {LengthDistribution::Kind::uniform, sweep_prompt, sweep_prompt, 0};
      sweep_options.output = {LengthDistribution::Kind::uniform, sweep_output, sweep_output, 0};
      const auto sweep_workload = make_workload(sweep_options);
      fmt::print("\n== Part 2: max-batch sweep, {} requests at once, {}-token prompts, {} output tokens: throughput vs "
                 "latency ==\n", sweep_requests, sweep_prompt, sweep_output);
      Report sweep_report("ch06_batching", machine, model_json(model, options.weights));
      std::vector<std::vector<int>> first_outputs;
      for (int batch : sweep) {
        const EngineRun run = run_engine(setup, fmt::format("continuous max_batch {}", batch), sweep_workload, batch,
                                         SchedulePolicy::continuous, true);
        const auto outputs = outputs_of(run.result);
        if (first_outputs.empty()) first_outputs = outputs;
        const bool same = outputs == first_outputs;
        outputs_identical = outputs_identical && same;
        blocks_free_after = blocks_free_after && run.blocks_free_after;
        ReportRow row = engine_row(fmt::format("continuous_max_batch_{}", batch), run, batch);
        row.extra["outputs_identical"] = same;
        sweep_report.add_row(row);
        report.add_row(std::move(row));
      }
      sweep_report.print_table(stdout);
      fmt::print("Larger batches read the weights once for more sequences: throughput rises while each step (the TPOT of\n"
                 "every running request) gets longer. outputs_identical: equal to the first row's outputs.\n");

      // ---- Part 3: mixed output lengths ---------------------------------------------------------------
      WorkloadOptions mixed_options = main_options;
      mixed_options.requests = mixed_requests;
      mixed_options.prompt = {LengthDistribution::Kind::uniform, mixed_prompt, mixed_prompt, 0};
      mixed_options.output = {LengthDistribution::Kind::geometric, 1, mixed_max, mixed_mean};
      mixed_options.seed = options.seed + 1;
      const auto mixed_workload = make_workload(mixed_options);
      fmt::print("\n== Part 3: mixed output lengths ({} requests at once, outputs {}, max batch {}), static vs "
                 "continuous ==\n", mixed_requests, mixed_options.output.describe(), mixed_max_batch);
      Report mixed_report("ch06_batching", machine, model_json(model, options.weights));
      const EngineRun mixed_static = run_engine(setup, "mixed static", mixed_workload, mixed_max_batch, SchedulePolicy::static_batch, true);
      const EngineRun mixed_continuous = run_engine(setup, "mixed continuous", mixed_workload, mixed_max_batch, SchedulePolicy::continuous, true);
      const bool mixed_same = outputs_of(mixed_static.result) == outputs_of(mixed_continuous.result);
      outputs_identical = outputs_identical && mixed_same;
      blocks_free_after = blocks_free_after && mixed_static.blocks_free_after && mixed_continuous.blocks_free_after;
      for (const auto* run : {&mixed_static, &mixed_continuous}) {
        ReportRow row = engine_row(run == &mixed_static ? "mixed_static" : "mixed_continuous", *run, mixed_max_batch);
        row.extra["outputs_identical"] = mixed_same;
        row.extra["contiguous_kv_mb"] = double(uint64_t(run->result.metrics.peak_running) * uint64_t(mixed_prompt + mixed_max) *
                                               run->result.metrics.kv_bytes_per_position) / 1e6;
        mixed_report.add_row(row);
        report.add_row(std::move(row));
      }
      mixed_report.print_table(stdout);
      const RunMetrics& mm = mixed_continuous.result.metrics;
      // A contiguous cache reserves, for every request it runs, room for the longest it may become: its prompt
      // plus the max_tokens cap (it cannot know in advance which request will stop early).
      const int reserve_len = mixed_prompt + mixed_max;
      const uint64_t contiguous_bytes = uint64_t(mm.peak_running) * uint64_t(reserve_len) * per_position;
      const double paged_ratio = double(mm.peak_kv_bytes) / double(std::max<uint64_t>(contiguous_bytes, 1));
      fmt::print("continuous / static: {:.2f}x generated tokens per second\n",
                 mm.generated_tok_per_s / mixed_static.result.metrics.generated_tok_per_s);
      fmt::print("KV memory (continuous): paged peak = {} blocks in use x {} positions x {} B/position = {:.1f} MB\n",
                 mm.peak_blocks, block_size, per_position, mm.peak_kv_bytes / 1e6);
      fmt::print("  contiguous max-length reservation = {} running x ({} prompt + {} max_tokens) positions x {} B = "
                 "{:.1f} MB;  paged / contiguous = {:.2f}\n",
                 mm.peak_running, mixed_prompt, mixed_max, per_position, contiguous_bytes / 1e6, paged_ratio);
      mixed_json = {{"paged_peak_kv_bytes", mm.peak_kv_bytes},
                    {"contiguous_kv_bytes", contiguous_bytes},
                    {"paged_over_contiguous", paged_ratio},
                    {"bytes_per_position", per_position},
                    {"formula", "paged = peak blocks in use * block_size * bytes/position; contiguous = peak running "
                                "requests * (prompt + max_tokens cap) * bytes/position; bytes/position = 2 * n_layers * "
                                "n_kv_heads * head_dim * 4 (f32) or 2 * n_layers * (n_kv_heads * head_dim + n_kv_heads * 4) "
                                "(int8)"},
                    {"kv_cache", kv_dtype_name(kv_dtype)},
                    {"continuous_over_static", mm.generated_tok_per_s / mixed_static.result.metrics.generated_tok_per_s}};

      // ---- Part 4: shared system prompt, prefix caching off / on ---------------------------------------
      WorkloadOptions shared_options = main_options;
      shared_options.requests = shared_requests;
      shared_options.shared_prefix = system_prompt;
      shared_options.prompt = {LengthDistribution::Kind::uniform, shared_own, shared_own, 0};
      shared_options.output = {LengthDistribution::Kind::uniform, shared_output, shared_output, 0};
      shared_options.seed = options.seed + 2;
      const auto shared_workload = make_workload(shared_options);
      fmt::print("\n== Part 4: {} requests sharing a {}-token system prompt (+ {} own tokens), prefix caching off vs on ==\n",
                 shared_requests, system_prompt, shared_own);
      Report shared_report("ch06_batching", machine, model_json(model, options.weights));
      const EngineRun cache_off = run_engine(setup, "prefix cache off", shared_workload, max_batch, SchedulePolicy::continuous, false);
      const EngineRun cache_on = run_engine(setup, "prefix cache on", shared_workload, max_batch, SchedulePolicy::continuous, true);
      const bool shared_same = outputs_of(cache_off.result) == outputs_of(cache_on.result);
      outputs_identical = outputs_identical && shared_same;
      blocks_free_after = blocks_free_after && cache_off.blocks_free_after && cache_on.blocks_free_after;
      for (const auto* run : {&cache_off, &cache_on}) {
        ReportRow row = engine_row(run == &cache_off ? "prefix_cache_off" : "prefix_cache_on", *run, max_batch);
        row.extra["outputs_identical"] = shared_same;
        row.extra["prefix_hit_tokens"] = run->result.metrics.prefix_hit_tokens;
        shared_report.add_row(row);
        report.add_row(std::move(row));
      }
      shared_report.print_table(stdout);
      const double saved = 1.0 - double(cache_on.result.metrics.prefill_tokens) /
                                     double(std::max<uint64_t>(cache_off.result.metrics.prefill_tokens, 1));
      fmt::print("prefill tokens run: {} without the cache, {} with it: {:.1f}% removed; TTFT p50 {:.0f} -> {:.0f} ms\n",
                 cache_off.result.metrics.prefill_tokens, cache_on.result.metrics.prefill_tokens, 100.0 * saved,
                 cache_off.result.metrics.ttft_ms.p50, cache_on.result.metrics.ttft_ms.p50);
      shared_json = {{"prefill_tokens_off", cache_off.result.metrics.prefill_tokens},
                     {"prefill_tokens_on", cache_on.result.metrics.prefill_tokens},
                     {"prefill_removed_pct", 100.0 * saved},
                     {"ttft_p50_ms_off", cache_off.result.metrics.ttft_ms.p50},
                     {"ttft_p50_ms_on", cache_on.result.metrics.ttft_ms.p50}};

      // ---- Part 5: long contexts ----------------------------------------------------------------------
      if (!contexts.empty()) {
        const int longest = *std::max_element(contexts.begin(), contexts.end());
        fmt::print("\n== Part 5: long contexts: one sequence, prefill of C tokens, then decode with C tokens cached ==\n");
        // 64 decode steps, fastest of 3: a one-token step at a short context lasts ~10 ms, so 16 steps let
        // one quiet or busy moment of a shared machine decide the ratio (16 x 2 gave 0.63 and 0.78 minutes apart).
        fmt::print(stderr, "long contexts {} (prefill + 64 decode steps each, fastest of 3)\n", contexts_text);
        Transformer long_model(weights, *backend, longest);
        long_model.set_check_finite(options.check_numerics);
        const std::vector<ContextSpeed> speeds = measure_long_context(long_model, contexts, 64, 3, block_size, 1, kv_dtype);
        fmt::print("{:>8} | {:>10} | {:>13} | {:>13} | {:>12}\n", "context", "prefill ms", "prefill tok/s", "decode ms/tok",
                   "decode tok/s");
        long_json = {{"rows", nlohmann::ordered_json::array()}};
        for (const ContextSpeed& c : speeds) {
          fmt::print("{:>8} | {:>10.1f} | {:>13.1f} | {:>13.2f} | {:>12.2f}\n", c.context, c.prefill_ms, c.prefill_tok_per_s,
                     c.decode_ms_per_token, c.decode_tok_per_s);
          long_json["rows"].push_back({{"context", c.context},
                                       {"prefill_ms", c.prefill_ms},
                                       {"prefill_tok_per_s", c.prefill_tok_per_s},
                                       {"decode_ms_per_token", c.decode_ms_per_token},
                                       {"decode_tok_per_s", c.decode_tok_per_s},
                                       {"decode_kv_bytes", c.decode_kv_bytes},
                                       {"decode_weight_bytes", c.decode_weight_bytes}});
        }
        auto find = [&](int context) -> const ContextSpeed* {
          for (const ContextSpeed& c : speeds)
            if (c.context == context) return &c;
          return nullptr;
        };
        if (const ContextSpeed *c32 = find(32), *c128 = find(128), *c2048 = find(2048); c32 && c128 && c2048) {
          const double decode_ratio = c2048->decode_tok_per_s / c32->decode_tok_per_s;
          const double prefill_ratio = c2048->prefill_tok_per_s / c128->prefill_tok_per_s;
          fmt::print("decode tok/s with 2048 cached / with 32: {:.2f} (target >= 0.75); prefill tok/s of a 2048-token prompt / "
                     "a 128-token one: {:.2f} (target >= 0.7)\n", decode_ratio, prefill_ratio);
          long_json["decode_ratio_2048_vs_32"] = decode_ratio;
          long_json["prefill_ratio_2048_vs_128"] = prefill_ratio;
        }
      }
    }

    fmt::print("\noutputs_identical: {}   blocks_free_after: {}\n", outputs_identical ? "true" : "false",
               blocks_free_after ? "true" : "false");
    if (!options.json.empty()) {
      report.set_field("kv_cache", kv_dtype_name(kv_dtype));
      report.set_field("kv_bytes_per_position", per_position);
      report.set_field("outputs_identical", outputs_identical);
      report.set_field("blocks_free_after", blocks_free_after);
      report.set_field("solo_requests_checked", solo);
      report.set_field("workload", {{"requests", requests}, {"prompt_tokens", prompt_len}, {"output_tokens", output_len},
                                    {"arrivals", "all at once"}, {"ignore_eos", true}, {"seed", options.seed}});
      report.set_field("engine", {{"block_size", block_size}, {"num_blocks", pool_blocks}, {"max_batch", max_batch},
                                  {"step_tokens", step_tokens}});
      if (!mixed_json.is_null()) report.set_field("kv_memory", mixed_json);
      if (!shared_json.is_null()) report.set_field("prefix_caching", shared_json);
      if (!long_json.is_null()) report.set_field("long_context", long_json);
      write_report_json(report, options.json);
    }
    if (!outputs_identical) {
      fmt::print(stderr, "error: batching changed a greedy output; this is a bug\n");
      return 2;
    }
    return blocks_free_after ? 0 : 3;
  });
}
