// ch03_gpu_basics: what the hardware can do, and the naive decoder that ignores it.
//
// Part 1 measures the machine's two ceilings: memory read bandwidth (GB/s) and fp32 GEMM
// throughput (GFLOP/s, a naive and a cache-blocked kernel), and explains the roofline they draw.
// Part 2 runs the book's baseline: naive decoding, which recomputes the whole prefix for every new
// token, and reports tok/s, GB/s moved and % of the measured bandwidth.
// (The GPU part of this chapter, with --device cuda, comes with the CUDA backend.)
#include "infer/app.h"
#include "infer/error.h"
#include "infer/generator.h"
#include "infer/hardware.h"

#include <fmt/core.h>

#include <cstdio>

using namespace infer;

namespace {

struct Ceilings {
  double bandwidth_1_thread = 0.0;
  double bandwidth = 0.0;     // all threads: the ceiling decode is measured against
  double gflops_naive = 0.0;
  double gflops_blocked = 0.0;
  int gemm_n = 0;
};

Ceilings measure_ceilings(int threads, size_t bandwidth_bytes, int gemm_n) {
  Ceilings c;
  fmt::print(stderr, "measuring memory bandwidth ({} MiB buffer)...\n", bandwidth_bytes >> 20);
  c.bandwidth_1_thread = measure_read_bandwidth(bandwidth_bytes, 1, 5).gb_per_s;
  c.bandwidth = measure_read_bandwidth(bandwidth_bytes, threads, 5).gb_per_s;
  fmt::print(stderr, "measuring fp32 GEMM {}x{}x{}...\n", gemm_n, gemm_n, gemm_n);
  c.gemm_n = gemm_n;
  c.gflops_naive = measure_gemm("v1_naive", gemm_n, threads, 2).gflops;
  c.gflops_blocked = measure_gemm("v2_blocked", gemm_n, threads, 3).gflops;
  return c;
}

void print_roofline(const Ceilings& c, int threads, uint64_t weight_bytes, int64_t params) {
  fmt::print("\n== Part 1: this machine's ceilings ({} threads) ==\n", threads);
  fmt::print("  memory read bandwidth   {:8.1f} GB/s  (1 thread: {:.1f} GB/s)\n", c.bandwidth, c.bandwidth_1_thread);
  fmt::print("  fp32 GEMM v1_naive      {:8.1f} GFLOP/s  (n = {}, triple loop, B read down its columns)\n", c.gflops_naive, c.gemm_n);
  fmt::print("  fp32 GEMM v2_blocked    {:8.1f} GFLOP/s  (cache tiles, contiguous vectorised inner loop): {:.1f}x\n",
             c.gflops_blocked, c.gflops_blocked / c.gflops_naive);
  const double ridge = c.gflops_blocked / c.bandwidth;  // FLOP per byte where the two roofs meet
  const double decode_intensity = 2.0 * double(params) / double(weight_bytes);
  fmt::print("\n  The roofline: attainable FLOP/s = min(peak FLOP/s, intensity x bandwidth).\n");
  fmt::print("  Ridge point: {:.1f} GFLOP/s / {:.1f} GB/s = {:.1f} FLOP/byte. Kernels below it are memory-bound.\n",
             c.gflops_blocked, c.bandwidth, ridge);
  fmt::print("  Batch-1 decode does 2 FLOPs per weight and reads every weight once per token:\n");
  fmt::print("  {:.2f} FLOP/byte with these weights, {:.0f}x below the ridge, so its speed limit is\n", decode_intensity,
             ridge / decode_intensity);
  fmt::print("  bandwidth / bytes per token = {:.1f} GB/s / {:.1f} MB = {:.1f} tok/s, whatever the FLOP/s.\n",
             c.bandwidth, double(weight_bytes) / 1e6, c.bandwidth * 1e9 / double(weight_bytes));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ch03_gpu_basics: hardware ceilings (bandwidth, GEMM, roofline) and naive decoding"};
  CommonOptions options;
  add_common_options(app, options);
  int bandwidth_mib = 1024;
  int gemm_n = 512;
  bool skip_ceilings = false;
  app.add_option("--bandwidth-mib", bandwidth_mib, "Buffer size for the bandwidth measurement")->check(CLI::Range(16, 65536));
  app.add_option("--gemm-n", gemm_n, "Matrix size for the GEMM measurement")->check(CLI::Range(16, 8192));
  app.add_flag("--skip-ceilings", skip_ceilings, "Skip part 1 (use --bandwidth-gb-s for the % column)");
  double given_bandwidth = 0.0;
  app.add_option("--bandwidth-gb-s", given_bandwidth, "Bandwidth to compare with when part 1 is skipped");
  CLI11_PARSE(app, argc, argv);

  try {
    const int threads = resolve_threads(options.threads);
    auto backend = make_backend(options.device, threads);
    LoadedModel model = load_model(options);
    Weights weights(model.file, parse_weight_format(options.weights), *backend);
    const uint64_t weight_bytes = weights.bytes_per_forward(1);

    fmt::print("ch03_gpu_basics: the machine's ceilings and the naive decoder\n");
    fmt::print("  cpu     {}\n  threads {}\n  model   {} ({:.1f} M params, {} weights, {:.1f} MB read per token)\n",
               cpu_model_name(), threads, model.description, model.file.config.n_params() / 1e6, options.weights,
               weight_bytes / 1e6);

    Ceilings ceilings;
    if (!skip_ceilings) {
      ceilings = measure_ceilings(threads, size_t(bandwidth_mib) << 20, gemm_n);
      print_roofline(ceilings, threads, weight_bytes, model.file.config.n_params());
    } else {
      ceilings.bandwidth = given_bandwidth;
    }

    // ---- Part 2: naive decoding -----------------------------------------------------------------
    const std::vector<int> prompt = encode_prompt(model, options);
    check_generation_length(model.file.config, prompt.size(), options.max_tokens, int(prompt.size()) + options.max_tokens);
    Transformer transformer(weights, *backend, int(prompt.size()) + options.max_tokens);
    transformer.set_check_finite(options.check_numerics);
    NaiveGenerator generator(transformer);
    GenerationOptions generation;
    generation.max_new_tokens = options.max_tokens;
    generation.sampler = options.sampler();
    if (model.tokenizer->eos_id() >= 0) generation.stop_tokens.push_back(model.tokenizer->eos_id());
    for (int id = 0; id < model.tokenizer->vocab_size(); ++id)
      if (id != model.tokenizer->eos_id() && model.tokenizer->is_end_of_generation(id)) generation.stop_tokens.push_back(id);

    fmt::print("\n== Part 2: naive decoding (every token recomputes the whole prefix) ==\n");
    fmt::print("prompt ({} tokens): {}\n", prompt.size(), options.prompt);
    fmt::print("output: ");
    std::fflush(stdout);
    int previous = prompt.back();
    const GenerationResult result = generator.generate(prompt, generation, [&](int token) {
      fmt::print("{}", model.tokenizer->decode_token(previous, token));
      std::fflush(stdout);
      previous = token;
      return true;
    });
    fmt::print("\n\n");

    Report report("ch03_gpu_basics", describe_machine(threads, ceilings.bandwidth), model_json(model, options.weights));
    ReportRow row = Report::make_row("naive (no KV cache)", int(result.tokens.size()), result.total_ms, result.bytes_moved);
    row.extra["prompt_tokens"] = result.prompt_tokens;
    row.extra["first_token_ms"] = result.first_token_ms;
    report.add_row(std::move(row));
    report.print_table(stdout);
    fmt::print("\nThe naive decoder re-reads the weights for every token and redoes the whole prefix's work,\n"
               "so its cost per token grows with the sequence; ch05's KV cache makes each step O(1) in weights.\n");

    if (!options.json.empty()) {
      report.set_field("ceilings", {{"bandwidth_gb_s", ceilings.bandwidth},
                                    {"bandwidth_1_thread_gb_s", ceilings.bandwidth_1_thread},
                                    {"gemm_n", ceilings.gemm_n},
                                    {"gemm_v1_naive_gflops", ceilings.gflops_naive},
                                    {"gemm_v2_blocked_gflops", ceilings.gflops_blocked}});
      report.set_field("output_tokens", result.tokens);
      report.write_json(options.json);
      fmt::print(stderr, "wrote {}\n", options.json);
    }
  } catch (const Error& error) {
    fmt::print(stderr, "error: {}\n", error.what());
    return 1;
  }
  return 0;
}
