// fresh_thread.h: run a piece of OpenMP work on a thread of its own, so that it leaves no worker pool behind.
//
// libgomp keeps a pool of worker threads for every thread that has run a parallel region, for as long as that
// thread lives. Once two pools exist (say the main thread loaded the weights, and an engine thread now runs the
// forward passes) there are more OpenMP threads than cores, and libgomp then barely spin-waits at its barriers
// (its "throttled" spin count, whatever GOMP_SPINCOUNT says): every barrier of a decode step goes through the
// kernel. Measured on the 2-core EPYC VM with 2 threads: the batch-1 engine took 12.1 ms per token with one pool
// alive and 21.5 ms with the main thread's pool beside its own. A program whose forward passes run on a thread
// other than the one that did earlier OpenMP work (ch09's server and ladder) does that earlier work through
// on_fresh_thread: the thread exits afterwards, its pool with it, and at most one pool is alive at a time.
#pragma once

#include <exception>
#include <optional>
#include <thread>
#include <utility>

namespace infer {

// Runs fn() on a new thread, waits for it, returns its result or rethrows its exception.
template <class F>
auto on_fresh_thread(F&& fn) -> decltype(fn()) {
  std::optional<decltype(fn())> result;
  std::exception_ptr error;
  std::thread thread([&] {
    try {
      result.emplace(fn());
    } catch (...) {
      error = std::current_exception();
    }
  });
  thread.join();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

}  // namespace infer
