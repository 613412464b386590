// gpu_hardware_cpu.cpp: gpu_hardware.h in a build without CUDA (src/cuda/gpu_hardware.cpp otherwise).
#include "infer/app/gpu_hardware.h"

#include "infer/core/error.h"

namespace infer {

#if !INFER_HAVE_CUDA
namespace {
[[noreturn]] void no_cuda(const char* what) {
  fail("{}: no CUDA in this build (configure with -DINFER_CUDA=ON, or the cuda preset, on a machine with nvcc)", what);
}
}  // namespace

GpuInfo query_gpu() { no_cuda("query_gpu"); }
GpuBandwidthResult measure_gpu_copy_bandwidth(size_t, int) { no_cuda("measure_gpu_copy_bandwidth"); }
std::vector<std::string> gpu_gemm_variants() { return {}; }
GpuGemmResult measure_gpu_gemm(const std::string&, int, int) { no_cuda("measure_gpu_gemm"); }
std::vector<std::string> gpu_matmul_kernels(const std::string&, int) { return {}; }
GpuMatmulResult measure_gpu_matmul(const std::string&, const std::string&, int, int, int, int) {
  no_cuda("measure_gpu_matmul");
}
#endif

}  // namespace infer
