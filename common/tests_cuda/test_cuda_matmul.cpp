// test_cuda_matmul.cpp: the decode GEMV (every version), the backend's matmul (GEMV for one token,
// cuBLAS for more) and ch03's GEMM ladder, against the CPU on the same stored weights.
//
// Error bound used throughout: an fp32 dot product of k terms, summed in any order, is within
// gamma = k * u of the exact value, relative to S = sum |w_c x_c| (u = 2^-24 for round-to-nearest;
// 2^-23 where tensor cores may truncate). Two sides: 2 (k + 2) 2^-23 S. When the GPU rounds x to
// fp16/bf16 for the tensor-core GEMM, each x_c moves by at most u_x |x_c| (u_x = 2^-11 fp16, 2^-8
// bf16) plus 2^-25 absolute for fp16 subnormals, which adds u_x S + 2^-25 sum |w_c|.
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "cuda_test_util.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/app/hardware.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

using namespace infer;
using namespace infer::test;

namespace {

double activation_rounding(DType dtype) {
  return dtype == DType::F16 ? 1.0 / 2048.0 : (dtype == DType::BF16 ? 1.0 / 256.0 : 0.0);
}

// Per-element bounds for y (n, rows) = x (n, cols) . W^T (see the file header).
std::vector<double> matmul_bounds(const std::vector<float>& w, const std::vector<float>& x, int n, int rows, int cols,
                                  double x_rounding, bool fp16_subnormals) {
  std::vector<double> bound(size_t(n) * rows);
  for (int t = 0; t < n; ++t) {
    for (int r = 0; r < rows; ++r) {
      double s = 0.0, w_sum = 0.0;
      for (int c = 0; c < cols; ++c) {
        s += std::fabs(double(w[size_t(r) * cols + c]) * x[size_t(t) * cols + c]);
        w_sum += std::fabs(double(w[size_t(r) * cols + c]));
      }
      bound[size_t(t) * rows + r] =
          2.0 * (cols + 2) * kUlp23 * s + x_rounding * s + (fp16_subnormals ? w_sum / 33554432.0 : 0.0);
    }
  }
  return bound;
}

struct MatmulShape { int rows, cols; };
// cols 5, 1000, 4100 leave no whole 16-byte chunks for fp16 rows (v3 falls back); 64, 2048 do.
const MatmulShape kShapes[] = {{1, 1}, {7, 5}, {33, 64}, {100, 96}, {257, 1000}, {511, 2048}, {1030, 4100}};

}  // namespace

TEST_CASE("cuda gemv v1/v2/v3 == cpu matmul (n = 1) for f32, f16, bf16 weights") {
  BothBackends b;
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (const MatmulShape& s : kShapes) {
      StoredMatrix w = stored_matrix(*b.cuda, dtype, s.rows, s.cols, 1000 + s.rows);
      const std::vector<float> x = random_floats(s.cols, 2000 + s.cols);
      auto x_cuda = to_backend(*b.cuda, x);
      std::vector<float> expected(s.rows);
      const std::vector<uint8_t> bytes = stored_bytes(dtype, s.rows, s.cols, 1000 + s.rows, nullptr);
      cpu::matmul(Matrix{dtype, s.rows, s.cols, bytes.data()}, x.data(), expected.data(), 1, 2);
      const auto bounds = matmul_bounds(w.values, x, 1, s.rows, s.cols, 0.0, false);

      const bool whole_chunks = (size_t(s.cols) * (dtype == DType::F32 ? 4 : 2)) % 16 == 0;
      CHECK(cuda::gemv_v3_supported(w.matrix, x_cuda.data()) == whole_chunks);
      for (cuda::GemvVersion version :
           {cuda::GemvVersion::V1ThreadPerRow, cuda::GemvVersion::V2WarpPerRow, cuda::GemvVersion::V3Vectorized}) {
        if (version == cuda::GemvVersion::V3Vectorized && !whole_chunks) {
          CHECK_THROWS_AS(cuda::gemv(version, w.matrix, x_cuda.data(), nullptr, nullptr), Error);
          continue;
        }
        DeviceArray<float> y(*b.cuda, s.rows);
        b.cuda->synchronize();  // the backend zero-fills on its own stream; this launch uses the default one
        cuda::gemv(version, w.matrix, x_cuda.data(), y.data(), nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());
        check_within(from_backend(*b.cuda, y), expected, bounds,
                     fmt::format("gemv {} {} rows {} cols {}", cuda::gemv_version_name(version), dtype_name(dtype),
                                 s.rows, s.cols));
      }
    }
  }
}

TEST_CASE("cuda matmul == cpu matmul for 1 to 33 tokens (GEMV and cuBLAS), f32, f16, bf16 weights") {
  BothBackends b;
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (const MatmulShape& s : kShapes) {
      for (int n : {1, 2, 7, 33}) {
        StoredMatrix w = stored_matrix(*b.cuda, dtype, s.rows, s.cols, 3000 + s.cols);
        const std::vector<uint8_t> bytes = stored_bytes(dtype, s.rows, s.cols, 3000 + s.cols, nullptr);
        const std::vector<float> x = random_floats(size_t(n) * s.cols, 4000 + n);
        auto x_cuda = to_backend(*b.cuda, x);
        DeviceArray<float> y(*b.cuda, size_t(n) * s.rows);
        b.cuda->matmul(w.matrix, x_cuda.data(), y.data(), n);
        std::vector<float> expected(size_t(n) * s.rows);
        b.cpu->matmul(Matrix{dtype, s.rows, s.cols, bytes.data()}, x.data(), expected.data(), n);
        // One token: the GEMV reads x in fp32. More: cuBLAS, with x rounded to the weights' type.
        const double x_rounding = n > 1 ? activation_rounding(dtype) : 0.0;
        const auto bounds = matmul_bounds(w.values, x, n, s.rows, s.cols, x_rounding, n > 1 && dtype == DType::F16);
        check_within(from_backend(*b.cuda, y), expected, bounds,
                     fmt::format("matmul {} rows {} cols {} n {}", dtype_name(dtype), s.rows, s.cols, n));
      }
    }
  }
  // Q8_0 / Q4_0 / Q4_1 weights, and the refusal of the block formats without a CUDA kernel:
  // test_cuda_quant.cpp.
}

TEST_CASE("ch03 GEMM ladder: v1_naive, v2_tiled, v3_cublas (fp32, fp16, bf16) == cpu gemm") {
  BothBackends b;  // for its allocations; the kernels run on the default stream
  cublasHandle_t handle = nullptr;
  REQUIRE(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS);
  struct Shape { int m, n, k; };
  const Shape shapes[] = {{1, 1, 1}, {17, 33, 65}, {64, 64, 64}, {100, 37, 300}, {257, 129, 31}};
  for (const Shape& s : shapes) {
    for (const char* variant : {"v1_naive", "v2_tiled", "v3_cublas_fp32", "v3_cublas_fp16", "v3_cublas_bf16"}) {
      const std::string name = variant;
      const DType dtype = name == "v3_cublas_fp16" ? DType::F16 : (name == "v3_cublas_bf16" ? DType::BF16 : DType::F32);
      std::vector<float> a, bm;  // what the stored inputs are worth in fp32
      const auto a_bytes = stored_bytes(dtype, s.m, s.k, 5000 + s.m, &a);
      const auto b_bytes = stored_bytes(dtype, s.k, s.n, 6000 + s.n, &bm);
      auto a_cuda = to_backend(*b.cuda, a_bytes), b_cuda = to_backend(*b.cuda, b_bytes);
      DeviceArray<uint8_t> c_cuda(*b.cuda, dtype_row_bytes(dtype, int64_t(s.m) * s.n));
      b.cuda->synchronize();
      const auto* a_f = reinterpret_cast<const float*>(a_cuda.data());
      const auto* b_f = reinterpret_cast<const float*>(b_cuda.data());
      auto* c_f = reinterpret_cast<float*>(c_cuda.data());
      if (name == "v1_naive") cuda::gemm_v1_naive(a_f, b_f, c_f, s.m, s.n, s.k, nullptr);
      else if (name == "v2_tiled") cuda::gemm_v2_tiled(a_f, b_f, c_f, s.m, s.n, s.k, nullptr);
      else cuda::gemm_v3_cublas(handle, dtype, a_cuda.data(), b_cuda.data(), c_cuda.data(), s.m, s.n, s.k);
      CUDA_CHECK(cudaDeviceSynchronize());

      std::vector<uint8_t> c_bytes(c_cuda.size());
      b.cuda->download(c_bytes.data(), c_cuda.data(), c_bytes.size());
      std::vector<float> got(size_t(s.m) * s.n);
      dequantize_row(dtype, c_bytes.data(), got.data(), int64_t(got.size()));
      std::vector<float> expected(got.size());
      gemm_v1_naive(a.data(), bm.data(), expected.data(), s.m, s.n, s.k);
      // Sum bound as in the file header (products of fp16/bf16 values are exact in fp32), plus the
      // rounding of a fp16/bf16 C to its type: 2^-11 / 2^-8 relative (2^-25 absolute for fp16 subnormals).
      std::vector<double> bounds(got.size());
      for (int i = 0; i < s.m; ++i) {
        for (int j = 0; j < s.n; ++j) {
          double sum_abs = 0.0;
          for (int p = 0; p < s.k; ++p) sum_abs += std::fabs(double(a[size_t(i) * s.k + p]) * bm[size_t(p) * s.n + j]);
          bounds[size_t(i) * s.n + j] = 2.0 * (s.k + 2) * kUlp23 * sum_abs +
                                        activation_rounding(dtype) * std::fabs(expected[size_t(i) * s.n + j]) +
                                        (dtype == DType::F16 ? 1.0 / 33554432.0 : 0.0);
        }
      }
      check_within(got, expected, bounds, fmt::format("gemm {} m {} n {} k {}", name, s.m, s.n, s.k));
    }
  }
  cublasDestroy(handle);
}
