// bench_decode.cpp: the two kernels of a batch-1 decode step, the GEMV and the decode attention,
// and the multi-token GEMM of prefill (and of the naive decoder), v1_dot vs v2_register_blocked.
//
// GEMV: y = W x for the matrix shapes of SmolLM2-135M and TinyLlama-1.1B, weights in f32 and f16.
// A decode step streams every weight once, so the GB/s column (weight bytes, counted here) should
// approach the machine's read bandwidth (BM_read_bandwidth in bench_cpu.cpp). To measure memory and
// not the cache, each iteration multiplies by the next of several copies of W, together larger
// than the last-level cache, as a forward pass moves on to the next layer's weights.
// Attention: one decode query (n = 1) over a context of range(0) cached positions with SmolLM2's
// heads (9 query heads, 3 kv heads, head_dim 64); bytes = the K and V rows read once per kv head
// (what v2_grouped reads; v1_naive re-reads them once per query head, from cache).
// GEMM: y (n, rows) = x (n, cols) . W^T with f32 weights of SmolLM2's shapes for n = 16, 64, 256
// tokens; the GFLOP counter (shown as a rate, GFLOP/s) counts 2 * n * rows * cols per iteration.
// W is reused across iterations (from cache when it fits): with n >= 16 the kernel does >= 8 FLOPs
// per weight byte, so it is compute-bound; v2_portable is the plain-C++ tiles non-AVX-512 builds run.
// Threads: OMP_NUM_THREADS, as for bench_cpu.cpp.
#include "bench_util.h"
#include "infer/model/backend.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/core/dtype.h"

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

namespace {

using infer::bench::random_values;

// ---- GEMV ----------------------------------------------------------------------------------------

// range(0) x range(1) weights (rows x cols), dtype F32 (range(2) = 0) or F16 (1).
void BM_gemv(benchmark::State& state) {
  const int rows = int(state.range(0)), cols = int(state.range(1));
  const infer::DType dtype = state.range(2) == 0 ? infer::DType::F32 : infer::DType::F16;
  const size_t count = size_t(rows) * cols;
  const size_t matrix_bytes = infer::dtype_row_bytes(dtype, int64_t(count));
  // Enough copies to exceed ~768 MB (this machine's shared L3 is 260 MiB), at least 2.
  const size_t copies = std::max<size_t>(2, (size_t(768) << 20) / matrix_bytes + 1);
  std::vector<std::vector<uint8_t>> storage(copies, std::vector<uint8_t>(matrix_bytes));
  const auto values = random_values(count, 1);
  for (auto& bytes : storage) {
    if (dtype == infer::DType::F32) {
      std::memcpy(bytes.data(), values.data(), matrix_bytes);
    } else {
      auto* half = reinterpret_cast<uint16_t*>(bytes.data());
      for (size_t i = 0; i < count; ++i) half[i] = infer::fp32_to_fp16(values[i]);
    }
  }
  const auto x = random_values(size_t(cols), 2);
  std::vector<float> y(static_cast<size_t>(rows));
  const int threads = omp_get_max_threads();
  size_t next = 0;
  for (auto _ : state) {
    const infer::Matrix weight{dtype, rows, cols, storage[next].data()};
    next = (next + 1) % copies;
    infer::cpu::matmul(weight, x.data(), y.data(), 1, threads);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(matrix_bytes));
  state.counters["threads"] = threads;
}
// SmolLM2-135M: wq/wo 576x576, wk/wv 192x576, gate/up 1536x576, down 576x1536, classifier 49152x576.
// TinyLlama-1.1B: wq/wo 2048x2048, wk/wv 256x2048, gate/up 5632x2048, down 2048x5632, classifier 32000x2048.
BENCHMARK(BM_gemv)
    ->ArgNames({"rows", "cols", "f16"})
    ->ArgsProduct({{576}, {576}, {0, 1}})
    ->ArgsProduct({{1536}, {576}, {0, 1}})
    ->ArgsProduct({{576}, {1536}, {0, 1}})
    ->ArgsProduct({{49152}, {576}, {0, 1}})
    ->ArgsProduct({{2048}, {2048}, {0, 1}})
    ->ArgsProduct({{5632}, {2048}, {0, 1}})
    ->ArgsProduct({{2048}, {5632}, {0, 1}})
    ->ArgsProduct({{32000}, {2048}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// ---- GEMM (prefill) ------------------------------------------------------------------------------

using GemmKernel = void (*)(const infer::Matrix&, const float*, float*, int, int);

// range(0) x range(1) f32 weights (rows x cols), range(2) tokens.
template <GemmKernel Kernel>
void BM_gemm(benchmark::State& state) {
  const int rows = int(state.range(0)), cols = int(state.range(1)), n = int(state.range(2));
  const auto w = random_values(size_t(rows) * cols, 1);
  const auto x = random_values(size_t(n) * cols, 2);
  std::vector<float> y(size_t(n) * rows);
  const infer::Matrix weight{infer::DType::F32, rows, cols, w.data()};
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    Kernel(weight, x.data(), y.data(), n, threads);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP"] = benchmark::Counter(2.0 * n * rows * cols * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}
// SmolLM2-135M: wq/wo 576x576, gate/up 1536x576, down 576x1536, classifier 49152x576.
void smollm2_gemm_shapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"rows", "cols", "n"});
  for (const auto& [rows, cols] : {std::pair{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}})
    for (int n : {16, 64, 256}) bench->Args({rows, cols, n});
}
BENCHMARK(BM_gemm<infer::cpu::gemm_v1_dot>)->Name("BM_gemm_v1_dot")->Apply(smollm2_gemm_shapes)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm<infer::cpu::gemm_v2_register_blocked>)->Name("BM_gemm_v2_register_blocked")
    ->Apply(smollm2_gemm_shapes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm<infer::cpu::gemm_v2_register_blocked_portable>)->Name("BM_gemm_v2_portable")
    ->Apply(smollm2_gemm_shapes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm<infer::cpu::gemm_v3_packed_prefetch>)->Name("BM_gemm_v3_packed_prefetch")
    ->Apply(smollm2_gemm_shapes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm<infer::cpu::gemm_v3_packed_prefetch_portable>)->Name("BM_gemm_v3_portable")
    ->Apply(smollm2_gemm_shapes)->Unit(benchmark::kMillisecond)->UseRealTime();
// The prefill GEMM (the backend's dispatch) at a short and a long prompt: the same work per token? GFLOP/s at
// n = 2048 against n = 128 shows whether the long prompt's tokens (x: n * cols floats, 4.7 MB for 2048 x 576)
// still meet the weights in cache.
BENCHMARK(BM_gemm<infer::cpu::matmul>)->Name("BM_gemm_prefill")->ArgNames({"rows", "cols", "n"})
    ->Args({1536, 576, 128})->Args({1536, 576, 512})->Args({1536, 576, 2048})->Args({576, 1536, 128})
    ->Args({576, 1536, 512})->Args({576, 1536, 2048})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- decode attention ----------------------------------------------------------------------------

using AttentionKernel = void (*)(const float*, const float*, const float*, float*, int, int, int, int, int, int);

template <AttentionKernel Kernel>
void BM_decode_attention(benchmark::State& state) {
  constexpr int n_heads = 9, n_kv_heads = 3, head_dim = 64;  // SmolLM2-135M
  const int context = int(state.range(0));
  const int kv_dim = n_kv_heads * head_dim;
  const auto q = random_values(size_t(n_heads) * head_dim, 3);
  const auto k = random_values(size_t(context) * kv_dim, 4);
  const auto v = random_values(size_t(context) * kv_dim, 5);
  std::vector<float> out(size_t(n_heads) * head_dim);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    // One query at position context - 1: it attends over all `context` cached rows.
    Kernel(q.data(), k.data(), v.data(), out.data(), 1, context - 1, n_heads, n_kv_heads, head_dim, threads);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(2 * size_t(context) * kv_dim * sizeof(float)));
  state.counters["threads"] = threads;
}
BENCHMARK(BM_decode_attention<infer::cpu::attention_v1_naive>)
    ->Name("BM_decode_attention_v1_naive")
    ->ArgName("context")
    ->Arg(128)->Arg(512)->Arg(2048)->Arg(8192)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_decode_attention<infer::cpu::attention_v2_grouped>)
    ->Name("BM_decode_attention_v2_grouped")
    ->ArgName("context")
    ->Arg(128)->Arg(512)->Arg(2048)->Arg(8192)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_decode_attention<infer::cpu::attention_v3_tiled>)
    ->Name("BM_decode_attention_v3_tiled")
    ->ArgName("context")
    ->Arg(128)->Arg(512)->Arg(2048)->Arg(8192)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
