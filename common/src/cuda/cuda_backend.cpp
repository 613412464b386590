// cuda_backend.cpp: the Backend interface on an NVIDIA GPU.
//
// Host-side only (compiled by the C++ compiler): memory, copies, the cuBLAS handle and the choice of
// kernel per op; the kernels live one concept per .cu file beside this one (cuda_kernels.h lists
// them). Everything runs in order on one stream owned by the backend; download() synchronises, so
// the logits the host samples from are complete. Weights arrive once through upload() already in
// their storage format (Weights converts on the host to f32/f16/bf16, or keeps or makes Q8_0/Q4_0/Q4_1
// blocks); every op accumulates in fp32.
// Memory: available_memory() is the device's free memory (cudaMemGetInfo), which Weights and KVCache
// check their sizes against before uploading; a failed cudaMalloc throws infer::Error with the size
// and the free/total device memory and leaves the backend usable (device_malloc says how).
//
// matmul picks a kernel by the number of tokens:
//   n == 1 (decode):  the GEMV of gemv.cu (v3_vectorized when the row length and alignment allow,
//                     else v2_warp_per_row), reading the weights in their stored type.
//   n > 1 (prefill):  cublasGemmEx with fp32 compute. For f16/bf16 weights x is first rounded to the
//                     weights' type (cuBLAS needs A and B of one type; the tensor cores need half
//                     inputs); the cuda_tests bound the error this adds.
// Q8_0 / Q4_0 / Q4_1 weights stay in their GGUF blocks on the device (Weights uploads them as stored):
//   n == 1:           gemv_quant.cu v2_staged_16b (v1_warp_per_row when W or x is not 16-byte aligned);
//   2 <= n < 32:      gemm_quant.cu v1_smem_tiles; n >= 32: v2_dequant_cublas (fp32 tile + cuBLAS).
//   x stays fp32 throughout (the CPU quantizes it to int8 per block: the two backends' logits differ by
//   that rounding; cuda_tests bound it). Other block formats (Q5_*, K formats) are refused by name.
// attention picks v2_split_context (split-K, GQA groups together) for decode and very long contexts,
// v1_block_per_query_head for prefill (attention.cu explains).
//
// A decode step allocates nothing and synchronises once: every scratch buffer only grows and reaches
// its decode size on the first step, the token id goes up with an async copy into an idle stream, and
// the one cudaStreamSynchronize is download() of the logits the host samples from.
#include "cuda_check.h"
#include "cuda_kernels.h"

#include "infer/model/backend.h"
#include "infer/core/error.h"
#include "infer/core/memory_budget.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace infer {
namespace {

// cudaMalloc of at least one byte, or infer::Error. Out of memory is reported with the device's free
// and total memory. It is not a sticky CUDA error: the context stays usable, and clearing the
// last-error slot keeps the failure from being reported again by the next CUDA_CHECK_LAUNCH. Any
// other status is not about this request (e.g. a fault of an earlier kernel surfacing here), so it
// is reported as CUDA's own error rather than called out of memory.
void* device_malloc(size_t bytes) {
  void* pointer = nullptr;
  const cudaError_t status = cudaMalloc(&pointer, std::max<size_t>(bytes, 1));
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      cudaGetLastError();
      fail("cuda: out of memory allocating {} ({} bytes)", format_bytes(bytes), bytes);
    }
    fail("cuda: out of memory allocating {} ({} bytes); {} free of {} device memory", format_bytes(bytes), bytes,
         format_bytes(free_bytes), format_bytes(total_bytes));
  }
  CUDA_CHECK(status);
  return pointer;
}

// A device buffer that only grows: scratch space reused across calls (token ids, half activations).
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (data_ != nullptr) cudaFree(data_);
  }
  void* ensure(size_t bytes) {
    if (bytes <= capacity_) return data_;
    if (data_ != nullptr) CUDA_CHECK(cudaFree(data_));  // cudaFree waits for kernels still using it
    data_ = nullptr;
    capacity_ = 0;
    data_ = device_malloc(bytes);
    capacity_ = bytes;
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    CUDA_CHECK(cudaSetDevice(device_));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const cublasStatus_t status = cublasCreate(&cublas_);
    if (status != CUBLAS_STATUS_SUCCESS) {
      cudaStreamDestroy(stream_);
      fail("cuda: cublasCreate failed: {}: {}", cublasGetStatusName(status), cublasGetStatusString(status));
    }
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // Plain fp32 for fp32 GEMMs (no TF32), so prefill with fp32 weights matches the CPU closely.
    CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  }

  ~CudaBackend() override {
    // Destructors must not throw: failures here are reported, not raised.
    if (cublasDestroy(cublas_) != CUBLAS_STATUS_SUCCESS) std::fprintf(stderr, "cuda: cublasDestroy failed\n");
    const cudaError_t status = cudaStreamDestroy(stream_);
    if (status != cudaSuccess) std::fprintf(stderr, "cuda: cudaStreamDestroy: %s\n", cudaGetErrorString(status));
  }

  std::string name() const override { return "cuda"; }

  // ---- memory ----------------------------------------------------------------------------------
  // No up-front comparison with available_memory() here (the CPU backend needs one because Linux
  // overcommits): cudaMalloc never overcommits, so it is the exact test (device_malloc above).
  void* allocate(size_t bytes) override {
    void* pointer = device_malloc(bytes);
    const cudaError_t zeroed = cudaMemsetAsync(pointer, 0, std::max<size_t>(bytes, 1), stream_);  // promised zeros
    if (zeroed != cudaSuccess) {
      cudaFree(pointer);
      cuda::throw_cuda_error("cudaMemsetAsync", __FILE__, __LINE__, cudaGetErrorName(zeroed), cudaGetErrorString(zeroed));
    }
    return pointer;
  }

  // What Weights and KVCache check their sizes against before allocating (memory_budget.h): the
  // device's free memory now, which already excludes the weights, caches and scratch allocated so
  // far (and whatever other processes hold on this GPU).
  uint64_t available_memory() const override {
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return free_bytes;
  }

  void release(void* pointer) override {
    if (pointer == nullptr) return;
    const cudaError_t status = cudaFree(pointer);  // called from destructors: report, never throw
    if (status != cudaSuccess) std::fprintf(stderr, "cuda: cudaFree: %s\n", cudaGetErrorString(status));
  }

  void upload(void* device_dst, const void* host_src, size_t bytes) override {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the caller may free host_src on return
  }

  void download(void* host_dst, const void* device_src, size_t bytes) override {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // also where a fault in an earlier kernel surfaces
  }

  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // ---- ops -------------------------------------------------------------------------------------
  void embed(const Matrix& table, const int* tokens_host, int n, float* out) override {
    if (n <= 0) return;
    for (int t = 0; t < n; ++t)  // checked on the host: a bad id must not become an out-of-bounds read
      if (tokens_host[t] < 0 || tokens_host[t] >= table.rows)
        fail("embed: token id {} outside the vocabulary [0, {})", tokens_host[t], table.rows);
    auto* tokens = static_cast<int*>(token_scratch_.ensure(size_t(n) * sizeof(int)));
    CUDA_CHECK(cudaMemcpyAsync(tokens, tokens_host, size_t(n) * sizeof(int), cudaMemcpyHostToDevice, stream_));
    cuda::embed(table, tokens, n, out, stream_);
  }

  void rmsnorm(const float* x, const float* weight, float* out, int n, int dim, float eps) override {
    cuda::rmsnorm(x, weight, out, n, dim, eps, stream_);
  }

  void matmul(const Matrix& weight, const float* x, float* y, int n) override {
    if (cuda::quant_matmul_supported(weight.dtype)) {
      matmul_quantized(weight, x, y, n);
      return;
    }
    if (weight.dtype != DType::F32 && weight.dtype != DType::F16 && weight.dtype != DType::BF16)
      fail("cuda matmul: weights of dtype {} have no CUDA kernel (f32, f16, bf16, q8_0, q4_0 and q4_1 do; "
           "load the model with --weights q8_0, q4_0, q4_1 or f16)", dtype_name(weight.dtype));
    if (n <= 0) return;
    if (n == 1) {
      const auto version =
          cuda::gemv_v3_supported(weight, x) ? cuda::GemvVersion::V3Vectorized : cuda::GemvVersion::V2WarpPerRow;
      cuda::gemv(version, weight, x, y, stream_);
      return;
    }
    if (weight.dtype == DType::F32) {
      cuda::matmul_cublas(cublas_, weight, x, y, n);
      return;
    }
    const size_t count = size_t(n) * size_t(weight.cols);
    void* x_half = half_scratch_.ensure(count * 2);  // (n, cols) in the weights' 2-byte type
    cuda::convert_from_f32(weight.dtype, x, x_half, count, stream_);
    cuda::matmul_cublas(cublas_, weight, x_half, y, n);
  }

  void rope(float* x, int n, int n_heads, int head_dim, const int* positions, float theta, RopeLayout layout) override {
    cuda::rope(x, n, n_heads, head_dim, positions, theta, layout, stream_);
  }

  void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
                int kv_dim, int num_slots) override {
    cuda::store_kv(new_k, new_v, k_pool, v_pool, slot_mapping, n, kv_dim, num_slots, stream_);
  }

  void paged_attention(const float* q, const float* k_pool, const float* v_pool, float* out, const BatchView& batch,
                       int n_heads, int n_kv_heads, int head_dim) override {
    // The split-context kernel for every pass (prefill chunks and decode rows of many sequences mixed).
    const size_t bytes = cuda::attention_v2_workspace_bytes(batch.n_tokens, n_heads, head_dim);
    cuda::paged_attention_v2(q, k_pool, v_pool, out, batch, n_heads, n_kv_heads, head_dim,
                             attention_scratch_.ensure(bytes), bytes, stream_);
  }

  // The int8 KV cache (ch07): quantized by store_kv_int8, read by the split-context kernel's int8 version.
  bool supports_int8_kv() const override { return true; }

  void store_kv_int8(const float* new_k, const float* new_v, const Int8KVLayer& pool, const int* slot_mapping, int n,
                     int n_kv_heads, int head_dim, int num_slots) override {
    cuda::store_kv_int8(new_k, new_v, pool, slot_mapping, n, n_kv_heads, head_dim, num_slots, stream_);
  }

  void paged_attention_int8(const float* q, const Int8KVLayer& pool, float* out, const BatchView& batch, int n_heads,
                            int n_kv_heads, int head_dim) override {
    const size_t bytes = cuda::attention_v2_workspace_bytes(batch.n_tokens, n_heads, head_dim);
    cuda::paged_attention_v2_int8(q, pool, out, batch, n_heads, n_kv_heads, head_dim, attention_scratch_.ensure(bytes),
                                  bytes, stream_);
  }

  void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                 int n_heads, int n_kv_heads, int head_dim) override {
    // v2 for decode and for contexts too long for v1's shared memory, v1 for prefill (attention.cu
    // says why).
    const bool decode = n == 1;
    if (cuda::attention_v2_supported(head_dim) && (decode || !cuda::attention_v1_fits(start_pos + n, head_dim))) {
      const size_t bytes = cuda::attention_v2_workspace_bytes(n, n_heads, head_dim);
      cuda::attention_v2(q, k_cache, v_cache, out, n, start_pos, n_heads, n_kv_heads, head_dim,
                         attention_scratch_.ensure(bytes), bytes, stream_);
      return;
    }
    cuda::attention_v1(q, k_cache, v_cache, out, n, start_pos, n_heads, n_kv_heads, head_dim, stream_);
  }

  void silu_mul(float* gate, const float* up, size_t count) override { cuda::silu_mul(gate, up, count, stream_); }

  void add(float* x, const float* y, size_t count) override { cuda::add(x, y, count, stream_); }

  void copy(float* dst, const float* src, size_t count) override {
    if (count == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  }

 private:
  // Q8_0 / Q4_0 / Q4_1 blocks as stored (gemv_quant.cu, gemm_quant.cu): the GEMV for one token (v2's
  // 16-byte staged loads when W and x are 16-byte aligned, as the backend's allocations are), the
  // shared-memory tiles for a few tokens (W read once per 32 tokens), dequantized tiles + cuBLAS from
  // kQuantCublasTokens on (prefill: compute-bound, the fp32 tile traffic is amortised).
  static constexpr int kQuantCublasTokens = 32;
  void matmul_quantized(const Matrix& weight, const float* x, float* y, int n) {
    if (n <= 0) return;
    if (n == 1) {
      const auto version = cuda::gemv_quant_v2_supported(weight, x) ? cuda::GemvQuantVersion::V2Staged16B
                                                                     : cuda::GemvQuantVersion::V1WarpPerRow;
      cuda::gemv_quant(version, weight, x, y, stream_);
      return;
    }
    if (n < kQuantCublasTokens) {
      cuda::gemm_quant(cuda::GemmQuantVersion::V1SmemTiles, cublas_, weight, x, y, n, nullptr, 0, stream_);
      return;
    }
    const size_t bytes = cuda::gemm_quant_workspace_bytes(cuda::GemmQuantVersion::V2DequantCublas, weight);
    cuda::gemm_quant(cuda::GemmQuantVersion::V2DequantCublas, cublas_, weight, x, y, n, dequant_scratch_.ensure(bytes),
                     bytes, stream_);
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  Scratch token_scratch_;  // (n) token ids for embed
  Scratch half_scratch_;   // (n, cols) activations rounded to f16/bf16 for the prefill GEMM
  Scratch attention_scratch_;  // attention v2's partial results; its size does not grow with the context
  Scratch dequant_scratch_;    // gemm_quant v2's fp32 tile of quantized weights (at most 32 MiB)
};

}  // namespace

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave no error behind for the next caller
    return fmt::format("{} ({})", cudaGetErrorString(status), cudaGetErrorName(status));
  }
  if (count == 0) return "the CUDA runtime found no device";
  return "";
}

std::unique_ptr<Backend> make_cuda_backend() {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) fail("--device cuda: no usable CUDA device: {}", reason);
  return std::make_unique<CudaBackend>(0);
}

}  // namespace infer
