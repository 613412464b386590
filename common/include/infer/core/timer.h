// timer.h: wall-clock milliseconds for the generators' per-token timestamps.
#pragma once

#include <chrono>

namespace infer {

// Milliseconds since `since` on the steady (monotonic) clock, so a clock adjustment mid-run cannot
// make a step look negative or huge.
inline double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace infer
