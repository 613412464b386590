// cpu_backend.cpp: the Backend interface on the host, with OpenMP threads.
//
// Each op is a short loop nest that follows its maths; the heavy one, matmul, lives in
// matmul_cpu.cpp and attention in attention_cpu.cpp. Threads are set per backend (omp num_threads
// clauses), never through a global.
#include "infer/model/backend.h"
#include "infer/core/error.h"
#include "infer/core/host_memory.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/cpu/quant_kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

namespace infer {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(int threads, bool interleave_quantized, bool panels_f32)
      : threads_(threads > 0 ? threads : omp_get_num_procs()), interleave_(interleave_quantized), panels_(panels_f32) {}

  std::string name() const override { return "cpu"; }
  int threads() const { return threads_; }

  // ---- memory ----------------------------------------------------------------------------------
  void* allocate(size_t bytes) override {
    // Aligned to a cache line, and to a huge page from 2 MiB up (host_memory.h: the weights and KV
    // pools are streamed, and 4 KiB pages cost the prefetcher and the TLB a lot of that bandwidth).
    // Checked before asking: Linux overcommits, so a huge request would "succeed" and the memset
    // in allocate_host would get the process OOM-killed (and under ASan the allocator aborts instead).
    const uint64_t available = available_memory();
    if (bytes > available)
      fail("cpu: out of memory allocating {} ({} bytes); {} available", format_bytes(bytes), bytes, format_bytes(available));
    return allocate_host(bytes);
  }
  void release(void* pointer) override { free_host(pointer); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  bool interleaves(DType type, int cols) const override {
    return (type == DType::F32 ? panels_ : interleave_) && interleavable(type, cols);
  }

  // ---- ops -------------------------------------------------------------------------------------
  void embed(const Matrix& table, const int* tokens, int n, float* out) override {
    for (int t = 0; t < n; ++t) {
      if (tokens[t] < 0 || tokens[t] >= table.rows) fail("embed: token id {} outside the vocabulary [0, {})", tokens[t], table.rows);
      if (table.interleaved) {
        dequantize_interleaved_row(interleaved_shape(table.dtype, table.rows, table.cols), table.data, tokens[t],
                                   out + size_t(t) * table.cols);
        continue;
      }
      const size_t row_bytes = dtype_row_bytes(table.dtype, table.cols);
      const auto* row = static_cast<const uint8_t*>(table.data) + size_t(tokens[t]) * row_bytes;
      dequantize_row(table.dtype, row, out + size_t(t) * table.cols, table.cols);
    }
  }

  void rmsnorm(const float* x, const float* weight, float* out, int n, int dim, float eps) override {
#pragma omp parallel for num_threads(threads_) if (n > 1)
    for (int t = 0; t < n; ++t) cpu::rmsnorm_row(x + size_t(t) * dim, weight, out + size_t(t) * dim, dim, eps);
  }

  void matmul(const Matrix& weight, const float* x, float* y, int n) override {
    cpu::matmul(weight, x, y, n, threads_);
  }
  void matmul_many(const Matrix* const* weights, int count, const float* x, float* const* ys, int n) override {
    cpu::matmul_many(std::span<const Matrix* const>(weights, size_t(count)), x, std::span<float* const>(ys, size_t(count)), n,
                     threads_);
  }

  void rope(float* x, int n, int n_heads, int head_dim, const int* positions, float theta, RopeLayout layout) override {
    // A sequence's new tokens sit at consecutive positions: one cpu::rope call per run of them (the
    // whole pass for ch05's single sequence), each token rotated exactly as it would be alone.
    const size_t token_floats = size_t(n_heads) * head_dim;
    std::vector<std::pair<int, int>> runs_of_positions;  // [first, end) token ranges
    int longest = 0;
    for (int first = 0; first < n;) {
      int end = first + 1;
      while (end < n && positions[end] == positions[end - 1] + 1) ++end;
      runs_of_positions.push_back({first, end});
      longest = std::max(longest, end - first);
      first = end;
    }
    // A batch of short runs (decode: one token per sequence) splits over the runs; otherwise each run
    // splits over its tokens. Either way every token's arithmetic is its own (same bits).
    const int runs = int(runs_of_positions.size());
    if (runs > 1 && longest <= kShortRopeRun) {
#pragma omp parallel for num_threads(threads_) schedule(static)
      for (int r = 0; r < runs; ++r) {
        const auto [first, end] = runs_of_positions[size_t(r)];
        cpu::rope(x + size_t(first) * token_floats, end - first, n_heads, head_dim, positions[first], theta, layout, 1);
      }
      return;
    }
    for (const auto& [first, end] : runs_of_positions)
      cpu::rope(x + size_t(first) * token_floats, end - first, n_heads, head_dim, positions[first], theta, layout,
                threads_);
  }

  void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
                int kv_dim, int num_slots) override {
    cpu::store_kv(new_k, new_v, k_pool, v_pool, slot_mapping, n, kv_dim, num_slots);
  }

  void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                 int n_heads, int n_kv_heads, int head_dim) override {
    cpu::attention(q, k_cache, v_cache, out, n, start_pos, n_heads, n_kv_heads, head_dim, threads_);
  }

  void paged_attention(const float* q, const float* k_pool, const float* v_pool, float* out, const BatchView& batch,
                       int n_heads, int n_kv_heads, int head_dim) override {
    // One sequence whose blocks are consecutive in the pool (ch05's cache: blocks 0, 1, 2, ...) is a
    // contiguous cache starting at its first block: the contiguous op runs it, with no table lookups
    // (and, in the ch05 lab, the student's attention runs the whole engine). Both give the same bits.
    if (batch.n_sequences == 1 && consecutive_blocks(batch)) {
      const size_t first_row = size_t(batch.block_tables[0]) * batch.block_size * size_t(n_kv_heads) * head_dim;
      cpu::attention(q, k_pool + first_row, v_pool + first_row, out, batch.n_tokens, batch.positions[0], n_heads,
                     n_kv_heads, head_dim, threads_);
      return;
    }
    cpu::paged_attention(q, k_pool, v_pool, out, batch, n_heads, n_kv_heads, head_dim, threads_);
  }

  bool supports_int8_kv() const override { return true; }

  void store_kv_int8(const float* new_k, const float* new_v, const Int8KVLayer& pool, const int* slot_mapping, int n,
                     int n_kv_heads, int head_dim, int num_slots) override {
    cpu::store_kv_int8(new_k, new_v, pool, slot_mapping, n, n_kv_heads, head_dim, num_slots);
  }

  void paged_attention_int8(const float* q, const Int8KVLayer& pool, float* out, const BatchView& batch, int n_heads,
                            int n_kv_heads, int head_dim) override {
    cpu::paged_attention_v4_int8(q, pool, out, batch, n_heads, n_kv_heads, head_dim, threads_);
  }

  void silu_mul(float* gate, const float* up, size_t count) override { cpu::silu_mul(gate, up, count, threads_); }

  void add(float* x, const float* y, size_t count) override {
    // A batch's residual (64 tokens x 576: 36,864 floats) splits over the threads; a decode row does not.
    const std::ptrdiff_t total = std::ptrdiff_t(count);
#pragma omp parallel for simd num_threads(threads_) schedule(static) if (count > 16384)
    for (std::ptrdiff_t i = 0; i < total; ++i) x[i] += y[i];
  }

  void copy(float* dst, const float* src, size_t count) override { std::memcpy(dst, src, count * sizeof(float)); }

 private:
  int threads_;
  bool interleave_;  // Q8_0 / Q4_0 / Q4_1 matrices: 16 rows interleaved per block (v9 kernels)
  bool panels_;      // f32 matrices: 16-row panels (GEMM v4)
  // rope(): a call whose runs of consecutive positions are all at most this long (a decode batch) is
  // rotated one run per iteration of a parallel loop.
  static constexpr int kShortRopeRun = 4;

  // Whether sequence 0's blocks covering its context are b, b + 1, b + 2, ...
  static bool consecutive_blocks(const BatchView& batch) {
    const int used = (batch.context_lens[0] + batch.block_size - 1) / batch.block_size;
    for (int j = 1; j < used; ++j)
      if (batch.block_tables[j] != batch.block_tables[0] + j) return false;
    return true;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads, const std::string& layout) {
  // auto: quantized matrices interleaved where the v9 kernels run (elsewhere they would run their plain
  // reference), f32 matrices in panels where v4 runs its AVX-512 tiles.
  bool interleave = false, panels = false;
  if (layout == "auto") {
    interleave = cpu::best_quant_path() == cpu::QuantPath::Avx512Vnni;
    panels = cpu::f32_panels_vectorised();
  } else if (layout == "interleaved") {
    interleave = panels = true;
  } else if (layout != "rows") {
    fail("unknown weight layout '{}' (expected auto, interleaved or rows)", layout);
  }
  return std::make_unique<CpuBackend>(threads, interleave, panels);
}

}  // namespace infer
