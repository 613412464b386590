// cuda_check.h (private): the one CUDA_CHECK / CUBLAS_CHECK pair of the engine.
//
// Every CUDA runtime and cuBLAS call is wrapped; a failure throws infer::Error naming the call, the
// file and line, and CUDA's own error name and string. Kernel launches are followed by
// CUDA_CHECK_LAUNCH(), which catches bad launch configurations at once (a fault inside a running
// kernel surfaces at the next synchronising call, which is checked too).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

namespace infer::cuda {

// Throws infer::Error(message). The .cu files report bad arguments through this rather than
// infer::fail, whose compile-time format checking nvcc cannot compile.
[[noreturn]] void throw_error(const std::string& message);

// Throws infer::Error("<what> failed at <file>:<line>: <name>: <description>"). Defined in
// cuda_check.cpp so the kernels' .cu files need no fmt.
[[noreturn]] void throw_cuda_error(const char* what, const char* file, int line, const char* name,
                                   const char* description);

}  // namespace infer::cuda

#define CUDA_CHECK(call)                                                                                       \
  do {                                                                                                         \
    const cudaError_t cuda_check_status = (call);                                                              \
    if (cuda_check_status != cudaSuccess)                                                                      \
      ::infer::cuda::throw_cuda_error(#call, __FILE__, __LINE__, cudaGetErrorName(cuda_check_status),          \
                                      cudaGetErrorString(cuda_check_status));                                  \
  } while (0)

#define CUBLAS_CHECK(call)                                                                                     \
  do {                                                                                                         \
    const cublasStatus_t cublas_check_status = (call);                                                         \
    if (cublas_check_status != CUBLAS_STATUS_SUCCESS)                                                          \
      ::infer::cuda::throw_cuda_error(#call, __FILE__, __LINE__, cublasGetStatusName(cublas_check_status),     \
                                      cublasGetStatusString(cublas_check_status));                             \
  } while (0)

// After every <<<...>>> launch: a bad grid, block or shared-memory size is reported here.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
