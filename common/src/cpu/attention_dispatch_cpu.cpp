// attention_dispatch_cpu.cpp: cpu::attention, the CPU backend's attention op: which version runs.
//
// The versions live in attention_cpu.cpp (v1_naive, the readable reference; v2_grouped, GQA groups
// together with an online softmax; v3_tiled, what runs: 16-position tiles, query blocks and the context
// split in chunks, the same arithmetic as the paged attention ch06's batches run, so a sequence gives the
// same bits alone in a contiguous cache and inside a batch). The choice is its own file so that the ch05 lab can swap in a
// student's cached attention for the whole engine (ch05_kv_cache/lab/) while the versions stay
// compiled for the tests and benchmarks.
#include "infer/cpu/cpu_kernels.h"

namespace infer::cpu {

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
               int n_heads, int n_kv_heads, int head_dim, int threads) {
  attention_v3_tiled(q, k_cache, v_cache, out, n, start_pos, n_heads, n_kv_heads, head_dim, threads);
}

}  // namespace infer::cpu
