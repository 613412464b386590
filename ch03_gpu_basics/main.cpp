// ch03_gpu_basics: what the hardware can do, and the naive decoder that ignores it.
//
// Part 1 measures the machine's two ceilings: memory read bandwidth (GB/s) and fp32 GEMM
// throughput (GFLOP/s, a naive and a cache-blocked kernel), and explains the roofline they draw.
// With --device cuda and a usable GPU, part 1 also measures the GPU: what the device reports (SMs,
// memory, L2, clocks, the datasheet peak bandwidth), device-to-device copy bandwidth, and the GEMM
// ladder v1_naive -> v2_tiled -> v3_cublas in TFLOP/s and % of peak (src/cuda/gemm.cu).
// Part 2 runs the book's baseline: naive decoding, which recomputes the whole prefix for every new
// token, and reports tok/s, GB/s moved and % of the measured bandwidth of the device it ran on.
// Without a GPU (or a CUDA build), --device cuda says why and runs the CPU part.
#include "infer/app/app.h"
#include "infer/core/error.h"
#include "infer/engine/generator.h"
#include "infer/app/gpu_hardware.h"
#include "infer/app/hardware.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

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

// ---- the GPU's ceilings (--device cuda) --------------------------------------------------------------
struct GpuCeilings {
  GpuInfo info;
  double copy_gb_s = 0.0;
  int gemm_n = 0;
  std::vector<GpuGemmResult> gemm;  // in gpu_gemm_variants() order
};

double percent(double value, double peak) { return peak > 0 ? 100.0 * value / peak : 0.0; }

std::string percent_text(double value, double peak) {
  return peak > 0 ? fmt::format("{:5.1f}%", percent(value, peak)) : std::string("  n/a");
}

GpuCeilings measure_gpu_ceilings(size_t copy_bytes, int gemm_n) {
  GpuCeilings g;
  g.info = query_gpu();
  fmt::print(stderr, "measuring GPU copy bandwidth ({} MiB buffer)...\n", copy_bytes >> 20);
  g.copy_gb_s = measure_gpu_copy_bandwidth(copy_bytes, 10).gb_per_s;
  g.gemm_n = gemm_n;
  for (const std::string& variant : gpu_gemm_variants()) {
    fmt::print(stderr, "measuring GPU GEMM {} {}x{}x{}...\n", variant, gemm_n, gemm_n, gemm_n);
    const bool slow = variant == "v1_naive" || variant == "v2_tiled";
    g.gemm.push_back(measure_gpu_gemm(variant, gemm_n, slow ? 2 : 10));
  }
  return g;
}

void print_gpu_ceilings(const GpuCeilings& g, uint64_t weight_bytes) {
  const GpuInfo& i = g.info;
  fmt::print("\n== Part 1 (GPU): {} ==\n", i.name);
  fmt::print("  compute capability {}.{}, {} SMs at up to {:.0f} MHz, {:.1f} GiB memory, {:.0f} MiB L2\n", i.compute_major,
             i.compute_minor, i.sm_count, i.sm_clock_mhz, i.memory_bytes / 1073741824.0, i.l2_bytes / 1048576.0);
  if (i.peak_bandwidth_gb_s > 0) {
    fmt::print("  memory: {}-bit bus at {:.0f} MHz: peak 2 x clock x bus / 8 = {:.0f} GB/s\n", i.memory_bus_bits,
               i.memory_clock_mhz, i.peak_bandwidth_gb_s);
  } else {
    fmt::print("  memory: the device does not report its memory clock / bus width: no datasheet peak\n");
  }
  fmt::print("  device-to-device copy  {:8.1f} GB/s (read + write)  {} of the datasheet peak\n", g.copy_gb_s,
             percent_text(g.copy_gb_s, i.peak_bandwidth_gb_s));
  fmt::print("  GEMM {}x{}x{} (peaks: fp32 {:.1f} TFLOP/s, fp16/bf16 tensor cores {:.1f} TFLOP/s; 0 = not in our table)\n",
             g.gemm_n, g.gemm_n, g.gemm_n, i.peak_fp32_tflops, i.peak_tensor_tflops);
  double fp32_best = 0.0, tensor_best = 0.0;
  for (const GpuGemmResult& r : g.gemm) {
    const bool tensor = r.variant == "v3_cublas_fp16" || r.variant == "v3_cublas_bf16";
    const double peak = tensor ? i.peak_tensor_tflops : i.peak_fp32_tflops;
    fmt::print("    {:<16} {:9.2f} TFLOP/s  {:>6} of the {} peak  ({:.2f} ms)\n", r.variant, r.tflops,
               percent_text(r.tflops, peak), tensor ? "tensor" : "fp32", r.ms);
    if (tensor) {
      tensor_best = std::max(tensor_best, r.tflops);
    } else {
      fp32_best = std::max(fp32_best, r.tflops);
    }
  }
  const double ridge = tensor_best * 1e12 / (g.copy_gb_s * 1e9);
  fmt::print("\n  Ridge point: {:.0f} TFLOP/s / {:.0f} GB/s = {:.0f} FLOP/byte with the tensor cores ({:.0f} in fp32).\n",
             tensor_best, g.copy_gb_s, ridge, fp32_best * 1e12 / (g.copy_gb_s * 1e9));
  fmt::print("  Batch-1 decode needs about 0.5 FLOP/byte (fp32 weights) or 1 (fp16): far left of the ridge, so\n");
  fmt::print("  its limit is bandwidth / bytes per token = {:.0f} GB/s / {:.1f} MB = {:.0f} tok/s.\n", g.copy_gb_s,
             weight_bytes / 1e6, g.copy_gb_s * 1e9 / double(weight_bytes));
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
  int gpu_gemm_n = 8192;
  int gpu_copy_mib = 1024;
  app.add_option("--gpu-gemm-n", gpu_gemm_n, "Matrix size for the GPU GEMM ladder (--device cuda)")->check(CLI::Range(16, 16384));
  app.add_option("--gpu-copy-mib", gpu_copy_mib, "Buffer size for the GPU copy bandwidth (--device cuda)")->check(CLI::Range(16, 65536));
  CLI11_PARSE(app, argc, argv);

  return run_reporting_errors([&] {
    const int threads = resolve_threads(options.threads);
    fall_back_to_cpu_without_gpu(options);
    const bool on_gpu = options.device == "cuda";
    auto backend = make_backend(options.device, threads, options.weight_layout);
    LoadedModel model = load_model(options);
    Weights weights(model.file, parse_weight_format(options.weights), *backend);
    const uint64_t weight_bytes = weights.bytes_per_forward(1);

    fmt::print("ch03_gpu_basics: the machine's ceilings and the naive decoder\n");
    fmt::print("  cpu     {}\n  threads {}\n  device  {}\n  model   {} ({:.1f} M params, {} weights, {:.1f} MB read per token)\n",
               cpu_model_name(), threads, options.device, model.description, model.file.config.n_params() / 1e6,
               options.weights, weight_bytes / 1e6);

    Ceilings ceilings;
    GpuCeilings gpu;
    if (!skip_ceilings) {
      ceilings = measure_ceilings(threads, size_t(bandwidth_mib) << 20, gemm_n);
      print_roofline(ceilings, threads, weight_bytes, model.file.config.n_params());
      if (on_gpu) {
        gpu = measure_gpu_ceilings(size_t(gpu_copy_mib) << 20, gpu_gemm_n);
        print_gpu_ceilings(gpu, weight_bytes);
      }
    } else {
      ceilings.bandwidth = given_bandwidth;
      gpu.copy_gb_s = given_bandwidth;
      if (on_gpu) gpu.info = query_gpu();
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

    fmt::print("\n== Part 2: naive decoding on the {} (every token recomputes the whole prefix) ==\n",
               on_gpu ? gpu.info.name : std::string("CPU"));
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

    // % of bandwidth is against the device the decoder ran on: the GPU's measured copy bandwidth there.
    MachineInfo machine = describe_machine(threads, on_gpu ? gpu.copy_gb_s : ceilings.bandwidth);
    if (on_gpu) machine.gpu = gpu.info.name;
    Report report("ch03_gpu_basics", machine, model_json(model, options.weights));
    ReportRow row = Report::make_row(on_gpu ? "naive (no KV cache), cuda" : "naive (no KV cache)",
                                     int(result.tokens.size()), result.total_ms, result.bytes_moved);
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
      if (on_gpu && !skip_ceilings) {
        nlohmann::ordered_json gemm = nlohmann::ordered_json::object();
        for (const GpuGemmResult& r : gpu.gemm) gemm[r.variant + "_tflops"] = r.tflops;
        report.set_field("gpu_ceilings", {{"name", gpu.info.name},
                                          {"compute_capability", fmt::format("{}.{}", gpu.info.compute_major, gpu.info.compute_minor)},
                                          {"sm_count", gpu.info.sm_count},
                                          {"memory_bytes", gpu.info.memory_bytes},
                                          {"l2_bytes", gpu.info.l2_bytes},
                                          {"peak_bandwidth_gb_s", gpu.info.peak_bandwidth_gb_s},
                                          {"copy_bandwidth_gb_s", gpu.copy_gb_s},
                                          {"peak_fp32_tflops", gpu.info.peak_fp32_tflops},
                                          {"peak_tensor_tflops", gpu.info.peak_tensor_tflops},
                                          {"gemm_n", gpu.gemm_n},
                                          {"gemm", gemm}});
      }
      report.set_field("output_tokens", result.tokens);
      write_report_json(report, options.json);
    }
    return 0;
  });
}
