// gpu_hardware.h: the GPU's ceilings for ch03's roofline (the CPU's are in hardware.h).
//
// What the device says about itself (SMs, memory, clocks) and the peaks that follow from the
// datasheet formulas, next to what this code measures: device-to-device copy bandwidth and the GEMM
// ladder v1_naive -> v2_tiled -> v3_cublas (src/cuda/gemm.cu). No CUDA types here: a CPU-only build
// compiles against this header too, and every function then throws infer::Error saying the build
// has no CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace infer {

struct GpuInfo {
  std::string name;
  int device = 0;
  int compute_major = 0, compute_minor = 0;  // 9.0 = Hopper (H100/H200), 8.0 = A100
  int sm_count = 0;
  uint64_t memory_bytes = 0;
  int l2_bytes = 0;
  double sm_clock_mhz = 0.0;      // peak (boost) SM clock
  double memory_clock_mhz = 0.0;  // peak memory clock
  int memory_bus_bits = 0;
  // 2 transfers per clock (DDR/HBM) x memory clock x bus width / 8; 0 when an attribute is missing.
  double peak_bandwidth_gb_s = 0.0;
  // SMs x FP32 lanes per SM x 2 FLOPs (FMA) x SM clock; 0 when the architecture is not in our table.
  double peak_fp32_tflops = 0.0;
  // Dense fp16/bf16 tensor-core FLOPs with fp32 accumulation, same formula; 0 when not in the table.
  double peak_tensor_tflops = 0.0;
};

// Device 0's properties. Throws infer::Error when no device is usable (see cuda_unavailable_reason).
GpuInfo query_gpu();

struct GpuBandwidthResult {
  double gb_per_s = 0.0;  // (bytes read + bytes written) / best time, 1 GB = 1e9 bytes
  size_t bytes = 0;       // size of the buffer copied
  double ms = 0.0;        // best time of one copy
};
// cudaMemcpy device-to-device of a `bytes` buffer, best of `repetitions`, timed with CUDA events. A
// copy reads and writes every byte, so it counts 2 x bytes: the traffic decode's weight reads compete with.
GpuBandwidthResult measure_gpu_copy_bandwidth(size_t bytes, int repetitions);

struct GpuGemmResult {
  std::string variant;
  double tflops = 0.0;  // 2 n^3 / best time
  double ms = 0.0;      // best time
};
// The variants measure_gpu_gemm knows, slowest first:
// v1_naive, v2_tiled (fp32, gemm.cu), v3_cublas_fp32, v3_cublas_fp16, v3_cublas_bf16.
std::vector<std::string> gpu_gemm_variants();
// Times one variant on seeded random (n, n) matrices: one warm-up run, then the best of `repetitions`.
GpuGemmResult measure_gpu_gemm(const std::string& variant, int n, int repetitions);

// ---- matmul kernels on one weight matrix (tools/gpu_matmul_bench, scripts/gpu_check.sh) ----------------------
struct GpuMatmulResult {
  std::string kernel;
  double ms = 0.0;        // best time of one call (L2 flushed before each)
  double gb_per_s = 0.0;  // (weight bytes as stored + x + y) / best time
  double tflops = 0.0;    // 2 n rows cols / best time
};
// The kernels measure_gpu_matmul times for a weight dtype ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1") and
// n tokens: n == 1: gemv_v3_vectorized (float types) or gemv_quant_v1_warp_per_row, gemv_quant_v2_staged_16b;
// n > 1: cublas (float types) or gemm_quant_v1_smem_tiles, gemm_quant_v2_dequant_cublas.
std::vector<std::string> gpu_matmul_kernels(const std::string& dtype, int n);
// y (n, rows) = x (n, cols) . W^T with seeded random W stored as `dtype`; one warm-up call, then the best of
// `repetitions`, each after a write of twice the L2 size so W comes from device memory.
GpuMatmulResult measure_gpu_matmul(const std::string& dtype, const std::string& kernel, int rows, int cols, int n,
                                   int repetitions);

}  // namespace infer
