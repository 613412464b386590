// engine_worker.h: the thread that owns the Engine, and the channels between it and the HTTP threads.
//
// The Engine is not thread-safe (engine.h): one thread adds requests, aborts them and steps. HTTP handler
// threads therefore never touch it; they submit() a request, which queues it for the engine thread and
// returns a RequestChannel. The engine thread adds it at its next turn and pushes every RequestEvent of the
// request into that channel; the handler waits on the channel and writes the tokens to its client. A
// handler whose client went away (or whose stop string matched) calls cancel(): the engine thread aborts
// the request at its next turn, which frees its KV blocks.
//
//   handler threads --submit/cancel--> [incoming queue] --engine thread: add_request / abort / step-->
//   handler threads <--wait()-- [RequestChannel per request] <--on_event callback--
#pragma once

#include "infer/engine/engine.h"
#include "infer/serve/metrics.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace infer::serve {

class RequestChannel {
 public:
  // Engine thread: an event of this request (the last one has finish != none).
  void push(const RequestEvent& event);
  // Handler thread: the events that arrived, waiting up to `timeout` for the first one.
  std::vector<RequestEvent> wait(std::chrono::milliseconds timeout);
  bool finished() const;     // the engine sent the last event
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class EngineWorker;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<RequestEvent> events_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
  RequestId id_ = 0;          // the engine's id once added (engine thread only)
  bool added_ = false;        // engine thread only
  std::vector<int> prompt_;   // handed to the engine thread
  RequestParams params_;
};

struct WorkerOptions {
  int max_queued = 256;  // requests accepted but not finished beyond the engine's max_batch: more -> 429
};

class EngineWorker {
 public:
  // Starts the engine thread. The engine must outlive the worker.
  EngineWorker(Engine& engine, WorkerOptions options);
  ~EngineWorker();  // stops the thread (aborting what is left)
  EngineWorker(const EngineWorker&) = delete;
  EngineWorker& operator=(const EngineWorker&) = delete;

  // Queues a request. Throws ApiError 429 when max_batch + max_queued requests are already in, 503 once
  // draining. The engine's own refusals (a prompt that can never fit) arrive as a finish == error event.
  std::shared_ptr<RequestChannel> submit(std::vector<int> prompt, RequestParams params);
  // Asks the engine thread to abort the request (no-op once it finished).
  void cancel(const std::shared_ptr<RequestChannel>& channel);

  void begin_drain();         // refuse new requests from now on
  bool draining() const { return draining_.load(); }
  void abort_all();           // abort every request in flight (the end of a drain's grace period)
  int in_flight() const { return in_flight_.load(); }  // submitted, not yet finished
  void stop();                // ends the engine thread (aborting what is left); idempotent

  EngineGauges gauges() const;
  EngineStats stats() const;  // the snapshot published after the last step

 private:
  void run();
  void add(const std::shared_ptr<RequestChannel>& channel);

  Engine& engine_;
  WorkerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<RequestChannel>> incoming_;
  std::deque<std::shared_ptr<RequestChannel>> cancels_;
  bool abort_all_ = false;
  bool stop_ = false;
  EngineStats stats_;         // published by the engine thread
  std::atomic<int> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::vector<std::shared_ptr<RequestChannel>> active_;  // added to the engine, not finished (engine thread)
  std::thread thread_;
};

}  // namespace infer::serve
