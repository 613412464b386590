// cpu_kernels.h: the CPU kernels behind CpuBackend, exposed so tests and benchmarks can call them
// directly. Shapes as in backend.h.
#pragma once

#include "infer/model/backend.h"
#include "infer/core/model_config.h"

#include <cstddef>
#include <span>

namespace infer::cpu {

// out = x / sqrt(mean(x^2) + eps) * weight                                   x, weight, out: (dim)
void rmsnorm_row(const float* x, const float* weight, float* out, int dim, float eps);

// gate (count) = silu(gate) * up = gate / (1 + exp(-gate)) * up, one formula for every element (silu_cpu.cpp:
// a polynomial exp, AVX-512 or plain C++, the same bits); silu_mul_scalar is one element of it.
void silu_mul(float* gate, const float* up, size_t count, int threads);
float silu_mul_scalar(float gate, float up);

// sum_i a[i] * b[i], vectorised with 16 independent partial sums.
float dot_f32(const float* a, const float* b, int n);
// sum_i fp32(w[i]) * x[i] for fp16 w: dot_f32's arithmetic with the conversion fused in.
float dot_f16_f32(const uint16_t* w, const float* x, int n);
// Converts n fp16 / bf16 values to fp32 (F16C / AVX-512 when the compiler targets them).
void f16_to_f32_row(const uint16_t* src, float* dst, int n);
void bf16_to_f32_row(const uint16_t* src, float* dst, int n);

// y (n, W.rows) = x (n, W.cols) . W^T for W in any dtype. Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 run the
// integer kernels of quant_kernels.h; the K formats are dequantized a few rows at a time (below).
//  n == 1 (decode): a GEMV, one output row per iteration, threads split the rows. It streams W once,
//                   so its speed is bandwidth / W.n_bytes().
//  n > 1 (prefill, batched decode): 4 weight rows at a time (converted to fp32 once if they are not)
//                   meet every token of a block of tokens in 6 x 4 register tiles, so W is read once
//                   per token block (one block up to 168 tokens at 576 columns)
//                   (gemm_v3_packed_prefetch).
//  f32 in 16-row panels (Matrix::interleaved, the CPU backend's default f32 layout on AVX-512): v4 below for
//                   every n, 3 panels x 8 tokens per tile (GEMM) or 4 panels (GEMV).
void matmul(const Matrix& weight, const float* x, float* y, int n, int threads);
// ys[i] = x . weights[i]^T for matrices that read the same x (Q, K, V; gate, up), each output with
// matmul's bits. One format and column count: quantized formats quantize x once and run all rows in one
// parallel region (gemm_quantized_many); f32 / f16 GEMVs run all rows in one region; anything else one
// matmul per matrix. Decode makes ~7 matmul calls per layer: each region's fork, barrier and the
// single-threaded activation quantization between them were ~20% of a Q4 decode step (perf).
void matmul_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n, int threads);
// The GEMV (n == 1) versions, see matmul_cpu.cpp: v1_scratch converts half-precision rows into a
// per-call buffer; v2_fused (what matmul runs) converts inside the dot, with no buffer.
void gemv_v1_scratch(const Matrix& weight, const float* x, float* y, int threads);
void gemv_v2_fused(const Matrix& weight, const float* x, float* y, int threads);
// The GEMM (n > 1) versions, see matmul_cpu.cpp; both give the GEMV's bits for every token.
//  v1_dot: one dot_f32 per (token, row) of a block of 16 rows converted to fp32 once.
//  v2_register_blocked: 4 tokens x 4 rows per micro-kernel, accumulators in
//    registers (AVX-512 intrinsics when compiled for AVX-512); _portable: the same tiles in plain C++,
//    what builds without AVX-512 run, callable everywhere so tests can check it gives the same bits.
void gemm_v1_dot(const Matrix& weight, const float* x, float* y, int n, int threads);
void gemm_v2_register_blocked(const Matrix& weight, const float* x, float* y, int n, int threads);
void gemm_v2_register_blocked_portable(const Matrix& weight, const float* x, float* y, int n, int threads);
//  v3_packed_prefetch (what matmul runs): 6 tokens x 4 rows per micro-kernel with the x vector kept in a
//    register, x packed once per call in the micro-kernel's order, weights streamed 4 rows at a time with a
//    software prefetch of the next 4; the same bits as v1/v2/the GEMV. _portable as for v2.
void gemm_v3_packed_prefetch(const Matrix& weight, const float* x, float* y, int n, int threads);
void gemm_v3_packed_prefetch_portable(const Matrix& weight, const float* x, float* y, int n, int threads);
//  v4_panels (matmul_panels_cpu.cpp; what matmul runs for f32 matrices stored in 16-row panels, Matrix::interleaved,
//    the CPU backend's default f32 layout): 16 rows per register, x broadcast, 3 panels x 8 tokens per tile (GEMM)
//    and 4 panels x 1 token (GEMV). Every output, for every n, is one chain of fmas over the columns in order
//    from 0, so decode and a batched step give the same bits. _portable: the same chains in plain C++.
void gemm_v4_panels(const Matrix& weight, const float* x, float* y, int n, int threads);
void gemm_v4_panels_portable(const Matrix& weight, const float* x, float* y, int n, int threads);
// v4 over matrices that read the same x (Q, K, V; gate, up): x packed once, one parallel loop.
void gemm_v4_panels_many(std::span<const Matrix* const> weights, const float* x, std::span<float* const> ys, int n,
                         int threads);
// Whether v4 runs its AVX-512 tiles in this build (else the plain C++ ones): the CPU backend's "auto" layout
// stores f32 matrices in panels only then.
bool f32_panels_vectorised();

// Rotates pairs of each head of x (n, n_heads, head_dim) by angle pos * theta^(-2i/head_dim),
// pos = start_pos + t. Interleaved pairs are (2i, 2i+1); HalfSplit pairs are (i, i + head_dim/2).
void rope(float* x, int n, int n_heads, int head_dim, int start_pos, float theta, RopeLayout layout, int threads);

// Causal GQA attention over a contiguous cache, see Backend::attention. attention() is the op the
// CPU backend calls and runs v2_grouped (attention_dispatch_cpu.cpp).
// v1_naive: one query head at a time (reads each cached row once per query head); the reference.
// v2_grouped: the query heads of a GQA group together, one pass with an online softmax (reads each
//             cached K/V row once per kv head). See attention_cpu.cpp.
void attention_v1_naive(const float* q, const float* k_cache, const float* v_cache, float* out, int n,
                        int start_pos, int n_heads, int n_kv_heads, int head_dim, int threads);
void attention_v2_grouped(const float* q, const float* k_cache, const float* v_cache, float* out, int n,
                          int start_pos, int n_heads, int n_kv_heads, int head_dim, int threads);
// v3_tiled: 16-position tiles (K transposed once per tile, shared by the group's heads and up to 8 queries),
//           vectorised scores and exp, the context split in 512-position chunks merged by log-sum-exp; its own
//           arithmetic, the same bits in every layout, batch, block size and thread count.
void attention_v3_tiled(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                        int n_heads, int n_kv_heads, int head_dim, int threads);
void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
               int n_heads, int n_kv_heads, int head_dim, int threads);

// Writes token t's K and V rows (n, kv_dim) to pool rows slot_mapping[t] of k_pool / v_pool (num_slots rows
// of kv_dim floats each), see Backend::store_kv. Throws infer::Error, before writing anything, when a slot is
// outside [0, num_slots). kv_store_cpu.cpp (its own file: the ch05 lab's exercise 1).
void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
              int kv_dim, int num_slots);

// ---- the int8 KV cache (KVDType::int8, ch07; kv_store_int8_cpu.cpp) ---------------------------------
// Quantizes one row x (n floats) symmetrically: scale = max|x| / 127, q[i] = round(x[i] / scale) in
// [-127, 127]; returns scale (0 for an all-zero row, whose q are 0). Dequantized x'[i] = q[i] * scale
// satisfies |x[i] - x'[i]| <= scale / 2 (up to float rounding of the division and the product, tested as
// scale * (0.5 + 2^-16)). A non-finite row stores q = 0 and a non-finite scale, so the NaN/Inf reaches the
// attention output (and --check-numerics) instead of disappearing.
float quantize_row_int8(const float* x, int n, int8_t* q);
// store_kv for an int8 pool (backend.h): each token's K and V rows quantized per kv head into slot
// slot_mapping[t]. Throws infer::Error, before writing anything, when a slot is outside [0, num_slots).
void store_kv_int8(const float* new_k, const float* new_v, const Int8KVLayer& pool, const int* slot_mapping, int n,
                   int n_kv_heads, int head_dim, int num_slots);

// Causal GQA attention of a ragged batch over a paged pool, see Backend::paged_attention and
// attention_cpu.cpp. Each query's result depends only on its own q, its position and its sequence's
// K/V rows, never on the rest of the batch or the block size.
// v1_naive: one (token, query head) at a time, three passes; the reference.
// v2_grouped: v2_grouped's arithmetic with the rows found through the block table (the same bits as the
//             contiguous v2 for the same rows).
// paged_attention: the version the CPU backend runs.
void paged_attention_v1_naive(const float* q, const float* k_pool, const float* v_pool, float* out,
                              const BatchView& batch, int n_heads, int n_kv_heads, int head_dim, int threads);
void paged_attention_v2_grouped(const float* q, const float* k_pool, const float* v_pool, float* out,
                                const BatchView& batch, int n_heads, int n_kv_heads, int head_dim, int threads);
void paged_attention_v3_tiled(const float* q, const float* k_pool, const float* v_pool, float* out,
                              const BatchView& batch, int n_heads, int n_kv_heads, int head_dim, int threads);
void paged_attention(const float* q, const float* k_pool, const float* v_pool, float* out, const BatchView& batch,
                     int n_heads, int n_kv_heads, int head_dim, int threads);
// paged_v4_int8: v3_tiled over an int8 pool (Int8KVLayer). The int8 K and V rows are converted to fp32 in
// registers by the tile transpose and the weighted V sum (no fp32 copy); the row's K scale multiplies its score once
// (score = (q . k_int8) * k_scale / sqrt(head_dim)) and its V scale its softmax weight once
// (out += (p * v_scale) * v_int8). Same tiles, chunks and order as v3: a query's bits do not depend on the
// rest of the batch, the block layout or the thread count. What the CPU backend runs for an int8 cache.
void paged_attention_v4_int8(const float* q, const Int8KVLayer& pool, float* out, const BatchView& batch, int n_heads,
                             int n_kv_heads, int head_dim, int threads);

}  // namespace infer::cpu
