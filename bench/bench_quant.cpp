// bench_quant.cpp: the integer kernels on quantized blocks (common/src/cpu/matmul_quant_cpu.cpp) beside
// the f32 kernels, on SmolLM2-135M's shapes, with int8 and int16 activations.
//
// BM_quant_gemv: a decode GEMV, weights from memory (each iteration multiplies by the next of several
// copies of W, together larger than the last-level cache, allocated as the backend allocates weights:
// aligned, huge pages); the bytes/s column counts the weight bytes: compare it with BM_read_bandwidth.
// BM_quant_gemm: the prefill GEMM at n = 16, 64, 128, 512 tokens, W reused (from cache) across
// iterations; tok/s and GFLOP/s (2 * n * rows * cols) beside BM_quant_gemm's f32 rows (the backend's
// f32 matmul: gemm_v2_register_blocked, the kernel the quantized GEMM must at least match).
// Arguments: rows, cols, (n,) format (0 f32, 1 q8_0, 2 q4_0, 3 q4_1), bits (8 or 16; ignored for f32),
// layout (0: row-major, the file's: v2-v8; 1: 16 rows interleaved, infer/core/interleaved.h: v9).
// Threads: OMP_NUM_THREADS (e.g. OMP_NUM_THREADS=1 ./bench_kernels --benchmark_filter=quant).
#include "bench_util.h"
#include "infer/core/dtype.h"
#include "infer/core/host_memory.h"
#include "infer/core/interleaved.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/cpu/quant_kernels.h"
#include "infer/model/backend.h"

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace {

using infer::bench::random_values;

infer::DType format_of(int64_t code) {
  switch (code) {
    case 1: return infer::DType::Q8_0;
    case 2: return infer::DType::Q4_0;
    case 3: return infer::DType::Q4_1;
    default: return infer::DType::F32;
  }
}

// `copies` back-to-back copies of one random rows x cols matrix in `type`, in one host buffer, row-major
// or interleaved.
struct Weights {
  infer::DType type;
  int rows, cols;
  bool interleaved;
  size_t bytes;  // one copy
  size_t copies;
  uint8_t* data;
  Weights(infer::DType t, int r, int c, size_t min_total, bool interleave)
      : type(t), rows(r), cols(c), interleaved(interleave && infer::interleavable(t, c)) {
    const size_t row_major_bytes = infer::dtype_row_bytes(type, int64_t(rows) * cols);
    bytes = interleaved ? infer::interleaved_shape(type, rows, cols).total_bytes() : row_major_bytes;
    copies = std::max<size_t>(1, min_total / bytes + 1);
    data = static_cast<uint8_t*>(infer::allocate_host(copies * bytes));
    const auto values = random_values(size_t(rows) * cols, 1);
    const size_t row_bytes = infer::dtype_row_bytes(type, cols);
    std::vector<uint8_t> row_major(row_major_bytes);
    for (int row = 0; row < rows; ++row)
      infer::quantize_row(type, values.data() + size_t(row) * cols, row_major.data() + row * row_bytes, cols);
    if (interleaved) {
      infer::interleave_rows(type, row_major.data(), rows, cols, data);
    } else {
      std::memcpy(data, row_major.data(), bytes);
    }
    for (size_t c = 1; c < copies; ++c) std::memcpy(data + c * bytes, data, bytes);
  }
  ~Weights() { infer::free_host(data); }
  infer::Matrix matrix(size_t copy) const {
    return infer::Matrix{type, rows, cols, data + (copy % copies) * bytes, interleaved};
  }
};

void run_matmul(const infer::Matrix& w, const float* x, float* y, int n, int threads, int bits) {
  if (w.dtype == infer::DType::F32) {
    infer::cpu::matmul(w, x, y, n, threads);
  } else {
    infer::cpu::gemm_quantized(w, x, y, n, threads, infer::cpu::best_quant_path(),
                               bits == 16 ? infer::cpu::ActivationBits::Int16 : infer::cpu::ActivationBits::Int8);
  }
}

void BM_quant_gemv(benchmark::State& state) {
  const int rows = int(state.range(0)), cols = int(state.range(1)), bits = int(state.range(3));
  const Weights w(format_of(state.range(2)), rows, cols, size_t(768) << 20, state.range(4) == 1);
  const auto x = random_values(size_t(cols), 2);
  std::vector<float> y(static_cast<size_t>(rows));
  const int threads = omp_get_max_threads();
  size_t next = 0;
  for (auto _ : state) {
    run_matmul(w.matrix(next++), x.data(), y.data(), 1, threads, bits);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(w.bytes));
  state.counters["threads"] = threads;
}
// SmolLM2-135M: wq/wo 576x576, gate/up 1536x576, down 576x1536, classifier 49152x576.
void gemv_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"rows", "cols", "fmt", "bits", "lay"});
  for (const auto& [rows, cols] : {std::pair{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}}) {
    bench->Args({rows, cols, 0, 32, 0});
    for (int format : {1, 2, 3})
      for (int bits : {8, 16})
        for (int layout : {0, 1}) bench->Args({rows, cols, format, bits, layout});
  }
}
BENCHMARK(BM_quant_gemv)->Apply(gemv_args)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_quant_gemm(benchmark::State& state) {
  const int rows = int(state.range(0)), cols = int(state.range(1)), n = int(state.range(2)), bits = int(state.range(4));
  const Weights w(format_of(state.range(3)), rows, cols, 0, state.range(5) == 1);
  const auto x = random_values(size_t(n) * cols, 2);
  std::vector<float> y(size_t(n) * rows);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    run_matmul(w.matrix(0), x.data(), y.data(), n, threads, bits);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["tok/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP"] = benchmark::Counter(2.0 * n * rows * cols * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}
void gemm_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"rows", "cols", "n", "fmt", "bits", "lay"});
  for (const auto& [rows, cols] : {std::pair{1536, 576}, {576, 1536}, {576, 576}})
    for (int n : {16, 64, 128, 512}) {
      bench->Args({rows, cols, n, 0, 32, 0});
      for (int format : {1, 2, 3})
        for (int bits : {8, 16})
          for (int layout : {0, 1}) bench->Args({rows, cols, n, format, bits, layout});
    }
}
BENCHMARK(BM_quant_gemm)->Apply(gemm_args)->Unit(benchmark::kMicrosecond)->UseRealTime();

// One token's activations quantized (what every decode matmul does first, on one thread): range(0)
// columns, range(1) bits, range(2) 1 = the best path's quantizer (AVX-512 for int8), 0 = the plain loop.
void BM_quantize_activations(benchmark::State& state) {
  const int cols = int(state.range(0));
  const auto path = state.range(2) == 1 ? infer::cpu::best_quant_path() : infer::cpu::QuantPath::Reference;
  const auto bits = state.range(1) == 16 ? infer::cpu::ActivationBits::Int16 : infer::cpu::ActivationBits::Int8;
  const auto x = random_values(size_t(cols), 3);
  infer::cpu::QuantizedActivations q;
  for (auto _ : state) {
    infer::cpu::quantize_activations(x.data(), 1, cols, q, bits, 1, path);
    benchmark::DoNotOptimize(q.d.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_quantize_activations)->ArgNames({"cols", "bits", "simd"})->ArgsProduct({{576, 1536}, {8, 16}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
