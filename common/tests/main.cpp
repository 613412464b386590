// The doctest runner for the engine's unit tests and the lab tests (every other file adds test cases).
// SkipListener turns INFER_SKIP into a "SKIPPED: <why>" line at the end of a case that did not fail
// (test_util.h), which ctest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "test_util.h"

REGISTER_LISTENER("infer_skip", 1, infer::test::SkipListener);
