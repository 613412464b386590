// gpu_hardware.cpp: the GPU's ceilings for ch03 (query, copy bandwidth, the GEMM ladder), and the matmul
// kernels of one weight matrix timed alone (measure_gpu_matmul: the decode GEMVs' GB/s, f16 vs GGUF blocks).
//
// Peaks are derived the datasheet way from what the device reports:
//   bandwidth = 2 (double data rate) x memory clock x bus width / 8   (H100 SXM: 2 x 2619 MHz x 5120 bit / 8
//               = 3.35 TB/s, the datasheet figure)
//   FLOP/s    = SMs x per-SM rate x SM clock, the per-SM rate from the architecture's whitepaper (table
//               below). cudaDevAttrClockRate is the peak boost clock; NVIDIA's tensor-core figures use a
//               slightly lower one (H100 SXM: 989 TFLOP/s at 1830 MHz), so ours can read a little higher.
#include "cuda_check.h"
#include "cuda_kernels.h"

#include "infer/model/backend.h"
#include "infer/core/dtype.h"
#include "infer/core/error.h"
#include "infer/app/gpu_hardware.h"

#include <algorithm>
#include <random>
#include <vector>

namespace infer {
namespace {

struct PerSmRates {
  int fp32_flops_per_clock;    // 2 x FP32 lanes
  int tensor_flops_per_clock;  // dense fp16/bf16 in, fp32 accumulate
};

// Only the architectures this project builds for (CMAKE_CUDA_ARCHITECTURES 80;90) and their kin;
// anything else reports "n/a" rather than a guess.
PerSmRates per_sm_rates(int major, int minor) {
  if (major == 8 && minor == 0) return {2 * 64, 2048};  // A100: 64 FP32 lanes, 312 TFLOP/s fp16 tensor
  if (major == 9 && minor == 0) return {2 * 128, 4096}; // H100/H200: 128 FP32 lanes, 989 TFLOP/s fp16 tensor
  return {0, 0};
}

int attribute(cudaDeviceAttr which, int device) {
  int value = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&value, which, device));
  return value;
}

void require_device() {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) fail("no usable CUDA device: {}", reason);
}

// CUDA events around a piece of work on `stream`; milliseconds between them.
class EventTimer {
 public:
  EventTimer() {
    CUDA_CHECK(cudaEventCreate(&start_));
    CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(cudaStream_t stream) { CUDA_CHECK(cudaEventRecord(start_, stream)); }
  double stop(cudaStream_t stream) {
    CUDA_CHECK(cudaEventRecord(stop_, stream));
    CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// A device allocation freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) { CUDA_CHECK(cudaMalloc(&data_, std::max<size_t>(bytes, 1))); }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return data_; }

 private:
  void* data_ = nullptr;
};

// Seeded uniform [-1, 1) values stored as `type` (F32, F16, BF16, or blocks of Q8_0, Q4_0, Q4_1), uploaded.
void upload_random(void* device, DType type, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  std::vector<uint8_t> stored(dtype_row_bytes(type, int64_t(count)));
  quantize_row(type, values.data(), stored.data(), int64_t(count));
  CUDA_CHECK(cudaMemcpy(device, stored.data(), stored.size(), cudaMemcpyHostToDevice));
}

}  // namespace

GpuInfo query_gpu() {
  require_device();
  GpuInfo info;
  info.device = 0;
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, info.device));
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.memory_bytes = prop.totalGlobalMem;
  info.l2_bytes = prop.l2CacheSize;
  info.memory_bus_bits = prop.memoryBusWidth;
  // CUDA 13 dropped the clock fields from cudaDeviceProp; the attributes remain (kHz).
  info.sm_clock_mhz = attribute(cudaDevAttrClockRate, info.device) / 1000.0;
  info.memory_clock_mhz = attribute(cudaDevAttrMemoryClockRate, info.device) / 1000.0;
  if (info.memory_clock_mhz > 0 && info.memory_bus_bits > 0)
    info.peak_bandwidth_gb_s = 2.0 * info.memory_clock_mhz * 1e6 * (info.memory_bus_bits / 8.0) / 1e9;
  const PerSmRates rates = per_sm_rates(info.compute_major, info.compute_minor);
  const double sm_hz = info.sm_clock_mhz * 1e6;
  info.peak_fp32_tflops = double(info.sm_count) * rates.fp32_flops_per_clock * sm_hz / 1e12;
  info.peak_tensor_tflops = double(info.sm_count) * rates.tensor_flops_per_clock * sm_hz / 1e12;
  return info;
}

GpuBandwidthResult measure_gpu_copy_bandwidth(size_t bytes, int repetitions) {
  require_device();
  if (bytes == 0 || repetitions <= 0) fail("measure_gpu_copy_bandwidth: bytes and repetitions must be positive");
  DeviceBuffer source(bytes), destination(bytes);
  CUDA_CHECK(cudaMemset(source.get(), 1, bytes));
  CUDA_CHECK(cudaMemset(destination.get(), 0, bytes));
  cudaStream_t stream = nullptr;  // the legacy default stream: cudaMemcpyAsync below is ordered on it
  EventTimer timer;
  CUDA_CHECK(cudaMemcpyAsync(destination.get(), source.get(), bytes, cudaMemcpyDeviceToDevice, stream));  // warm-up
  GpuBandwidthResult result;
  result.bytes = bytes;
  result.ms = 1e300;
  for (int r = 0; r < repetitions; ++r) {
    timer.start(stream);
    CUDA_CHECK(cudaMemcpyAsync(destination.get(), source.get(), bytes, cudaMemcpyDeviceToDevice, stream));
    result.ms = std::min(result.ms, timer.stop(stream));
  }
  result.gb_per_s = 2.0 * double(bytes) / (result.ms * 1e-3) / 1e9;
  return result;
}

std::vector<std::string> gpu_gemm_variants() {
  return {"v1_naive", "v2_tiled", "v3_cublas_fp32", "v3_cublas_fp16", "v3_cublas_bf16"};
}

GpuGemmResult measure_gpu_gemm(const std::string& variant, int n, int repetitions) {
  require_device();
  if (n <= 0 || repetitions <= 0) fail("measure_gpu_gemm: n and repetitions must be positive");
  DType type = DType::F32;
  if (variant == "v3_cublas_fp16") type = DType::F16;
  else if (variant == "v3_cublas_bf16") type = DType::BF16;
  else if (variant != "v1_naive" && variant != "v2_tiled" && variant != "v3_cublas_fp32")
    fail("measure_gpu_gemm: unknown variant '{}' (expected one of v1_naive, v2_tiled, v3_cublas_fp32, "
         "v3_cublas_fp16, v3_cublas_bf16)", variant);

  const size_t count = size_t(n) * size_t(n);
  const size_t bytes = dtype_row_bytes(type, int64_t(count));
  DeviceBuffer a(bytes), b(bytes), c(bytes);
  upload_random(a.get(), type, count, 1);
  upload_random(b.get(), type, count, 2);

  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  if (variant.rfind("v3_cublas", 0) == 0) {
    CUBLAS_CHECK(cublasCreate(&handle));
    CUBLAS_CHECK(cublasSetStream(handle, stream));
    CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));  // fp32 stays fp32 (no TF32)
  }
  auto run = [&] {
    const auto* a_f = static_cast<const float*>(a.get());
    const auto* b_f = static_cast<const float*>(b.get());
    auto* c_f = static_cast<float*>(c.get());
    if (variant == "v1_naive") cuda::gemm_v1_naive(a_f, b_f, c_f, n, n, n, stream);
    else if (variant == "v2_tiled") cuda::gemm_v2_tiled(a_f, b_f, c_f, n, n, n, stream);
    else cuda::gemm_v3_cublas(handle, type, a.get(), b.get(), c.get(), n, n, n);
  };

  GpuGemmResult result;
  result.variant = variant;
  result.ms = 1e300;
  try {
    EventTimer timer;
    run();  // warm-up: cuBLAS picks and loads its kernel here
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int r = 0; r < repetitions; ++r) {
      timer.start(stream);
      run();
      result.ms = std::min(result.ms, timer.stop(stream));
    }
  } catch (...) {
    if (handle != nullptr) cublasDestroy(handle);
    throw;
  }
  if (handle != nullptr) cublasDestroy(handle);
  result.tflops = 2.0 * double(n) * double(n) * double(n) / (result.ms * 1e-3) / 1e12;
  return result;
}

std::vector<std::string> gpu_matmul_kernels(const std::string& dtype, int n) {
  DType type;
  if (!dtype_from_name(dtype, type)) return {};
  const bool quantized = cuda::quant_matmul_supported(type);
  if (!quantized && type != DType::F32 && type != DType::F16 && type != DType::BF16) return {};
  if (n == 1) {
    if (quantized) return {"gemv_quant_v1_warp_per_row", "gemv_quant_v2_staged_16b"};
    return {"gemv_v3_vectorized"};
  }
  if (quantized) return {"gemm_quant_v1_smem_tiles", "gemm_quant_v2_dequant_cublas"};
  return {"cublas"};
}

GpuMatmulResult measure_gpu_matmul(const std::string& dtype, const std::string& kernel, int rows, int cols, int n,
                                   int repetitions) {
  require_device();
  if (rows <= 0 || cols <= 0 || n <= 0 || repetitions <= 0)
    fail("measure_gpu_matmul: rows, cols, n and repetitions must be positive");
  const std::vector<std::string> kernels = gpu_matmul_kernels(dtype, n);
  if (std::find(kernels.begin(), kernels.end(), kernel) == kernels.end())
    fail("measure_gpu_matmul: no kernel '{}' for dtype '{}' and n = {}", kernel, dtype, n);
  DType type = DType::F32;
  dtype_from_name(dtype, type);
  if (cols % dtype_block_size(type) != 0)
    fail("measure_gpu_matmul: cols {} is not a multiple of {}'s block size", cols, dtype);
  const size_t weight_bytes = dtype_row_bytes(type, int64_t(rows) * cols);
  DeviceBuffer w(weight_bytes), x(size_t(n) * cols * sizeof(float)), y(size_t(n) * rows * sizeof(float));
  upload_random(w.get(), type, size_t(rows) * cols, 3);
  upload_random(x.get(), DType::F32, size_t(n) * cols, 4);
  const Matrix matrix{type, rows, cols, w.get()};
  // fp16/bf16 weights: cuBLAS takes x in the weights' type (the backend rounds it; here random values).
  DeviceBuffer x_half(type == DType::F16 || type == DType::BF16 ? size_t(n) * cols * 2 : 1);
  if (type == DType::F16 || type == DType::BF16) upload_random(x_half.get(), type, size_t(n) * cols, 4);
  const size_t workspace_bytes = cuda::gemm_quant_workspace_bytes(cuda::GemmQuantVersion::V2DequantCublas, matrix);
  DeviceBuffer workspace(cuda::quant_matmul_supported(type) ? workspace_bytes : 1);
  int l2_bytes = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, 0));
  const size_t flush_bytes = std::max<size_t>(size_t(2) * size_t(l2_bytes), size_t(64) << 20);
  DeviceBuffer flush(flush_bytes);

  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  CUBLAS_CHECK(cublasCreate(&handle));
  GpuMatmulResult result;
  result.kernel = kernel;
  result.ms = 1e300;
  try {
    CUBLAS_CHECK(cublasSetStream(handle, stream));
    CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
    const auto* xf = static_cast<const float*>(x.get());
    auto* yf = static_cast<float*>(y.get());
    auto run = [&] {
      if (kernel == "gemv_v3_vectorized")
        cuda::gemv(cuda::GemvVersion::V3Vectorized, matrix, xf, yf, stream);
      else if (kernel == "gemv_quant_v1_warp_per_row")
        cuda::gemv_quant(cuda::GemvQuantVersion::V1WarpPerRow, matrix, xf, yf, stream);
      else if (kernel == "gemv_quant_v2_staged_16b")
        cuda::gemv_quant(cuda::GemvQuantVersion::V2Staged16B, matrix, xf, yf, stream);
      else if (kernel == "gemm_quant_v1_smem_tiles")
        cuda::gemm_quant(cuda::GemmQuantVersion::V1SmemTiles, handle, matrix, xf, yf, n, nullptr, 0, stream);
      else if (kernel == "gemm_quant_v2_dequant_cublas")
        cuda::gemm_quant(cuda::GemmQuantVersion::V2DequantCublas, handle, matrix, xf, yf, n, workspace.get(),
                         workspace_bytes, stream);
      else cuda::matmul_cublas(handle, matrix, type == DType::F32 ? x.get() : x_half.get(), yf, n);
    };
    EventTimer timer;
    run();  // warm-up (cuBLAS picks its kernel here)
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int r = 0; r < repetitions; ++r) {
      CUDA_CHECK(cudaMemsetAsync(flush.get(), r & 0xff, flush_bytes, stream));  // evicts W from L2
      timer.start(stream);
      run();
      result.ms = std::min(result.ms, timer.stop(stream));
    }
  } catch (...) {
    cublasDestroy(handle);
    throw;
  }
  cublasDestroy(handle);
  const double moved = double(weight_bytes) + double(n) * (double(cols) + double(rows)) * 4.0;
  result.gb_per_s = moved / (result.ms * 1e-3) / 1e9;
  result.tflops = 2.0 * double(n) * double(rows) * double(cols) / (result.ms * 1e-3) / 1e12;
  return result;
}

}  // namespace infer
