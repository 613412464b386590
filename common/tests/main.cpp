// The doctest runner for the engine's unit tests (every other file in this folder adds test cases).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
