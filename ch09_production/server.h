// server.h: `ch09_production serve`, the OpenAI-compatible HTTP server over the ch06 engine.
#pragma once

#include "infer/app/app.h"
#include "infer/engine/engine.h"
#include "infer/model/transformer.h"

#include <functional>
#include <memory>

#include <string>

namespace infer {

struct ServeOptions {
  std::string host = "127.0.0.1";     // loopback only unless asked
  int port = 8080;
  std::string api_key;                // when set, /v1/* needs "Authorization: Bearer <key>"
  std::string served_model_name;      // the model id clients send; default: the model file's name
  int http_threads = 64;              // concurrent connections served (each stream holds one)
  int max_queued = 256;               // requests waiting beyond the engine's batch: more get 429
  size_t max_body_bytes = 1 << 20;    // larger request bodies get 413
  double grace_seconds = 30.0;        // SIGINT/SIGTERM: how long requests in flight may finish
  EngineOptions engine;
};

// The server without the process around it: the engine thread, the OpenAI routes and the listening socket
// (bound in the constructor; port 0 picks a free one). run_server drives one from signals; the ladder starts
// one in-process to measure what HTTP costs against the engine alone.
class HttpServer {
 public:
  HttpServer(const LoadedModel& model, Transformer& transformer, const ServeOptions& options, int default_max_tokens,
             uint64_t seed);
  ~HttpServer();  // stops listening and the engine thread
  int port() const;
  const std::string& model_id() const;
  std::string chat_template_description() const;
  EngineStats engine_stats() const;  // as of the engine's last step
  int open_responses() const;        // generations whose response is not complete yet
  void listen();                     // serves on this thread until drain()/destruction stops it
  void start();                      // serves on a thread of its own; returns once it accepts connections
  // Refuses new requests (503), waits up to grace_seconds for the open responses (cut_short() == true ends
  // the wait early), aborts the rest, stops listening. True when nothing had to be aborted.
  bool drain(double grace_seconds, const std::function<bool()>& cut_short = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Loads the model, starts the engine thread, serves until SIGINT/SIGTERM, drains, returns 0.
int run_server(const CommonOptions& common, const ServeOptions& options);

}  // namespace infer
