// backend.cpp: choosing a backend by name (--device), the KV dtype names, the int8 KV ops of a backend that
// has none, and the CUDA entry points of a CPU-only build.
#include "infer/model/backend.h"

#include "infer/core/error.h"

namespace infer {

std::unique_ptr<Backend> make_backend(const std::string& device, int threads, const std::string& weight_layout) {
  if (device == "cpu") return make_cpu_backend(threads, weight_layout);
  if (device == "cuda") return make_cuda_backend();
  fail("unknown device '{}' (expected cpu or cuda)", device);
}

const char* kv_dtype_name(KVDType dtype) { return dtype == KVDType::int8 ? "int8" : "f32"; }

KVDType parse_kv_dtype(const std::string& name) {
  if (name == "f32") return KVDType::f32;
  if (name == "int8") return KVDType::int8;
  fail("unknown KV cache type '{}' (expected f32 or int8)", name);
}

void Backend::store_kv_int8(const float*, const float*, const Int8KVLayer&, const int*, int, int, int, int) {
  fail("{}: the int8 KV cache (--kv-cache int8) is not implemented on this backend; use --kv-cache f32", name());
}

void Backend::paged_attention_int8(const float*, const Int8KVLayer&, float*, const BatchView&, int, int, int) {
  fail("{}: the int8 KV cache (--kv-cache int8) is not implemented on this backend; use --kv-cache f32", name());
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
