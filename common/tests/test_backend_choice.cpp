// test_backend_choice.cpp: make_backend by name, and the clear errors when a device is not there.
#include "infer/model/backend.h"
#include "infer/core/error.h"
#include "infer/app/gpu_hardware.h"
#include "test_util.h"

#include <string>

using namespace infer;

TEST_CASE("make_backend: cpu works, unknown names and an unusable cuda throw infer::Error saying why") {
  CHECK(make_backend("cpu", 1)->name() == "cpu");
  CHECK_THROWS_WITH_AS(make_backend("tpu", 1), doctest::Contains("unknown device 'tpu'"), Error);

  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) {
    // A CPU-only build, or a CUDA build on a machine without a GPU (this one, CI).
    CHECK_THROWS_WITH_AS(make_backend("cuda", 1), doctest::Contains(reason.c_str()), Error);
    CHECK_THROWS_AS(query_gpu(), Error);
  } else {
    CHECK(make_backend("cuda", 1)->name() == "cuda");  // covered in depth by cuda_tests
  }
#if !INFER_HAVE_CUDA
  CHECK(reason.find("without CUDA") != std::string::npos);
  CHECK(gpu_gemm_variants().empty());
#endif
}
