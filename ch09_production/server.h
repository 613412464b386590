// server.h: `ch09_production serve`, the OpenAI-compatible HTTP server over the ch06 engine.
#pragma once

#include "infer/app/app.h"
#include "infer/engine/engine.h"

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

// Loads the model, starts the engine thread, serves until SIGINT/SIGTERM, drains, returns 0.
int run_server(const CommonOptions& common, const ServeOptions& options);

}  // namespace infer
