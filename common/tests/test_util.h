// test_util.h: helpers shared by the engine's tests (common_tests, the lab tests, cuda_tests).
//
// Model files the project does not ship are found through infer::find_model_file (the search order of
// infer/core/model_search.h: INFER_MODELS_DIR, models/, ../shared/models/). A test that needs one says so
// with INFER_MODEL_FILE(var, "name"); when the file is absent the test is skipped naming the file, or, with
// INFER_REQUIRE_MODELS=1 (CI), it fails naming the file (see model_or_report_missing below).
#pragma once

#include "infer/core/model_search.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace infer::test {

// ---- Skips ---------------------------------------------------------------------------------------
// doctest has no runtime skip. INFER_SKIP(reason) records the reason and returns from the test case;
// SkipListener (registered by every test runner's main) prints "SKIPPED: <reason>" when the case ends,
// which ctest's SKIP_REGULAR_EXPRESSION reports as skipped. It does so only when nothing in the case
// failed: a failed check before the skip keeps the case failed (ctest would otherwise report "Skipped"
// for any output containing the word, whatever the exit status).

inline std::string& pending_skip_reason() {
  static std::string reason;
  return reason;
}

inline void note_skip(const std::string& reason) { pending_skip_reason() = reason; }

#define INFER_SKIP(reason)                                    \
  do {                                                        \
    std::ostringstream infer_skip_stream_;                    \
    infer_skip_stream_ << reason;                             \
    ::infer::test::note_skip(infer_skip_stream_.str());       \
    return;                                                   \
  } while (0)

struct SkipListener : doctest::IReporter {
  explicit SkipListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  // ctest runs one case per process, selected by name (doctest_discover_tests); a name that selects nothing
  // (one CMake split at a ';', say) would otherwise pass with zero assertions.
  void test_run_end(const doctest::TestRunStats& stats) override {
    if (stats.numTestCases > 0 && stats.numTestCasesPassingFilters == 0) {
      std::printf("ERROR: no test case matched the filters, so nothing ran\n");
      std::fflush(stdout);
      std::_Exit(3);
    }
  }
  void test_case_start(const doctest::TestCaseData&) override { pending_skip_reason().clear(); }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats& stats) override {
    std::string& reason = pending_skip_reason();
    if (reason.empty()) return;
    if (stats.numAssertsFailedCurrentTest == 0 && stats.failure_flags == 0) {
      std::printf("SKIPPED: %s\n", reason.c_str());
    } else {
      std::printf("NOT A SKIP: this case had already failed when it asked to skip (%s)\n", reason.c_str());
    }
    std::fflush(stdout);
    reason.clear();
  }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

// ---- Model files ---------------------------------------------------------------------------------

// The file scripts/fetch_models.sh writes its outcome to, one line per file: "<file name> <state> <detail>",
// state ok, present, unreachable (the package registry could not be reached) or failed.
inline std::filesystem::path fetch_status_path() {
  return std::filesystem::path(INFER_SOURCE_DIR) / "build" / "fetch_models.status";
}

// The fetch status line of `name` when its state is `unreachable`, else "".
inline std::string fetch_unreachable_line(const std::string& name) {
  std::ifstream in(fetch_status_path());
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " unreachable", 0) == 0) return line;
  return "";
}

// The default model, fetched by scripts/fetch_models.sh.
inline constexpr const char* kSmolLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf";

// The path of model file `name`, or an empty path after reporting it missing: with INFER_REQUIRE_MODELS=1
// (CI) the test fails naming the file and where it was searched, unless `name` is the fetched SmolLM2 and
// the fetch status says the registry could not be reached; otherwise the test is marked skipped, naming
// the file. Used through INFER_MODEL_FILE, which returns from the test case when the path is empty.
inline std::filesystem::path model_or_report_missing(const std::string& name) {
  std::filesystem::path path = find_model_file(name);
  if (!path.empty()) return path;
  std::string message = name + " is absent (" + describe_model_search() + ")";
  if (name.find('/') == std::string::npos) {
    message += "; scripts/fetch_models.sh fetches it into models/";
  } else {
    message += "; scripts/fetch_models.sh --all fetches the public ones (README, Models)";
  }
  if (env_flag("INFER_REQUIRE_MODELS") && !env_flag("INFER_HIDE_SHARED_MODELS")) {
    const std::string unreachable = fetch_unreachable_line(name);
    if (unreachable.empty()) {
      FAIL_CHECK("INFER_REQUIRE_MODELS=1 and a model file this test needs is missing: " << message);
      return {};
    }
    message += "; allowed by INFER_REQUIRE_MODELS because the fetch recorded: " + unreachable;
  }
  note_skip(message);
  return {};
}

#define INFER_MODEL_FILE(var, name)                                                 \
  const std::filesystem::path var = ::infer::test::model_or_report_missing(name);  \
  if (var.empty()) return

// ---- Files and scratch space ---------------------------------------------------------------------

// The whole file as text, byte for byte. A file that cannot be opened, or holds fewer than min_size bytes,
// fails the test with a message naming it (never an empty string that a comparison could miss).
inline std::string read_text(const std::filesystem::path& path, size_t min_size = 1) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  REQUIRE_MESSAGE(text.size() >= min_size,
                  path.string() << " holds " << text.size() << " bytes, fewer than the " << min_size << " expected");
  return text;
}

// A fresh scratch directory under the build tree, one per test name.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(INFER_BINARY_DIR) / "test_scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Seeded uniform floats in [lo, hi).
inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (auto& x : out) x = dist(rng);
  return out;
}

}  // namespace infer::test
