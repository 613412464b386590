// test_cuda_memory.cpp: the CUDA backend's memory limits and the debug numerics check on the GPU.
//
//  - available_memory() is the device's free memory (cudaMemGetInfo), so Weights and KVCache refuse
//    what cannot fit before uploading anything (the upload would otherwise fail half-way).
//  - allocate() beyond the device's memory throws infer::Error naming the size and the free/total
//    memory, and leaves the backend usable: the failed cudaMalloc must not be reported again by the
//    next kernel launch's error check.
//  - Transformer::set_check_finite (--check-numerics) reads device activations through download(),
//    which synchronises the backend's stream: silent on a healthy model, exact on an overflow.
#include "cuda_test_util.h"
#include "enormous_model.h"
#include "infer/model/kv_cache.h"
#include "infer/core/memory_budget.h"
#include "infer/formats/synthetic.h"
#include "infer/model/transformer.h"
#include "infer/model/weights.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <string>

using namespace infer;
using namespace infer::test;

namespace {

uint64_t device_total_memory() {
  size_t free_bytes = 0, total_bytes = 0;
  REQUIRE(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess);
  return total_bytes;
}

// x (count) + y (count) on `backend`, downloaded: a kernel launch whose error check would report a
// CUDA error left behind by an earlier failure.
std::vector<float> add_on(Backend& backend, const std::vector<float>& x, const std::vector<float>& y) {
  DeviceArray<float> dx = to_backend(backend, x);
  const DeviceArray<float> dy = to_backend(backend, y);
  backend.add(dx.data(), dy.data(), x.size());
  return from_backend(backend, dx);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("cuda available_memory is the device's free memory and shrinks by what is allocated") {
  auto cuda = make_cuda_backend();
  const uint64_t total = device_total_memory();
  const uint64_t before = cuda->available_memory();
  CHECK(before > 0);
  CHECK(before <= total);
  // 256 MiB taken on the device: the free memory drops by at least that much (less 2 MiB for the
  // allocator's page granularity). Host memory, the default, would not move at all.
  constexpr size_t kBytes = size_t(256) << 20;
  DeviceArray<uint8_t> block(*cuda, kBytes);
  cuda->synchronize();
  const uint64_t after = cuda->available_memory();
  CHECK(after + kBytes <= before + (uint64_t(2) << 20));
}

TEST_CASE("cuda allocate beyond the device's memory throws naming the size, and the backend stays usable") {
  auto cuda = make_cuda_backend();
  const uint64_t total = device_total_memory();
  const size_t count = size_t((total + (uint64_t(1) << 30)) / sizeof(float));  // the whole device + 1 GiB
  const size_t bytes = count * sizeof(float);
  try {
    DeviceArray<float> too_big(*cuda, count);
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CAPTURE(message);
    CHECK(message.find("cuda: out of memory allocating " + format_bytes(bytes) + " (" + std::to_string(bytes) +
                       " bytes); ") == 0);
    CHECK(contains(message, " free of " + format_bytes(total) + " device memory"));
  }
  CHECK_THROWS_AS(cuda->allocate(SIZE_MAX), Error);
  CHECK_THROWS_AS(DeviceArray<float>(*cuda, SIZE_MAX / 2), Error);  // the byte count must not wrap around

  // Still usable: a small allocation, an upload, a kernel launch (whose CUDA_CHECK_LAUNCH reads the
  // last-error slot) and a download. fp32 addition rounds the same on both sides: exact equality.
  const std::vector<float> x = random_floats(1000, 1), y = random_floats(1000, 2);
  std::vector<float> expected(x.size());
  for (size_t i = 0; i < x.size(); ++i) expected[i] = x[i] + y[i];
  std::vector<float> got;
  REQUIRE_NOTHROW(got = add_on(*cuda, x, y));
  CHECK(got == expected);
}

TEST_CASE("cuda: a KV cache larger than the device's free memory is refused up front") {
  auto cuda = make_cuda_backend();
  const ModelConfig config = synthetic_preset("tiny");
  const uint64_t per_position = 2ull * config.n_layers * config.kv_dim() * sizeof(float);
  // The fewest positions that do not fit in the device's free memory (but might in the host's: the
  // check must use the device's).
  const uint64_t positions = cuda->available_memory() / per_position + 1;
  REQUIRE(positions <= uint64_t(std::numeric_limits<int>::max()));
  try {
    KVCache cache(*cuda, config, int(positions));
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CAPTURE(message);
    CHECK(message.find(fmt::format("KV cache: {} positions x {} per position needs {} ({} bytes)", positions,
                                   format_bytes(per_position), format_bytes(per_position * positions),
                                   per_position * positions)) == 0);
    CHECK(contains(message, "of cuda memory is available"));
  }
  KVCache small(*cuda, config, 8);
  CHECK(small.capacity_bytes() == per_position * 8);
}

TEST_CASE("cuda: a model larger than the device's memory is refused before anything is uploaded") {
  std::vector<uint8_t> backing;
  const ModelFile file = enormous_model_file(backing);
  auto cuda = make_cuda_backend();
  const uint64_t needed = Weights::resident_bytes_for(file.config, WeightFormat::F16);
  REQUIRE(needed > device_total_memory());
  const uint64_t free_before = cuda->available_memory();
  try {
    Weights weights(file, WeightFormat::F16, *cuda);
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CAPTURE(message);
    CHECK(message.find("<enormous model>: the weights in f16 needs " + format_bytes(needed)) == 0);
    CHECK(contains(message, "of cuda memory is available"));
  }
  // Nothing was uploaded (and so nothing leaked): the free memory is back where it was, give or
  // take the allocator's 2 MiB page granularity.
  CHECK(cuda->available_memory() + (uint64_t(2) << 20) >= free_before);
}

// ---- --check-numerics on the GPU -------------------------------------------------------------------

namespace {

// Logits of the prompt's last token on the CUDA backend, with the debug check on or off. Four tokens:
// a multi-token pass (cuBLAS GEMMs, attention v1).
std::vector<float> cuda_logits(const ModelFile& file, bool check) {
  auto cuda = make_cuda_backend();
  Weights weights(file, WeightFormat::F32, *cuda);
  const std::vector<int> tokens = {1, 7, 42, 100};
  Transformer transformer(weights, *cuda, int(tokens.size()));
  transformer.set_check_finite(check);
  KVCache cache(*cuda, file.config, int(tokens.size()));
  std::vector<float> logits(size_t(file.config.vocab_size));
  transformer.forward(tokens, 0, cache, logits.data());
  return logits;
}

}  // namespace

TEST_CASE("cuda check_finite: silent on a healthy model, and the logits are unchanged") {
  const ModelFile file = model_file_from_synthetic(make_synthetic_model(synthetic_preset("tiny"), 11));
  const std::vector<float> plain = cuda_logits(file, false);
  std::vector<float> checked;
  CHECK_NOTHROW(checked = cuda_logits(file, true));
  // The check only reads (downloads between ops, on the same stream). The kernels use no atomics and
  // cuBLAS picks the same algorithm for the same shapes, so the logits are bit-identical.
  CHECK(checked == plain);
  for (float x : plain) REQUIRE(std::isfinite(x));
}

TEST_CASE("cuda check_finite: an activation overflowed by a huge norm weight is caught naming the layer and op") {
  // As in test_numerics.cpp: ffn_norm of layer 1 at 1e30 keeps the normalised input, gate and up
  // finite (~1e30, FLT_MAX is 3.4e38); silu(gate) * up (~1e60) is the first non-finite activation.
  SyntheticModel model = make_synthetic_model(synthetic_preset("tiny"), 11);
  for (float& w : model.tensors.at("blk.1.ffn_norm.weight")) w = 1e30f;
  const ModelFile file = model_file_from_synthetic(std::move(model));
  try {
    cuda_logits(file, true);
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CAPTURE(message);
    CHECK(contains(message, "layer 1, after silu(gate) * up: "));
    CHECK(contains(message, "non-finite values"));
  }
}
