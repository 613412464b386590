// bench_cpu.cpp: micro-benchmarks of the CPU kernels, reported as rates (bytes/s, FLOP/s).
//
// Threads: every kernel here uses OpenMP's default team size, so choose it with OMP_NUM_THREADS
// (e.g. `OMP_NUM_THREADS=1 ./bench_kernels --benchmark_filter=gemm`). Wall-clock time is used
// (UseRealTime) because the work runs on several threads, not only the benchmark's own.
//
// Adding a kernel: write one function BM_<kernel>(benchmark::State&) that sets up seeded inputs,
// runs the kernel in the `for (auto _ : state)` loop, then reports what one iteration moved
// (state.SetBytesProcessed) and/or computed (add_flops_counter); register it with BENCHMARK below.
#include "infer/app/hardware.h"
#include "infer/engine/sampler.h"

#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace {

// ---- Helpers -------------------------------------------------------------------------------------

std::vector<float> random_matrix(size_t elements, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> values(elements);
  for (auto& x : values) x = static_cast<float>(rng() >> 40) * 0x1.0p-23f - 1.0f;  // [-1, 1)
  return values;
}

// A "FLOP/s" column: total FLOPs over all iterations, divided by the elapsed time (kIsRate).
void add_flops_counter(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

// ---- Read bandwidth ------------------------------------------------------------------------------

// Sums a buffer of state.range(0) bytes, far larger than the last-level cache: the bytes/s column
// is the read bandwidth decode at batch 1 is bound by.
void BM_read_bandwidth(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) / sizeof(float);
  const int threads = omp_get_max_threads();
  auto buffer = std::make_unique_for_overwrite<float[]>(n);
  infer::parallel_fill(buffer.get(), n, 1.0f, threads);
  for (auto _ : state) benchmark::DoNotOptimize(infer::parallel_sum(buffer.get(), n, threads));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n * sizeof(float)));
  state.counters["threads"] = threads;
}
BENCHMARK(BM_read_bandwidth)->Arg(int64_t{1} << 30)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- GEMM ----------------------------------------------------------------------------------------

// Square n x n x n GEMM, 2 n^3 FLOPs per call. The bytes/s column counts A, B and C once (the
// compulsory traffic), which shows how far above the bandwidth roofline a good GEMM sits.
template <void (*Gemm)(const float*, const float*, float*, int, int, int)>
void BM_gemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const size_t elements = size_t(n) * n;
  const auto a = random_matrix(elements, 1);
  const auto b = random_matrix(elements, 2);
  std::vector<float> c(elements, 0.0f);
  for (auto _ : state) {
    Gemm(a.data(), b.data(), c.data(), n, n, n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  add_flops_counter(state, 2.0 * double(n) * n * n);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(3 * elements * sizeof(float)));
  state.counters["threads"] = omp_get_max_threads();
}
BENCHMARK(BM_gemm<infer::gemm_v1_naive>)->Name("BM_gemm_v1_naive")->Arg(128)->Arg(512)->Arg(1024)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm<infer::gemm_v2_blocked>)->Name("BM_gemm_v2_blocked")->Arg(128)->Arg(512)->Arg(1024)->Arg(2048)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- Sampler -------------------------------------------------------------------------------------

// One sampling step over a vocabulary of state.range(0) random logits. Not a bandwidth kernel, but
// it runs once per generated token, so it must stay well below a forward pass (~ms). Config:
// range(1) = 0: temperature only; 1: top-p 0.9 (full sort); 2: top-k 40 + top-p 0.9 (partial sort).
void BM_sampler(benchmark::State& state) {
  const size_t vocab = static_cast<size_t>(state.range(0));
  infer::SamplerConfig config{.temperature = 0.8f, .seed = 1};
  if (state.range(1) >= 1) config.top_p = 0.9f;
  if (state.range(1) == 2) config.top_k = 40;
  infer::Sampler sampler(config);
  // Logits spread over [-10, 10), like a language model's: a peaked softmax with a short nucleus.
  auto logits = random_matrix(vocab, 3);
  for (auto& x : logits) x *= 10.0f;
  std::vector<float> row(vocab);
  for (auto _ : state) {
    row = logits;  // sample() may modify its input
    benchmark::DoNotOptimize(sampler.sample(row, {}));
  }
}
BENCHMARK(BM_sampler)->ArgsProduct({{32000, 49152}, {0, 1, 2}})->Unit(benchmark::kMicrosecond);

}  // namespace
