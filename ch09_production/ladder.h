// ladder.h: `ch09_production ladder`, the book's headline table (ladder.cpp).
#pragma once

#include "infer/app/app.h"

#include <CLI/CLI.hpp>

#include <string>

namespace infer {

struct LadderOptions {
  int requests = 16;               // the throughput view: this many requests submitted at once
  int naive_requests = 1;          // the one-at-a-time naive baseline runs this subset (its cost is quadratic)
  int cached_requests = 2;         // the one-at-a-time KV-cache baseline runs this subset
  double usd_per_hour = 1.0;       // what the machine costs, for $ per million tokens
  std::string out_dir = "out";     // report.md and ladder.png go here (report.json too, unless --json)
  double bandwidth_gb_s = 0.0;     // 0: measure
  int max_batch = 64;
};

void add_ladder_options(CLI::App& app, CommonOptions& common, LadderOptions& options);
int run_ladder(const CommonOptions& common, const LadderOptions& options);

}  // namespace infer
