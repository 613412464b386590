// test_resources.cpp: work that cannot fit in memory is refused up front, naming the sizes.
//
// The weights' resident size is computed from the config before anything is converted, so it must
// equal what loading then holds; a model or a KV cache larger than the memory available is refused
// by the constructor (before any allocation), and the CPU backend's allocate throws instead of
// overcommitting (or aborting under ASan) on an impossible request.
#include "infer/model/backend.h"
#include "infer/core/error.h"
#include "infer/model/kv_cache.h"
#include "infer/core/memory_budget.h"
#include "infer/formats/synthetic.h"
#include "infer/model/weights.h"
#include "enormous_model.h"
#include "test_util.h"

#include <string>

using namespace infer;

using infer::test::enormous_model_file;

TEST_CASE("format_bytes and check_fits_in_memory name both sizes") {
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(uint64_t(3) << 30) == "3.00 GiB");
  CHECK_NOTHROW(check_fits_in_memory("x", 100, 100, "cpu"));
  try {
    check_fits_in_memory("the weights", uint64_t(5) << 30, uint64_t(2) << 30, "cpu");
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    CHECK(std::string(error.what()) ==
          "the weights needs 5.00 GiB (5368709120 bytes) but only 2.00 GiB (2147483648 bytes) of cpu memory is available");
  }
}

TEST_CASE("available_host_memory reads a plausible MemAvailable") {
  const uint64_t available = available_host_memory();
  CHECK(available > (uint64_t(16) << 20));  // a machine that runs the tests has more than 16 MiB free
  CHECK(available < (uint64_t(1) << 50));   // and less than a pebibyte
}

TEST_CASE("Weights::resident_bytes_for equals what loading holds, in every format and layout, tied or not") {
  // "tiny" has row counts that are not multiples of 16, so the padded 16-row layouts hold more than row-major.
  for (const char* layout : {"auto", "interleaved", "rows"}) {
    auto backend = make_cpu_backend(1, layout);
    for (bool tied : {true, false}) {
      ModelConfig config = synthetic_preset("tiny");
      config.tied_embeddings = tied;
      const ModelFile file = model_file_from_synthetic(make_synthetic_model(config, 7));
      for (WeightFormat format : {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16, WeightFormat::Q8_0}) {
        CAPTURE(layout);
        CAPTURE(tied);
        CAPTURE(weight_format_name(format));
        Weights weights(file, format, *backend);
        CHECK(Weights::resident_bytes_for(config, format, backend.get()) == weights.resident_bytes());
        if (std::string(layout) == "rows") CHECK(Weights::resident_bytes_for(config, format) == weights.resident_bytes());
      }
    }
  }
}

TEST_CASE("a model larger than the available memory is refused before anything is converted") {
  std::vector<uint8_t> backing;
  const ModelFile file = enormous_model_file(backing);
  auto backend = make_cpu_backend(1);
  const uint64_t needed = Weights::resident_bytes_for(file.config, WeightFormat::F32);
  REQUIRE(needed > backend->available_memory());  // otherwise this machine could load it and the test means nothing
  try {
    Weights weights(file, WeightFormat::F32, *backend);
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CHECK(message.find("<enormous model>: the weights in f32 needs " + format_bytes(needed)) == 0);
    CHECK(message.find(std::to_string(needed) + " bytes") != std::string::npos);
    CHECK(message.find("of cpu memory is available") != std::string::npos);
  }
}

TEST_CASE("a KV cache larger than the available memory is refused up front") {
  const ModelConfig config = synthetic_preset("tiny");
  auto backend = make_cpu_backend(1);
  // 2^31 - 1 positions of 2 * n_layers * kv_dim * 4 bytes each: hundreds of GiB even for "tiny".
  const int positions = 2147483647;
  const uint64_t per_position = 2ull * config.n_layers * config.kv_dim() * sizeof(float);
  REQUIRE(per_position * positions > backend->available_memory());
  try {
    KVCache cache(*backend, config, positions);
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CHECK(message.find("KV cache: 2147483647 positions x " + format_bytes(per_position) + " per position needs " +
                       format_bytes(per_position * positions)) == 0);
  }
  // A cache that fits is still built.
  KVCache small(*backend, config, 8);
  CHECK(small.capacity_bytes() == per_position * 8);
}

TEST_CASE("cpu allocate throws infer::Error naming the size instead of overcommitting or aborting") {
  auto backend = make_cpu_backend(1);
  const size_t impossible = size_t(1) << 60;  // 1 EiB
  try {
    backend->allocate(impossible);
    FAIL("expected infer::Error");
  } catch (const Error& error) {
    const std::string message = error.what();
    CHECK(message.find("cpu: out of memory allocating 1.00 EiB (1152921504606846976 bytes)") == 0);
  }
  CHECK_THROWS_AS(backend->allocate(SIZE_MAX), Error);  // the 64-byte rounding must not wrap around
  // A count whose byte size overflows size_t must not wrap around to a small allocation either.
  CHECK_THROWS_AS(DeviceArray<float>(*backend, SIZE_MAX / 2), Error);
  void* small = backend->allocate(100);
  CHECK(small != nullptr);
  backend->release(small);
}
