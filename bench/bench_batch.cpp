// bench_batch.cpp: the kernels of ch06's batched passes: paged attention at several context lengths
// (decode rows and prefill), and the matmul at n = 1, 4, 16, 64 rows (a batch of decode rows).
//
// Paged attention: SmolLM2-135M's heads (9 query heads, 3 kv heads, head_dim 64), a pool of 16-position
// blocks handed out in a shuffled order (as a block manager's free list leaves them).
//   BM_paged_decode_attention_<v>/context:C     one decode row at position C - 1 (all C positions read);
//                                               bytes = K and V rows read once per kv head.
//   BM_paged_prefill_attention_<v>/prompt:P     a P-token prompt in one pass (causal, P^2/2 query-key pairs
//                                               per head); the GFLOP counter counts 4 * head_dim flops per
//                                               pair and query head (q.k and the weighted V sum).
// v2_grouped is ch05's kernel through the block table (one position at a time, scalar exp); v3_tiled the
// backend's (16-position tiles, query blocks, context chunks of 512 spread over the threads); v4_int8 v3 over
// the same rows quantized to an int8 pool (ch07's int8 KV cache).
// Matmul: y (n, rows) = x (n, cols) . W^T through cpu::matmul (GEMV at n = 1, the register-blocked GEMM
// above), SmolLM2's gate/up shape (1536 x 576, f32), cycling through copies of W larger than the last-level
// cache so every step reads W from memory as a forward pass does. A batch pays when the time per step
// grows much slower than n: the tok/s counter (rows n per step) against n = 1.
// Threads: OMP_NUM_THREADS, as for bench_cpu.cpp.
#include "bench_util.h"
#include "infer/core/host_memory.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/model/backend.h"
#include "infer/model/batch.h"

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace {

constexpr int kHeads = 9, kKvHeads = 3, kHeadDim = 64, kBlockSize = 16;

using infer::bench::random_values;

// One sequence whose `context` positions are in shuffled blocks; its last `n_new` positions are the queries.
struct PagedInput {
  infer::Batch batch{kBlockSize};
  std::vector<float> k, v, q, out;
  infer::BatchView view;
  PagedInput(int context, int n_new) {
    const int n_blocks = (context + kBlockSize - 1) / kBlockSize;
    std::vector<int> blocks(static_cast<size_t>(n_blocks));
    std::iota(blocks.begin(), blocks.end(), 0);
    std::mt19937_64 rng(7);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    batch.add_sequence(std::vector<int>(static_cast<size_t>(n_new), 0), context - n_new, blocks, infer::LogitsFor::last);
    const size_t pool = size_t(n_blocks) * kBlockSize * kKvHeads * kHeadDim;
    k = random_values(pool, 1);
    v = random_values(pool, 2);
    q = random_values(size_t(n_new) * kHeads * kHeadDim, 3);
    out.resize(q.size());
    view.n_tokens = batch.n_tokens();
    view.n_sequences = batch.n_sequences();
    view.block_size = kBlockSize;
    view.max_blocks = batch.max_blocks;
    view.max_context = context;
    view.positions = batch.positions.data();
    view.slot_mapping = batch.slot_mapping.data();
    view.query_start = batch.query_start.data();
    view.context_lens = batch.context_lens.data();
    view.block_tables = batch.block_tables.data();
  }
};

using PagedKernel = void (*)(const float*, const float*, const float*, float*, const infer::BatchView&, int, int, int,
                             int);

template <PagedKernel Kernel>
void BM_paged_decode_attention(benchmark::State& state) {
  const int context = int(state.range(0));
  PagedInput in(context, 1);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    Kernel(in.q.data(), in.k.data(), in.v.data(), in.out.data(), in.view, kHeads, kKvHeads, kHeadDim, threads);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(2 * size_t(context) * kKvHeads * kHeadDim * sizeof(float)));
  state.counters["threads"] = threads;
}

template <PagedKernel Kernel>
void BM_paged_prefill_attention(benchmark::State& state) {
  const int prompt = int(state.range(0));
  PagedInput in(prompt, prompt);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    Kernel(in.q.data(), in.k.data(), in.v.data(), in.out.data(), in.view, kHeads, kKvHeads, kHeadDim, threads);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  const double pairs = double(prompt) * (prompt + 1) / 2.0;
  state.counters["GFLOP"] = benchmark::Counter(pairs * kHeads * 4.0 * kHeadDim * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tok/s"] = benchmark::Counter(double(prompt), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}

BENCHMARK(BM_paged_decode_attention<infer::cpu::paged_attention_v2_grouped>)
    ->Name("BM_paged_decode_attention_v2_grouped")->ArgName("context")
    ->Arg(32)->Arg(512)->Arg(2048)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_paged_decode_attention<infer::cpu::paged_attention_v3_tiled>)
    ->Name("BM_paged_decode_attention_v3_tiled")->ArgName("context")
    ->Arg(32)->Arg(512)->Arg(2048)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_paged_prefill_attention<infer::cpu::paged_attention_v2_grouped>)
    ->Name("BM_paged_prefill_attention_v2_grouped")->ArgName("prompt")
    ->Arg(128)->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_paged_prefill_attention<infer::cpu::paged_attention_v3_tiled>)
    ->Name("BM_paged_prefill_attention_v3_tiled")->ArgName("prompt")
    ->Arg(128)->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- v4_int8: the same rows quantized to an int8 pool (KVDType::int8), the same batches ---------------------
// bytes = int8 K and V rows plus their scales, read once per kv head: 2 * context * kv heads * (head_dim + 4).
struct Int8PagedInput : PagedInput {
  std::vector<int8_t> k8, v8;
  std::vector<float> k_scale, v_scale;
  infer::Int8KVLayer pool;
  Int8PagedInput(int context, int n_new) : PagedInput(context, n_new) {
    const size_t slots = k.size() / (kKvHeads * kHeadDim);
    k8.resize(k.size());
    v8.resize(v.size());
    k_scale.resize(slots * kKvHeads);
    v_scale.resize(slots * kKvHeads);
    pool = infer::Int8KVLayer{k8.data(), v8.data(), k_scale.data(), v_scale.data()};
    std::vector<int> all(slots);
    std::iota(all.begin(), all.end(), 0);
    infer::cpu::store_kv_int8(k.data(), v.data(), pool, all.data(), int(slots), kKvHeads, kHeadDim, int(slots));
  }
};

void BM_paged_decode_attention_v4_int8(benchmark::State& state) {
  const int context = int(state.range(0));
  Int8PagedInput in(context, 1);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    infer::cpu::paged_attention_v4_int8(in.q.data(), in.pool, in.out.data(), in.view, kHeads, kKvHeads, kHeadDim, threads);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(2 * size_t(context) * kKvHeads * (kHeadDim + sizeof(float))));
  state.counters["threads"] = threads;
}

void BM_paged_prefill_attention_v4_int8(benchmark::State& state) {
  const int prompt = int(state.range(0));
  Int8PagedInput in(prompt, prompt);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    infer::cpu::paged_attention_v4_int8(in.q.data(), in.pool, in.out.data(), in.view, kHeads, kKvHeads, kHeadDim, threads);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  const double pairs = double(prompt) * (prompt + 1) / 2.0;
  state.counters["GFLOP"] = benchmark::Counter(pairs * kHeads * 4.0 * kHeadDim * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tok/s"] = benchmark::Counter(double(prompt), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}

BENCHMARK(BM_paged_decode_attention_v4_int8)->ArgName("context")
    ->Arg(32)->Arg(512)->Arg(2048)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_paged_prefill_attention_v4_int8)->ArgName("prompt")
    ->Arg(128)->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- the matmul of a batch of n rows, W from memory --------------------------------------------------
using BatchKernel = void (*)(const infer::Matrix&, const float*, float*, int, int);
// Kernel: infer::cpu::matmul (what the backend runs) or one GEMM version. kPanels: W stored in 16-row panels
// (interleaved.h; the CPU backend's default f32 layout on AVX-512, where matmul runs v4), else row-major
// (matmul runs the GEMV at n = 1 and v3 above).
template <BatchKernel Kernel, bool kPanels = false>
void BM_matmul_batch(benchmark::State& state) {
  constexpr int rows = 1536, cols = 576;  // SmolLM2's ffn gate/up
  const int n = int(state.range(0));
  const size_t count = size_t(rows) * cols;
  const size_t copies = std::max<size_t>(2, (size_t(768) << 20) / (count * sizeof(float)) + 1);
  // One buffer allocated as the CPU backend allocates weights (host_memory.h: 64-byte aligned, huge
  // pages): a std::vector per copy starts 16 bytes into its page, so every 64-byte load would straddle
  // two cache lines, and 4 KiB pages stop the prefetcher at every page; the benchmark would time those.
  auto values = random_values(count, 1);
  if (kPanels) {  // rows is a multiple of 16: the panels hold exactly count floats
    std::vector<float> panels(count);
    infer::interleave_rows(infer::DType::F32, values.data(), rows, cols, panels.data());
    values = std::move(panels);
  }
  float* all = static_cast<float*>(infer::allocate_host(copies * count * sizeof(float)));
  for (size_t c = 0; c < copies; ++c) std::copy(values.begin(), values.end(), all + c * count);
  const auto x = random_values(size_t(n) * cols, 2);
  std::vector<float> y(size_t(n) * rows);
  const int threads = omp_get_max_threads();
  size_t next = 0;
  for (auto _ : state) {
    const infer::Matrix weight{infer::DType::F32, rows, cols, all + next * count, kPanels};
    next = (next + 1) % copies;
    Kernel(weight, x.data(), y.data(), n, threads);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(count * sizeof(float)));
  state.counters["GFLOP"] = benchmark::Counter(2.0 * n * rows * cols * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["rows/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
  infer::free_host(all);
}
// The same calls on W in panels: matmul runs v4 (matmul_panels_cpu.cpp), its GEMV at n = 1 too.
BENCHMARK(BM_matmul_batch<infer::cpu::matmul, true>)->Name("BM_matmul_batch_v4_panels")->ArgName("n")->Arg(1)->Arg(2)
    ->Arg(4)->Arg(8)->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_matmul_batch<infer::cpu::matmul>)->Name("BM_matmul_batch")->ArgName("n")->Arg(1)->Arg(2)->Arg(4)->Arg(5)
    ->Arg(8)->Arg(9)->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMicrosecond)->UseRealTime();
// The previous GEMM (v2_register_blocked) on the same buffers, to compare with matmul's v3 in one run.
BENCHMARK(BM_matmul_batch<infer::cpu::gemm_v2_register_blocked>)->Name("BM_matmul_batch_v2")->ArgName("n")->Arg(2)
    ->Arg(4)->Arg(5)->Arg(8)->Arg(9)->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
