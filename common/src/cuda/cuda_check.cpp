// cuda_check.cpp: the error path of CUDA_CHECK / CUBLAS_CHECK.
#include "cuda_check.h"

#include "infer/core/error.h"

namespace infer::cuda {

void throw_error(const std::string& message) { throw Error(message); }

void throw_cuda_error(const char* what, const char* file, int line, const char* name, const char* description) {
  fail("CUDA: {} failed at {}:{}: {}: {}", what, file, line, name != nullptr ? name : "?",
       description != nullptr ? description : "?");
}

}  // namespace infer::cuda
