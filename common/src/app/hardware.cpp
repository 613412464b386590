// hardware.cpp: this machine's two roofline ceilings, read bandwidth and GEMM FLOP/s.
//
// Kernels, each next to the one it improves on:
//   gemm_v1_naive:   i-j-p triple loop, one dot product per C element; B is read down a column
//                    (stride n floats), so almost every load of B misses the cache at large n.
//   gemm_v2_blocked: i-p-j order, so the inner loop is C[i, j..] += A[i, p] * B[p, j..], an AXPY over
//                    contiguous rows that vectorises; a (kBlockK x kBlockN) tile of B, packed
//                    contiguously, stays in L1 while every row of a kBlockM row block uses it;
//                    four products per load/store of C; OpenMP over row blocks.
#include "infer/app/hardware.h"

#include "infer/core/error.h"
#include "infer/core/host_memory.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

namespace infer {

namespace {

using Clock = std::chrono::steady_clock;

double elapsed_ms(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Runs a scope with `threads` as the OpenMP default team size, then restores the caller's: the GEMM
// kernels take no thread count, and this keeps measure_gemm from leaving a changed setting behind.
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int threads) : previous_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~ScopedOmpThreads() { omp_set_num_threads(previous_); }
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

 private:
  int previous_;
};

}  // namespace

// ---- CPU name ------------------------------------------------------------------------------------

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    // x86 writes "model name\t: Intel(R) Xeon(R) ..."; take the first core's.
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto begin = line.find_first_not_of(" \t", colon + 1);
    if (begin != std::string::npos) return line.substr(begin);
  }
  return "unknown";
}

// ---- Read bandwidth ------------------------------------------------------------------------------

namespace {
// Thread `thread` of `threads` owns elements [begin, end) of n: contiguous, equal shares. Fill and
// sum both use it, so each thread reads back exactly the pages it first touched.
struct Range {
  size_t begin, end;
};
Range thread_share(size_t n, int thread, int threads) {
  return {n * size_t(thread) / size_t(threads), n * size_t(thread + 1) / size_t(threads)};
}
}  // namespace

void parallel_fill(float* data, size_t n, float value, int threads) {
  // The first write to a page decides which NUMA node backs it: each thread writes its own share.
#pragma omp parallel num_threads(threads)
  {
    const Range share = thread_share(n, omp_get_thread_num(), omp_get_num_threads());
    std::fill(data + share.begin, data + share.end, value);
  }
}

float parallel_sum(const float* data, size_t n, int threads) {
  // A float sum is one serial chain of dependent adds (the compiler may not reorder it), which would
  // bound the loop by add latency (4 cycles per vector), not by memory. kLanes independent partial
  // sums break the chain: the compiler keeps them in several vector registers whose adds overlap.
  constexpr size_t kLanes = 64;
  float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const Range share = thread_share(n, omp_get_thread_num(), omp_get_num_threads());
    float lanes[kLanes] = {};
    size_t i = share.begin;
    for (; i + kLanes <= share.end; i += kLanes)
      for (size_t lane = 0; lane < kLanes; ++lane) lanes[lane] += data[i + lane];
    for (; i < share.end; ++i) lanes[0] += data[i];  // the tail, shorter than kLanes
    for (float lane_sum : lanes) total += lane_sum;
  }
  return total;
}

BandwidthResult measure_read_bandwidth(size_t bytes, int threads, int repetitions) {
  if (bytes < sizeof(float)) fail("measure_read_bandwidth: bytes = {} is too small", bytes);
  if (threads < 1) fail("measure_read_bandwidth: threads = {} (must be >= 1)", threads);
  if (repetitions < 1) fail("measure_read_bandwidth: repetitions = {} (must be >= 1)", repetitions);

  const size_t n = bytes / sizeof(float);
  // Allocated as the CPU backend allocates weights (host_memory.h: huge pages from 2 MiB), so the probe
  // and the decode it is compared with read through the same kind of pages.
  const std::unique_ptr<float, void (*)(void*)> buffer(static_cast<float*>(allocate_host(n * sizeof(float))), free_host);
  // Ones keep every partial sum finite; the value does not matter, only that the reads happen.
  parallel_fill(buffer.get(), n, 1.0f, threads);

  BandwidthResult result{.gb_per_s = 0.0, .bytes = n * sizeof(float), .threads = threads};
  volatile float sink = 0.0f;  // the sums are consumed, so the reads cannot be optimised away
  for (int rep = 0; rep < repetitions; ++rep) {
    const auto start = Clock::now();
    sink = sink + parallel_sum(buffer.get(), n, threads);
    const double seconds = elapsed_ms(start) / 1e3;
    // Best of N: the fastest repetition is the one least disturbed by other processes.
    result.gb_per_s = std::max(result.gb_per_s, static_cast<double>(result.bytes) / seconds / 1e9);
  }
  return result;
}

// ---- GEMM v1: naive ------------------------------------------------------------------------------

void gemm_v1_naive(const float* a, const float* b, float* c, int m, int n, int k) {
  // Rows of C are independent, so OpenMP splits them across threads: v1 and v2 then use the same
  // threads and their difference is the memory access pattern alone.
#pragma omp parallel for schedule(static)
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      // C[i, j] = sum_p A[i, p] * B[p, j]: A walks a row (stride 1), B walks a column (stride n).
      float dot = 0.0f;
      for (int p = 0; p < k; ++p) dot += a[size_t(i) * k + p] * b[size_t(p) * n + j];
      c[size_t(i) * n + j] = dot;
    }
  }
}

// ---- GEMM v2: blocked ----------------------------------------------------------------------------

namespace {
// Tile sizes for a 48 KiB L1 and a 2 MiB L2 per core (Sapphire Rapids; fine on most x86 cores):
//   B tile  kBlockK x kBlockN = 64 x 128 floats = 32 KiB: packed contiguously (below) so it stays
//           in L1 while each of the kBlockM rows of the row block streams through it;
//   C row   kBlockN floats = 512 B: stays in L1 across the kBlockK updates it receives;
//   A block kBlockM x kBlockK floats = 16 KiB, read one scalar at a time.
constexpr int kBlockM = 64;
constexpr int kBlockK = 64;
constexpr int kBlockN = 128;

// Copies B[p_begin:p_end, j_begin:j_end] into `tile` with rows of (j_end - j_begin) floats.
// Why copy: in B the tile's rows are n floats apart, and when n is a multiple of 1024 every row
// starts at the same L1 set, so the tile would evict itself (64 rows, 12 ways). Contiguous, it fits.
void pack_b_tile(const float* b, int n, int p_begin, int p_end, int j_begin, int j_end, float* tile) {
  const int width = j_end - j_begin;
  for (int p = p_begin; p < p_end; ++p)
    std::copy_n(b + size_t(p) * n + j_begin, width, tile + size_t(p - p_begin) * width);
}

// C_row[0:width] += A_row[0:depth] . tile[0:depth, 0:width], the AXPY form: for each p, the row
// tile[p] scaled by A[i, p] is added to C's row, the inner loop running along contiguous memory.
void add_row_times_tile(const float* a_row, const float* tile, int depth, int width, float* c_row) {
  int p = 0;
  // Four rows of the tile per pass: C's row is loaded and stored once per four products instead of
  // once per product (the loads and stores of C, not the multiplies, limit an AXPY). Evaluated left
  // to right, the sum adds the products in the same order of p as v1 does.
  for (; p + 4 <= depth; p += 4) {
    const float a0 = a_row[p], a1 = a_row[p + 1], a2 = a_row[p + 2], a3 = a_row[p + 3];
    const float* b0 = tile + size_t(p) * width;
    const float* b1 = b0 + width;
    const float* b2 = b1 + width;
    const float* b3 = b2 + width;
#pragma omp simd
    for (int j = 0; j < width; ++j) c_row[j] = c_row[j] + a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
  }
  // The last (depth mod 4) rows, one at a time.
  for (; p < depth; ++p) {
    const float a_ip = a_row[p];
    const float* b_row = tile + size_t(p) * width;
#pragma omp simd
    for (int j = 0; j < width; ++j) c_row[j] += a_ip * b_row[j];
  }
}
}  // namespace

void gemm_v2_blocked(const float* a, const float* b, float* c, int m, int n, int k) {
#pragma omp parallel
  {
    std::vector<float> tile(size_t(kBlockK) * kBlockN);  // this thread's packed B tile
    // Each thread owns whole row blocks of C: no two threads write the same element, no locks.
#pragma omp for schedule(static)
    for (int i_begin = 0; i_begin < m; i_begin += kBlockM) {
      const int i_end = std::min(i_begin + kBlockM, m);
      // C accumulates over the k tiles below, so the row block starts at zero.
      for (int i = i_begin; i < i_end; ++i) std::fill_n(c + size_t(i) * n, n, 0.0f);

      for (int j_begin = 0; j_begin < n; j_begin += kBlockN) {
        const int j_end = std::min(j_begin + kBlockN, n);
        // k tiles in increasing order, so each C element still sums its products in order of p.
        for (int p_begin = 0; p_begin < k; p_begin += kBlockK) {
          const int p_end = std::min(p_begin + kBlockK, k);
          pack_b_tile(b, n, p_begin, p_end, j_begin, j_end, tile.data());
          // The packed tile, now in L1, is reused by every row of the row block.
          for (int i = i_begin; i < i_end; ++i)
            add_row_times_tile(a + size_t(i) * k + p_begin, tile.data(), p_end - p_begin, j_end - j_begin,
                               c + size_t(i) * n + j_begin);
        }
      }
    }
  }
}

// ---- GEMM timing ---------------------------------------------------------------------------------

GemmResult measure_gemm(const std::string& variant, int n, int threads, int repetitions) {
  using GemmKernel = void (*)(const float*, const float*, float*, int, int, int);
  GemmKernel kernel = nullptr;
  if (variant == "v1_naive") kernel = gemm_v1_naive;
  else if (variant == "v2_blocked") kernel = gemm_v2_blocked;
  else fail("measure_gemm: unknown variant '{}' (expected v1_naive or v2_blocked)", variant);
  if (n < 1) fail("measure_gemm: n = {} (must be >= 1)", n);
  if (threads < 1) fail("measure_gemm: threads = {} (must be >= 1)", threads);
  if (repetitions < 1) fail("measure_gemm: repetitions = {} (must be >= 1)", repetitions);

  // Seeded uniform inputs in [-1, 1): the same matrices on every run and platform (the 24 top bits
  // of the standard-defined mt19937_64 stream, not an implementation-defined distribution).
  const size_t elements = size_t(n) * n;
  std::mt19937_64 rng(2024);
  auto random_matrix = [&] {
    std::vector<float> matrix(elements);
    for (auto& x : matrix) x = static_cast<float>(rng() >> 40) * 0x1.0p-23f - 1.0f;
    return matrix;
  };
  const auto a = random_matrix();
  const auto b = random_matrix();
  std::vector<float> c(elements, 0.0f);  // touched here so page faults are not timed

  ScopedOmpThreads scoped_threads(threads);
  GemmResult result{.gflops = 0.0, .ms = 0.0};
  for (int rep = 0; rep < repetitions; ++rep) {
    const auto start = Clock::now();
    kernel(a.data(), b.data(), c.data(), n, n, n);
    const double ms = elapsed_ms(start);
    if (rep == 0 || ms < result.ms) result.ms = ms;
  }
  result.gflops = 2.0 * double(n) * n * n / (result.ms * 1e-3) / 1e9;  // one multiply + one add per term
  return result;
}

}  // namespace infer
