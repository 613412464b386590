// gemm.cu: matrix multiplication on the GPU, ch03's compute ceiling and the backend's prefill matmul.
//
// ch03's ladder, row-major fp32, C (m, n) = A (m, k) . B (k, n):
//   v1_naive:  one thread per C element, a k-long dot product straight from global memory. Every
//              element of A and B is loaded from memory (or L2) n or m times: bound by memory traffic.
//   v2_tiled:  a block computes a 32x32 tile of C; A and B are staged through shared memory 32x32 tiles
//              at a time, so each loaded element is reused 32 times from shared memory instead of
//              being fetched again: 32x less global traffic, still CUDA cores.
//   v3_cublas: cublasGemmEx. fp32 (CUDA cores, CUBLAS_COMPUTE_32F without TF32) shows how far a tuned
//              kernel goes past v2; fp16/bf16 inputs run on the tensor cores with fp32 accumulation,
//              the rate inference engines actually get.
// cuBLAS is column-major. A row-major (r, c) matrix is the column-major (c, r) matrix, its transpose,
// so row-major C = A B is computed as column-major C^T = B^T A^T: swap the operands, no copy.
//
// The backend's prefill matmul (n > 1 tokens), y (n, rows) = x (n, cols) . W^T, W row-major (rows, cols):
// in column-major terms W is W^T (cols, rows) with leading dimension cols, x is x^T (cols, n) and y
// is y^T (rows, n), so y^T = op(W^T) x^T with op = transpose: cublasGemmEx(OP_T, OP_N, m = rows,
// n = tokens, k = cols, A = W (lda = cols), B = x (ldb = cols), C = y (ldc = rows)).
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

#include <string>

namespace infer::cuda {
namespace {

// ---- v1: one thread per element ---------------------------------------------------------------------
constexpr int kNaiveBlock = 16;

__global__ void gemm_v1_naive_kernel(const float* a, const float* b, float* c, int m, int n, int k) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;  // column of C: adjacent threads, adjacent B reads
  const int i = blockIdx.y * blockDim.y + threadIdx.y;  // row of C
  if (i >= m || j >= n) return;
  float sum = 0.0f;
  for (int p = 0; p < k; ++p) sum += a[size_t(i) * k + p] * b[size_t(p) * n + j];
  c[size_t(i) * n + j] = sum;
}

// ---- v2: shared-memory tiles ------------------------------------------------------------------------
constexpr int kTile = 32;

__global__ void gemm_v2_tiled_kernel(const float* a, const float* b, float* c, int m, int n, int k) {
  // No bank conflicts: a warp is 32 consecutive tx with one ty, so in the inner loop it reads one
  // a_tile element (a broadcast) and one b_tile row (32 consecutive banks).
  __shared__ float a_tile[kTile][kTile];  // A[i0 .. i0+32, p0 .. p0+32]
  __shared__ float b_tile[kTile][kTile];  // B[p0 .. p0+32, j0 .. j0+32]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int i = blockIdx.y * kTile + ty;  // row of C
  const int j = blockIdx.x * kTile + tx;  // column of C
  float sum = 0.0f;
  for (int p0 = 0; p0 < k; p0 += kTile) {
    // Each thread loads one element of each tile; outside the matrices it loads 0, which adds nothing.
    a_tile[ty][tx] = (i < m && p0 + tx < k) ? a[size_t(i) * k + p0 + tx] : 0.0f;
    b_tile[ty][tx] = (p0 + ty < k && j < n) ? b[size_t(p0 + ty) * n + j] : 0.0f;
    __syncthreads();
    for (int p = 0; p < kTile; ++p) sum += a_tile[ty][p] * b_tile[p][tx];
    __syncthreads();  // the next iteration overwrites the tiles
  }
  if (i < m && j < n) c[size_t(i) * n + j] = sum;
}

cudaDataType_t cuda_type(DType type) {
  switch (type) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    default: throw_error("cuda gemm: only f32, f16 and bf16 matrices are supported");
  }
}

void check_shape(const char* what, int m, int n, int k) {
  if (m < 0 || n < 0 || k < 0)
    throw_error(std::string(what) + ": negative shape (" + std::to_string(m) + ", " + std::to_string(n) + ", " +
                std::to_string(k) + ")");
}

}  // namespace

void gemm_v1_naive(const float* a, const float* b, float* c, int m, int n, int k, cudaStream_t stream) {
  check_shape("cuda gemm_v1_naive", m, n, k);
  if (m == 0 || n == 0) return;
  if ((m + kNaiveBlock - 1) / kNaiveBlock > 65535) throw_error("cuda gemm_v1_naive: m too large for grid y");
  const dim3 block(kNaiveBlock, kNaiveBlock);
  const dim3 grid(unsigned((n + kNaiveBlock - 1) / kNaiveBlock), unsigned((m + kNaiveBlock - 1) / kNaiveBlock));
  gemm_v1_naive_kernel<<<grid, block, 0, stream>>>(a, b, c, m, n, k);
  CUDA_CHECK_LAUNCH();
}

void gemm_v2_tiled(const float* a, const float* b, float* c, int m, int n, int k, cudaStream_t stream) {
  check_shape("cuda gemm_v2_tiled", m, n, k);
  if (m == 0 || n == 0) return;
  if ((m + kTile - 1) / kTile > 65535) throw_error("cuda gemm_v2_tiled: m too large for grid y");
  const dim3 block(kTile, kTile);  // 1024 threads, one C element each
  const dim3 grid(unsigned((n + kTile - 1) / kTile), unsigned((m + kTile - 1) / kTile));
  gemm_v2_tiled_kernel<<<grid, block, 0, stream>>>(a, b, c, m, n, k);
  CUDA_CHECK_LAUNCH();
}

void gemm_v3_cublas(cublasHandle_t handle, DType type, const void* a, const void* b, void* c, int m, int n, int k) {
  check_shape("cuda gemm_v3_cublas", m, n, k);
  if (m == 0 || n == 0) return;
  const cudaDataType_t t = cuda_type(type);
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major C^T (n, m) = B^T (n, k) . A^T (k, m); leading dimensions are the row lengths.
  CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, b, t, n, a, t, k, &beta, c, t, n,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void matmul_cublas(cublasHandle_t handle, const Matrix& weight, const void* x, float* y, int n) {
  if (n <= 0 || weight.rows <= 0 || weight.cols <= 0) return;
  const cudaDataType_t t = cuda_type(weight.dtype);
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, weight.rows, n, weight.cols, &alpha, weight.data, t,
                            weight.cols, x, t, weight.cols, &beta, y, CUDA_R_32F, weight.rows, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

}  // namespace infer::cuda
