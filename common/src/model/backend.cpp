// backend.cpp: choosing a backend by name (--device), and the CUDA entry points of a CPU-only build.
#include "infer/model/backend.h"

#include "infer/core/error.h"

namespace infer {

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_backend(threads);
  if (device == "cuda") return make_cuda_backend();
  fail("unknown device '{}' (expected cpu or cuda)", device);
}

#if !INFER_HAVE_CUDA
// A build without nvcc has no src/cuda/: these say so instead of failing to link.
std::string cuda_unavailable_reason() {
  return "this binary was built without CUDA (configure with -DINFER_CUDA=ON, or the cuda preset, on a machine "
         "with nvcc)";
}

std::unique_ptr<Backend> make_cuda_backend() { fail("--device cuda: {}", cuda_unavailable_reason()); }
#endif

}  // namespace infer
