// hardware.h: measuring this machine's ceilings (ch03's roofline).
//
// Decode at batch 1 reads every weight once per token and does 2 FLOPs per weight, so its
// arithmetic intensity is ~0.5 FLOP/byte for fp32 weights: far left of the ridge point
// peak_flops / bandwidth, so its speed is bandwidth / bytes_per_token. These functions measure
// the two ceilings the roofline needs.
#pragma once

#include <cstddef>
#include <string>

namespace infer {

std::string cpu_model_name();  // from /proc/cpuinfo ("unknown" if absent)

struct BandwidthResult {
  double gb_per_s = 0.0;     // best of the repetitions, 1 GB = 1e9 bytes
  size_t bytes = 0;          // buffer size read per repetition
  int threads = 1;
};
// Streams a buffer much larger than the caches (sum-reduction with `threads` OpenMP threads),
// repeated `repetitions` times, and reports the best read bandwidth.
BandwidthResult measure_read_bandwidth(size_t bytes, int threads, int repetitions);
// The two loops measure_read_bandwidth is built from, for bench_kernels: both split [0, n) with the
// same static OpenMP schedule, so each thread reads the pages it first touched (local on NUMA).
void parallel_fill(float* data, size_t n, float value, int threads);
float parallel_sum(const float* data, size_t n, int threads);

// C (m, n) = A (m, k) . B (k, n), row-major, fp32.
// v1_naive: the textbook triple loop (i, j, p), B read down a column: cache-hostile.
void gemm_v1_naive(const float* a, const float* b, float* c, int m, int n, int k);
// v2_blocked: tiles that fit in L1/L2, i-p-j loop order so the inner loop is a contiguous,
// vectorisable AXPY over a row of B, OpenMP over row blocks.
void gemm_v2_blocked(const float* a, const float* b, float* c, int m, int n, int k);

struct GemmResult {
  double gflops = 0.0;   // 2*m*n*k / best time
  double ms = 0.0;       // best time
};
// Times one GEMM variant ("v1_naive" or "v2_blocked") on seeded random square matrices of size n.
GemmResult measure_gemm(const std::string& variant, int n, int threads, int repetitions);

}  // namespace infer
