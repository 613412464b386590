// The doctest runner of the CUDA backend's tests (the other files in this folder add test cases).
//
// ctest runs every test case as its own test (doctest_discover_tests). Before running any, this runner
// asks the CUDA runtime whether a device is usable. With none (a CPU machine, CI) it prints
// "SKIPPED: no CUDA device (<reason>)" and exits 77, which CMake registers as each test's
// SKIP_RETURN_CODE: ctest then reports every case as skipped, never as passed. Listing the test
// cases (--list-test-cases and the other doctest queries) works without a device.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "infer/model/backend.h"
#include "test_util.h"

#include <cstdio>
#include <string>
#include <string_view>

namespace {

constexpr int kSkipReturnCode = 77;

// doctest options that only print something (help, version, lists, counts) and run no test.
bool is_query_option(std::string_view arg) {
  while (!arg.empty() && arg.front() == '-') arg.remove_prefix(1);
  if (arg.rfind("dt-", 0) == 0) arg.remove_prefix(3);
  arg = arg.substr(0, arg.find('='));
  for (std::string_view query : {"?", "h", "help", "v", "version", "c", "count", "ltc", "list-test-cases", "lts",
                                 "list-test-suites", "lr", "list-reporters"})
    if (arg == query) return true;
  return false;
}

}  // namespace

// INFER_SKIP inside a case (a model file absent) prints "SKIPPED: <why>" when the case ends (test_util.h).
REGISTER_LISTENER("infer_skip", 1, infer::test::SkipListener);

int main(int argc, char** argv) {
  bool query = false;
  for (int i = 1; i < argc; ++i) query = query || is_query_option(argv[i]);
  if (!query) {
    const std::string reason = infer::cuda_unavailable_reason();
    if (!reason.empty()) {
      std::printf("SKIPPED: no CUDA device (%s)\n", reason.c_str());
      return kSkipReturnCode;
    }
  }
  doctest::Context context(argc, argv);
  return context.run();
}
