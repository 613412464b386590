// engine_worker.cpp: the engine thread and the per-request channels (engine_worker.h).
#include "infer/serve/engine_worker.h"

#include "infer/core/error.h"
#include "infer/serve/openai_protocol.h"

#include <fmt/format.h>

#include <algorithm>

namespace infer::serve {

namespace {

// An event the worker sends itself (a request that never reached the engine): no token, just the end.
RequestEvent end_event(FinishReason finish, std::string error = "") {
  RequestEvent event;
  event.finish = finish;
  event.error = std::move(error);
  return event;
}

}  // namespace

// ==== RequestChannel ======================================================================================

void RequestChannel::push(const RequestEvent& event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(event);
    if (event.finish != FinishReason::none) finished_ = true;
  }
  ready_.notify_all();
}

std::vector<RequestEvent> RequestChannel::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  ready_.wait_for(lock, timeout, [&] { return !events_.empty(); });
  std::vector<RequestEvent> events(events_.begin(), events_.end());
  events_.clear();
  return events;
}

bool RequestChannel::finished() const {
  std::lock_guard lock(mutex_);
  return finished_;
}

// ==== EngineWorker: the handler side ======================================================================

EngineWorker::EngineWorker(Engine& engine, WorkerOptions options) : engine_(engine), options_(options) {
  stats_ = engine_.stats();
  thread_ = std::thread([this] { run(); });
}

EngineWorker::~EngineWorker() { stop(); }

std::shared_ptr<RequestChannel> EngineWorker::submit(std::vector<int> prompt, RequestParams params) {
  if (draining_) throw ApiError(503, "The server is shutting down and accepts no new requests");
  const int capacity = engine_.options().max_batch + options_.max_queued;
  // Reserve a place first, so that concurrent submits never exceed the bound.
  if (in_flight_.fetch_add(1) >= capacity) {
    in_flight_.fetch_sub(1);
    throw ApiError(429, fmt::format("Too many requests: {} are running or queued (the limit is {}); retry later",
                                    capacity, capacity), "", "rate_limit_exceeded");
  }
  auto channel = std::make_shared<RequestChannel>();
  channel->prompt_ = std::move(prompt);
  channel->params_ = std::move(params);
  {
    std::lock_guard lock(mutex_);
    incoming_.push_back(channel);
  }
  wake_.notify_one();
  return channel;
}

void EngineWorker::cancel(const std::shared_ptr<RequestChannel>& channel) {
  if (channel->cancelled_.exchange(true)) return;
  {
    std::lock_guard lock(mutex_);
    cancels_.push_back(channel);
  }
  wake_.notify_one();
}

void EngineWorker::begin_drain() { draining_ = true; }

void EngineWorker::abort_all() {
  {
    std::lock_guard lock(mutex_);
    abort_all_ = true;
  }
  wake_.notify_one();
}

void EngineWorker::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

EngineStats EngineWorker::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

EngineGauges EngineWorker::gauges() const {
  std::lock_guard lock(mutex_);
  EngineGauges gauges;
  gauges.running = stats_.running;
  gauges.waiting = stats_.waiting + int(incoming_.size());
  gauges.blocks_total = stats_.blocks_total;
  gauges.blocks_free = stats_.blocks_free;
  gauges.prefix_cache_hit_tokens = stats_.prefix_cache_hit_tokens;
  gauges.prompt_tokens = stats_.prompt_tokens;
  gauges.preemptions = stats_.preemptions;
  gauges.generated_tokens = stats_.generated_tokens;
  // Speculative decoding inside the engine (EngineOptions::speculation): accepted / drafted guesses so far.
  if (engine_.options().speculation.draft != EngineDraft::none)
    gauges.speculative_acceptance = stats_.spec_proposed > 0 ? double(stats_.spec_accepted) / double(stats_.spec_proposed) : 0.0;
  return gauges;
}

// ==== EngineWorker: the engine thread =====================================================================

void EngineWorker::add(const std::shared_ptr<RequestChannel>& channel) {
  if (channel->cancelled()) {  // its client left before the engine saw it
    channel->push(end_event(FinishReason::aborted));
    in_flight_.fetch_sub(1);
    return;
  }
  // The callback runs on this thread inside add_request / step / abort. It holds the channel weakly: the
  // worker's active_ list keeps it alive until its last event.
  std::weak_ptr<RequestChannel> weak = channel;
  try {
    channel->id_ = engine_.add_request(std::move(channel->prompt_), channel->params_, [this, weak](const RequestEvent& event) {
      if (auto target = weak.lock()) {
        target->push(event);
        if (event.finish != FinishReason::none) in_flight_.fetch_sub(1);
      }
    });
    channel->added_ = true;
    active_.push_back(channel);
  } catch (const std::exception& error) {  // infer::Error: too long for the context or the pool
    channel->push(end_event(FinishReason::error, error.what()));
    in_flight_.fetch_sub(1);
  }
}

void EngineWorker::run() {
  while (true) {
    std::deque<std::shared_ptr<RequestChannel>> incoming, cancels;
    bool abort_all = false, stop = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || abort_all_ || !incoming_.empty() || !cancels_.empty() || engine_.has_work(); });
      incoming.swap(incoming_);
      cancels.swap(cancels_);
      abort_all = abort_all_ || stop_;
      abort_all_ = false;
      stop = stop_;
    }
    for (auto& channel : incoming) add(channel);
    for (auto& channel : cancels) {
      if (channel->added_ && !channel->finished()) engine_.abort(channel->id_);
    }
    if (abort_all) {
      // abort() calls back into the channels; copy the ids first.
      std::vector<RequestId> ids;
      for (auto& channel : active_) {
        if (!channel->finished()) ids.push_back(channel->id_);
      }
      for (RequestId id : ids) engine_.abort(id);
    }
    if (!stop && engine_.has_work()) {
      try {
        engine_.step();
      } catch (const std::exception& error) {
        // A failure of the step itself concerns every running request: end them all with the error.
        fmt::print(stderr, "engine step failed: {}\n", error.what());
        std::vector<RequestId> ids;
        for (auto& channel : active_) {
          if (!channel->finished()) ids.push_back(channel->id_);
        }
        for (RequestId id : ids) engine_.abort(id);
      }
    }
    std::erase_if(active_, [](const std::shared_ptr<RequestChannel>& channel) { return channel->finished(); });
    {
      std::lock_guard lock(mutex_);
      stats_ = engine_.stats();
    }
    if (stop) break;
  }
}

}  // namespace infer::serve
