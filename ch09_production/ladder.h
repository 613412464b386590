// ladder.h: `ch09_production ladder`, the book's headline table (ladder.cpp).
#pragma once

#include "infer/app/app.h"

#include <CLI/CLI.hpp>

#include <string>

namespace infer {

struct LadderOptions {
  int requests = 32;               // the throughput view: this many requests submitted at once (32 streaming
                                   // clients over HTTP: the acceptance load)
  int naive_requests = 1;          // the one-at-a-time naive baseline runs this subset (its cost is quadratic)
  int cached_requests = 2;         // the one-at-a-time KV-cache baseline runs this subset
  double usd_per_hour = 1.0;       // what the machine costs, for $ per million tokens
  std::string out_dir = "out";     // report.md and ladder.png go here (report.json too, unless --json)
  double bandwidth_gb_s = 0.0;     // 0: measure
  int max_batch = 64;
  bool quantized = true;           // the quantized (int8, int4) and speculative rows
  std::string int4_format = "q4_1";  // SmolLM2's file is q4_1: used as stored (q4_0 would requantize it)
  int early_exit_layers = 0;       // the early-exit draft's layers; 0: a quarter of the model's; -1: none
  int http_pairs = 3;              // in-process / HTTP runs, alternated; rows: the fastest; the ratio: the pairs' median
};

void add_ladder_options(CLI::App& app, CommonOptions& common, LadderOptions& options);
int run_ladder(const CommonOptions& common, const LadderOptions& options);

}  // namespace infer
