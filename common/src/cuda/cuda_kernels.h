// cuda_kernels.h (private): host-side launchers of the CUDA kernels, one .cu file per concept.
//
// The CUDA backend (cuda_backend.cpp), the GPU ceilings (gpu_hardware.cpp) and the cuda_tests call
// these; nothing outside the library and its tests sees them. All pointers are device pointers
// unless named *_host, shapes are as in backend.h, and every launcher checks its launch
// (CUDA_CHECK_LAUNCH) and throws infer::Error on bad arguments. The kernels run asynchronously on
// `stream`.
#pragma once

#include "infer/model/backend.h"
#include "infer/core/model_config.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace infer::cuda {

// ---- embedding.cu ----------------------------------------------------------------------------------
// out (n, dim) = table[tokens[t]] as fp32. table: (vocab, dim) in F32/F16/BF16/Q8_0/Q4_0/Q4_1; tokens: n device ints,
// already checked to lie in [0, vocab) by the caller.
void embed(const Matrix& table, const int* tokens, int n, float* out, cudaStream_t stream);

// ---- rmsnorm.cu ------------------------------------------------------------------------------------
// out (n, dim) = x / sqrt(mean(x^2) + eps) * weight, per row.
void rmsnorm(const float* x, const float* weight, float* out, int n, int dim, float eps, cudaStream_t stream);

// ---- rope.cu ---------------------------------------------------------------------------------------
// Rotates each head of token t of x (n, n_heads, head_dim) by the angles of position positions[t]
// (n device ints).
void rope(float* x, int n, int n_heads, int head_dim, const int* positions, float theta, RopeLayout layout,
          cudaStream_t stream);

// ---- kv_store.cu -----------------------------------------------------------------------------------
// Token t's K and V rows (n, kv_dim) -> rows slot_mapping[t] (n device ints) of k_pool / v_pool (num_slots
// rows of kv_dim floats). A slot outside [0, num_slots) is skipped (the batch was validated on the host).
void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
              int kv_dim, int num_slots, cudaStream_t stream);
// The int8 pool (KVDType::int8, backend.h): each (token, kv head) row quantized symmetrically (scale =
// max|x| / 127, q = round-to-nearest-even(x / scale), the same IEEE operations as cpu::quantize_row_int8, so
// the same bytes) into its slot; a non-finite row stores zeros and a NaN scale. store_kv_int8_v1_warp_per_row:
// one warp per (token, kv head, K or V) row.
void store_kv_int8(const float* new_k, const float* new_v, const Int8KVLayer& pool, const int* slot_mapping, int n,
                   int n_kv_heads, int head_dim, int num_slots, cudaStream_t stream);

// ---- attention.cu ----------------------------------------------------------------------------------
// Causal GQA attention (see Backend::attention): q (n, n_heads, head_dim), caches (max_seq, n_kv_heads,
// head_dim), out (n, n_heads, head_dim).
// v1_block_per_query_head: one block per (token, head), the scores in shared memory. Throws if the
// context needs more shared memory than the device allows (227 KiB per block on an H100: about 58K
// positions); attention_v1_fits says beforehand.
bool attention_v1_fits(int positions, int head_dim);
void attention_v1(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                  int n_heads, int n_kv_heads, int head_dim, cudaStream_t stream);
// v2_split_context: split-K over the context, the query heads of a GQA group together, then a combine
// kernel (log-sum-exp). Any context length; head_dim <= 256 (attention_v2_supported). `workspace`
// is device memory of at least attention_v2_workspace_bytes(n, n_heads, head_dim) bytes; that size
// does not depend on the context, so a decode loop allocates it once.
bool attention_v2_supported(int head_dim);
size_t attention_v2_workspace_bytes(int n, int n_heads, int head_dim);
void attention_v2(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                  int n_heads, int n_kv_heads, int head_dim, void* workspace, size_t workspace_bytes,
                  cudaStream_t stream);
// v2 over a paged pool (see Backend::paged_attention): the same kernel, each position's row found through
// its sequence's block table and each query at its own position. `batch` holds device pointers. The
// workspace: attention_v2_workspace_bytes(batch.n_tokens, n_heads, head_dim).
void paged_attention_v2(const float* q, const float* k_pool, const float* v_pool, float* out, const BatchView& batch,
                        int n_heads, int n_kv_heads, int head_dim, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream);
// paged v2 over an int8 pool (v2_int8): the same kernel reading int8 rows (converted as they are loaded), each
// position's K scale applied once to its score and its V scale once to its softmax weight. Same workspace.
void paged_attention_v2_int8(const float* q, const Int8KVLayer& pool, float* out, const BatchView& batch, int n_heads,
                             int n_kv_heads, int head_dim, void* workspace, size_t workspace_bytes,
                             cudaStream_t stream);

// ---- elementwise.cu --------------------------------------------------------------------------------
void silu_mul(float* gate, const float* up, size_t count, cudaStream_t stream);  // gate = silu(gate) * up
void add(float* x, const float* y, size_t count, cudaStream_t stream);           // x += y
// dst (count) = src rounded to `type` (F16 or BF16, round to nearest even): the tensor-core GEMM's input.
void convert_from_f32(DType type, const float* src, void* dst, size_t count, cudaStream_t stream);

// ---- gemv.cu: y (W.rows) = W (rows, cols) . x (cols), the decode matmul ------------------------------
enum class GemvVersion {
  V1ThreadPerRow,  // readable reference: one thread per output row
  V2WarpPerRow,    // one warp per row, coalesced loads, shuffle reduction
  V3Vectorized,    // V2 with 16-byte loads; needs gemv_v3_supported
};
const char* gemv_version_name(GemvVersion version);
// V3 needs rows of whole 16-byte chunks (cols a multiple of 4 fp32 or 8 fp16/bf16) and 16-byte
// aligned W and x.
bool gemv_v3_supported(const Matrix& weight, const float* x);
void gemv(GemvVersion version, const Matrix& weight, const float* x, float* y, cudaStream_t stream);

// ---- gemm.cu ---------------------------------------------------------------------------------------
// ch03's ladder, row-major fp32: C (m, n) = A (m, k) . B (k, n).
void gemm_v1_naive(const float* a, const float* b, float* c, int m, int n, int k, cudaStream_t stream);
void gemm_v2_tiled(const float* a, const float* b, float* c, int m, int n, int k, cudaStream_t stream);
// cuBLAS (cublasGemmEx, fp32 accumulation) with A, B and C all of `type`: F32 (CUDA cores, no TF32),
// F16 or BF16 (tensor cores).
void gemm_v3_cublas(cublasHandle_t handle, DType type, const void* a, const void* b, void* c, int m, int n, int k);

// The backend's prefill matmul: y (n, W.rows) = x (n, W.cols) . W^T with cublasGemmEx, fp32 compute
// and fp32 output. x is stored in W's dtype (fp32 for F32 weights; the caller rounds it to F16/BF16
// for half weights, since cublasGemmEx needs A and B of one type).
void matmul_cublas(cublasHandle_t handle, const Matrix& weight, const void* x, float* y, int n);

// ---- gemv_quant.cu, gemm_quant.cu: y (n, W.rows) = x (n, W.cols) . W^T, W in Q8_0/Q4_0/Q4_1 blocks as stored ----
// Block layouts: quant_block_decode.h. x and y fp32, fp32 sums. W needs cols a multiple of 32 and a 2-byte
// aligned base (check_quant_matrix throws infer::Error naming the problem, also for other dtypes).
bool quant_matmul_supported(DType type);  // Q8_0, Q4_0, Q4_1
void check_quant_matrix(const char* what, const Matrix& weight);
// The CPU reference (host pointers): each row dequantized with dequantize_row, then an fp32 dot in column order.
void matmul_quant_reference(const Matrix& weight_host, const float* x_host, float* y_host, int n);
// Decode (n == 1).
enum class GemvQuantVersion {
  V1WarpPerRow,  // one warp per row, each weight dequantized in registers, byte loads
  V2Staged16B,   // 16-byte coalesced loads of the raw blocks into shared memory, 8 rows per block
};
const char* gemv_quant_version_name(GemvQuantVersion version);
bool gemv_quant_v2_supported(const Matrix& weight, const float* x);  // 16-byte aligned W and x
void gemv_quant(GemvQuantVersion version, const Matrix& weight, const float* x, float* y, cudaStream_t stream);
// Prefill / batched decode (any n >= 1).
enum class GemmQuantVersion {
  V1SmemTiles,      // 32 x 32 output tiles, W dequantized tile by tile into shared memory
  V2DequantCublas,  // rows dequantized to an fp32 workspace tile, then cublasGemmEx (fp32)
};
const char* gemm_quant_version_name(GemmQuantVersion version);
// Device memory V2 needs as `workspace` (at most 32 MiB, whatever the matrix); 0 for V1.
size_t gemm_quant_workspace_bytes(GemmQuantVersion version, const Matrix& weight);
// `handle` (V2 only) must run on `stream`.
void gemm_quant(GemmQuantVersion version, cublasHandle_t handle, const Matrix& weight, const float* x, float* y, int n,
                void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace infer::cuda
