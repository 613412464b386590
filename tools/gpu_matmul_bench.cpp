// gpu_matmul_bench: the CUDA matmul kernels on one weight matrix, timed alone: decode GEMVs in GB/s against the
// GPU's measured copy bandwidth (fp16 / bf16 / fp32 vs the GGUF blocks Q8_0, Q4_0, Q4_1), and the GEMM paths
// for n tokens in TFLOP/s.
//
//   gpu_matmul_bench                                   # default shapes, dtypes and token counts
//   gpu_matmul_bench --shapes 14336x4096 --dtypes f16,q4_0 --tokens 1 --repeat 50
//
// Each kernel: one warm-up call, then the best of --repeat calls, L2 flushed before each (measure_gpu_matmul,
// gpu_hardware.h). GB/s counts the weights as stored plus x and y; % BW is against the device-to-device copy
// bandwidth measured at the start (reads + writes counted, as ch03/ch05/ch07 do). Needs a CUDA build and a GPU.
#include "infer/app/gpu_hardware.h"
#include "infer/core/error.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, separator);)
    if (!item.empty()) items.push_back(item);
  return items;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time the CUDA matmul kernels on one weight matrix (GEMV GB/s, GEMM TFLOP/s)"};
  // Llama-3-8B's FFN up (14336 x 4096) and down (4096 x 14336), SmolLM2-135M's FFN up and classifier.
  std::string shapes_text = "14336x4096,4096x14336,1536x576,49152x576";
  std::string dtypes_text = "f16,q8_0,q4_1,q4_0";
  std::string tokens_text = "1,8,128";
  int repeat = 20;
  app.add_option("--shapes", shapes_text, "ROWSxCOLS,... (cols a multiple of 32)")->capture_default_str();
  app.add_option("--dtypes", dtypes_text, "f32, f16, bf16, q8_0, q4_0, q4_1")->capture_default_str();
  app.add_option("--tokens", tokens_text, "token counts n (1: the decode GEMV)")->capture_default_str();
  app.add_option("--repeat", repeat, "timed calls per kernel (the best is reported)")->check(CLI::Range(1, 10000));
  CLI11_PARSE(app, argc, argv);

  try {
    const infer::GpuInfo gpu = infer::query_gpu();
    const double copy = infer::measure_gpu_copy_bandwidth(size_t(1) << 30, 10).gb_per_s;
    fmt::print("gpu_matmul_bench | {} | copy bandwidth {:.0f} GB/s (device-to-device, reads + writes)\n", gpu.name, copy);
    fmt::print("{:>12} | {:>5} | {:>4} | {:<29} | {:>9} | {:>7} | {:>5} | {:>7}\n", "shape", "dtype", "n", "kernel", "us",
               "GB/s", "% BW", "TFLOP/s");
    for (const std::string& shape : split(shapes_text, ',')) {
      const std::vector<std::string> sides = split(shape, 'x');
      if (sides.size() != 2) infer::fail("--shapes: '{}' is not ROWSxCOLS", shape);
      const int rows = std::stoi(sides[0]), cols = std::stoi(sides[1]);
      for (const std::string& dtype : split(dtypes_text, ',')) {
        for (const std::string& n_text : split(tokens_text, ',')) {
          const int n = std::stoi(n_text);
          const std::vector<std::string> kernels = infer::gpu_matmul_kernels(dtype, n);
          if (kernels.empty()) infer::fail("--dtypes: no CUDA matmul kernel for '{}'", dtype);
          for (const std::string& kernel : kernels) {
            const infer::GpuMatmulResult r = infer::measure_gpu_matmul(dtype, kernel, rows, cols, n, repeat);
            fmt::print("{:>12} | {:>5} | {:>4} | {:<29} | {:>9.1f} | {:>7.0f} | {:>5.1f} | {:>7.2f}\n", shape, dtype, n,
                       kernel, r.ms * 1e3, r.gb_per_s, 100.0 * r.gb_per_s / copy, r.tflops);
          }
        }
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "gpu_matmul_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
