// backend.h: the operations the forward pass is written against, one implementation per device.
//
// The forward pass (transformer.cpp) is written once against this interface; CpuBackend
// (src/cpu/) implements it with OpenMP, and CudaBackend (src/cuda/) the same ops with CUDA kernels.
// All float pointers passed to an op live in the backend's memory (host memory for the CPU).
// A backend is chosen explicitly (--device), never by sniffing the environment; it holds no global
// state, so two backends can live side by side (the tests compare them).
#pragma once

#include "infer/core/dtype.h"
#include "infer/core/interleaved.h"
#include "infer/core/memory_budget.h"
#include "infer/core/model_config.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace infer {

// A weight matrix resident on a backend: (rows, cols), y = W x. Row-major as the file stores it, or
// (CPU) with 16 rows interleaved (infer/core/interleaved.h): Q8_0 / Q4_0 / Q4_1 per block, f32 per column.
struct Matrix {
  DType dtype = DType::F32;
  int rows = 0;
  int cols = 0;
  const void* data = nullptr;
  bool interleaved = false;
  size_t n_bytes() const {
    return interleaved ? interleaved_shape(dtype, rows, cols).total_bytes() : dtype_row_bytes(dtype, int64_t(rows) * cols);
  }
};

// A Batch (batch.h) as the kernels see it: its int arrays in the backend's memory (the Transformer uploads
// them once per pass) plus the sizes, by value. Shapes as in batch.h.
struct BatchView {
  int n_tokens = 0;
  int n_sequences = 0;
  int block_size = 0;
  int max_blocks = 0;             // columns of block_tables
  int max_context = 0;            // the largest context_lens entry (sizes the CUDA launch)
  const int* positions = nullptr;     // (n_tokens)
  const int* slot_mapping = nullptr;  // (n_tokens)
  const int* query_start = nullptr;   // (n_sequences + 1)
  const int* context_lens = nullptr;  // (n_sequences)
  const int* block_tables = nullptr;  // (n_sequences, max_blocks)
};

// The element type of a KV cache (PagedKVCache's option, ch07).
//   f32:  K and V rows as computed.
//   int8: each (position, kv head) row of head_dim values stored as int8 q with one float scale s per row
//         (symmetric: s = max|x| / 127, q = round(x / s), x' = q * s, so |x - x'| <= s / 2), for K and for V.
enum class KVDType { f32, int8 };
const char* kv_dtype_name(KVDType dtype);  // "f32", "int8"
// "f32" / "int8"; throws infer::Error naming the value otherwise.
KVDType parse_kv_dtype(const std::string& name);

// One layer of an int8 KV pool (KVDType::int8): k, v (num_slots, n_kv_heads, head_dim) int8 and
// k_scale, v_scale (num_slots, n_kv_heads) floats; position row (slot, kv head g) is
// k[(slot * n_kv_heads + g) * head_dim + d] * k_scale[slot * n_kv_heads + g] (the same for V).
struct Int8KVLayer {
  int8_t* k = nullptr;
  int8_t* v = nullptr;
  float* k_scale = nullptr;
  float* v_scale = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda"

  // ---- memory ----------------------------------------------------------------------------------
  // Zero-initialised. Never returns null and never aborts: when `bytes` cannot be had (more than
  // available_memory(), or the device allocator fails) it throws infer::Error naming the backend and
  // the size requested (and what was available), e.g. "cuda: out of memory allocating 3.20 GiB
  // (3435973836 bytes); 1.10 GiB free". Callers that can size their needs up front (Weights, KVCache)
  // check against available_memory() first and refuse with a message in their own terms.
  virtual void* allocate(size_t bytes) = 0;
  // Bytes this backend can still allocate: host memory (MemAvailable) by default; a device backend
  // overrides it with its own free memory (CUDA: cudaMemGetInfo's free bytes).
  virtual uint64_t available_memory() const { return available_host_memory(); }
  virtual void release(void* pointer) = 0;
  virtual void upload(void* device_dst, const void* host_src, size_t bytes) = 0;
  // Whether this backend computes on matrices of `type` with `cols` columns stored with
  // 16 rows interleaved (infer/core/interleaved.h) rather than row-major: Weights stores them so. The CPU
  // backend's default where its v9 kernels run (Q8_0 / Q4_0 / Q4_1 on AVX-512 VNNI) and where GEMM v4 runs
  // its AVX-512 tiles (f32 panels); never on CUDA.
  virtual bool interleaves(DType type, int cols) const {
    (void)type;
    (void)cols;
    return false;
  }
  virtual void download(void* host_dst, const void* device_src, size_t bytes) = 0;
  virtual void synchronize() {}

  // ---- ops (shapes in comments; n = number of tokens in the pass) -------------------------------
  // out (n, dim) = table[tokens[t]] converted to fp32.                    table: (vocab, dim)
  virtual void embed(const Matrix& table, const int* tokens_host, int n, float* out) = 0;
  // out (n, dim) = x / rms(x) * weight, per row.                           weight: (dim)
  virtual void rmsnorm(const float* x, const float* weight, float* out, int n, int dim, float eps) = 0;
  // y (n, W.rows) = x (n, W.cols) . W^T. n == 1 is the decode GEMV, n > 1 the prefill GEMM.
  virtual void matmul(const Matrix& weight, const float* x, float* y, int n) = 0;
  // ys[i] (n, weights[i]->rows) = x . weights[i]^T for several matrices reading the same x (Q, K, V;
  // gate, up), each output exactly what matmul gives. The default runs matmul per matrix; the CPU
  // backend runs them in one parallel region (and quantizes x once).
  // (Pointer + count, not std::span: the CUDA sources include this header as C++17.)
  virtual void matmul_many(const Matrix* const* weights, int count, const float* x, float* const* ys, int n) {
    for (int i = 0; i < count; ++i) matmul(*weights[i], x, ys[i], n);
  }
  // Rotates each head of token t of x (n, n_heads, head_dim) by the angle of its own position
  // positions[t] (n ints in backend memory: each token of a ragged batch is at its own position).
  virtual void rope(float* x, int n, int n_heads, int head_dim, const int* positions, float theta,
                    RopeLayout layout) = 0;
  // Writes token t's key and value rows to pool slot slot_mapping[t] (n ints in backend memory):
  //   new_k, new_v (n, kv_dim) -> k_pool, v_pool (num_slots, kv_dim) rows slot_mapping[t]; nothing else
  // changes. A slot outside [0, num_slots): infer::Error on the CPU (nothing written); skipped on CUDA
  // (Transformer::forward validates the batch before any op runs).
  virtual void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool,
                        const int* slot_mapping, int n, int kv_dim, int num_slots) = 0;
  // Causal attention of n new queries of ONE sequence against a contiguous cache, which already holds
  // positions [0, start_pos + n) for this layer (ch05's shape; the one-sequence case of paged_attention).
  //   q (n, n_heads, head_dim); k_cache, v_cache (max_seq, n_kv_heads, head_dim); out (n, n_heads, head_dim)
  // Query head h reads kv head h / (n_heads / n_kv_heads) (GQA). Query t sees positions <= start_pos + t.
  virtual void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n,
                         int start_pos, int n_heads, int n_kv_heads, int head_dim) = 0;
  // Causal attention of a ragged batch (BatchView) against a paged pool of one layer:
  //   q (n_tokens, n_heads, head_dim); k_pool, v_pool (num_blocks, block_size, n_kv_heads, head_dim);
  //   out (n_tokens, n_heads, head_dim). Token t of sequence s, at position p = positions[t], attends over
  //   positions [0, p] of sequence s, position i living in slot block_table(s)[i / block_size] * block_size
  //   + i % block_size. GQA as in attention(). On the CPU a query's result does not depend on the rest of
  //   the batch (the same bits alone or batched).
  virtual void paged_attention(const float* q, const float* k_pool, const float* v_pool, float* out,
                               const BatchView& batch, int n_heads, int n_kv_heads, int head_dim) = 0;
  // ---- the int8 KV cache (KVDType::int8) ----------------------------------------------------------
  // A backend without these ops keeps the defaults: supports_int8_kv() false, and PagedKVCache refuses an
  // int8 cache on it up front (never a silent fallback to f32); the ops themselves throw infer::Error.
  virtual bool supports_int8_kv() const { return false; }
  // store_kv for an int8 pool: token t's K and V rows are quantized per kv head (scale = max|x| / 127)
  // into slot slot_mapping[t]. Slot checks as store_kv.
  virtual void store_kv_int8(const float* new_k, const float* new_v, const Int8KVLayer& pool, const int* slot_mapping,
                             int n, int n_kv_heads, int head_dim, int num_slots);
  // paged_attention over an int8 pool (shapes as paged_attention): the rows are dequantized inside the
  // kernel, each row's scale applied once per score and once per weighted V row.
  virtual void paged_attention_int8(const float* q, const Int8KVLayer& pool, float* out, const BatchView& batch,
                                    int n_heads, int n_kv_heads, int head_dim);

  // gate (count) = silu(gate) * up
  virtual void silu_mul(float* gate, const float* up, size_t count) = 0;
  // x (count) += y
  virtual void add(float* x, const float* y, size_t count) = 0;
  // dst (count) = src, both in backend memory.
  virtual void copy(float* dst, const float* src, size_t count) = 0;
};

// RAII array of T in a backend's memory.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  // A count whose byte size does not fit in size_t asks for SIZE_MAX bytes, which every backend
  // refuses, rather than wrapping around to a small allocation.
  DeviceArray(Backend& backend, size_t count)
      : backend_(&backend),
        data_(static_cast<T*>(backend.allocate(count > SIZE_MAX / sizeof(T) ? SIZE_MAX : count * sizeof(T)))),
        count_(count) {}
  ~DeviceArray() { reset(); }
  DeviceArray(DeviceArray&& other) noexcept { *this = std::move(other); }
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    if (this != &other) {
      reset();
      backend_ = other.backend_;
      data_ = other.data_;
      count_ = other.count_;
      other.data_ = nullptr;
      other.count_ = 0;
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }
  void reset() {
    if (data_ != nullptr) backend_->release(data_);
    data_ = nullptr;
    count_ = 0;
  }

 private:
  Backend* backend_ = nullptr;
  T* data_ = nullptr;
  size_t count_ = 0;
};

// The OpenMP CPU backend. threads <= 0 uses every core.
// layout: "auto" (interleaved where the CPU runs the v9 kernels), "interleaved" or "rows" (row-major,
// the file's layout: the kernels of quant_kernels.h); anything else throws infer::Error.
std::unique_ptr<Backend> make_cpu_backend(int threads, const std::string& layout = "auto");
// The CUDA backend on device 0 (src/cuda/). Throws infer::Error saying why when this build has no
// CUDA or no device is usable.
std::unique_ptr<Backend> make_cuda_backend();
// Empty when a CUDA device is usable; otherwise why not: "this build has no CUDA ..." or the CUDA
// runtime's error (no device, driver missing or too old). Asks the runtime each time; cheap.
std::string cuda_unavailable_reason();
// "cpu" or "cuda"; throws infer::Error naming the device when it is unknown or unavailable.
// weight_layout: the CPU's (make_cpu_backend); CUDA keeps every matrix row-major.
std::unique_ptr<Backend> make_backend(const std::string& device, int threads, const std::string& weight_layout = "auto");

}  // namespace infer
