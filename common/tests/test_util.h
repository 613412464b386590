// test_util.h: helpers shared by the engine's tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace infer::test {

// ../shared/models beside the repository (the project never commits model files).
inline std::filesystem::path shared_models_dir() {
  return std::filesystem::path(INFER_SOURCE_DIR) / ".." / "shared" / "models";
}
// models/ in the repository (scripts/fetch_models.sh puts SmolLM2 there; git-ignored).
inline std::filesystem::path project_models_dir() { return std::filesystem::path(INFER_SOURCE_DIR) / "models"; }
inline std::filesystem::path smollm2_path() {
  return project_models_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

// A fresh scratch directory under the build tree, one per test name.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(INFER_BINARY_DIR) / "test_scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Marks the test as skipped with a message saying why (doctest has no runtime skip, so the
// message is printed and the case returns early; ctest shows it in the output).
#define INFER_SKIP(reason)                                  \
  do {                                                      \
    MESSAGE("SKIPPED: " << reason);                         \
    return;                                                 \
  } while (0)

// Seeded uniform floats in [lo, hi).
inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (auto& x : out) x = dist(rng);
  return out;
}

}  // namespace infer::test
