// report.h: the one table and JSON format every chapter prints.
//
// A table has one row per variant: ms/token, tok/s, speedup vs the first row, GB/s moved and % of
// the machine's measured bandwidth. The same numbers go to JSON (--json FILE) in the shape
//   {"chapter": "...", "machine": {"cpu": "...", "threads": 2, "gpu": null, "bandwidth_gb_s": 25.8},
//    "model": {"path": "...", "params": 134515008, "weight_format": "f32"},
//    "rows": [{"variant": "naive", "tokens": 256, "ms_per_token": ..., "tok_per_s": ..., "speedup": 1.0,
//              "gb_per_s": ..., "bandwidth_pct": ...}, ...]}
// Chapters add their own fields to a row through `extra` (printed as extra columns too).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace infer {

struct MachineInfo {
  std::string cpu;                  // CPU model name from /proc/cpuinfo
  int threads = 1;                  // threads the run used
  std::optional<std::string> gpu;   // GPU name when one was used
  double bandwidth_gb_s = 0.0;      // measured read bandwidth of the device the rows ran on
};

struct ReportRow {
  std::string variant;
  int tokens = 0;                   // tokens generated (or processed) in the timed run
  double ms_per_token = 0.0;
  double tok_per_s = 0.0;
  double speedup = 1.0;             // filled by Report::add_row: tok_per_s / first row's tok_per_s
  double gb_per_s = 0.0;            // bytes counted in code / time
  double bandwidth_pct = 0.0;       // filled by Report::add_row: 100 * gb_per_s / machine bandwidth
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // chapter-specific columns
};

class Report {
 public:
  Report(std::string chapter, MachineInfo machine, nlohmann::ordered_json model);

  // Builds a row from a timed run: tokens in total_ms having moved `bytes` bytes.
  static ReportRow make_row(std::string variant, int tokens, double total_ms, uint64_t bytes);
  // Appends the row, computing speedup (vs the first row) and bandwidth_pct.
  ReportRow& add_row(ReportRow row);

  // A chapter-specific top-level JSON field (e.g. ch03's "ceilings"), written after "rows".
  void set_field(const std::string& key, nlohmann::ordered_json value) { extra_[key] = std::move(value); }

  void print_table(std::FILE* out) const;             // fixed-width table via fmt
  nlohmann::ordered_json to_json() const;
  void write_json(const std::string& path) const;     // throws infer::Error if it cannot write

  const std::vector<ReportRow>& rows() const { return rows_; }
  const MachineInfo& machine() const { return machine_; }

 private:
  std::string chapter_;
  MachineInfo machine_;
  nlohmann::ordered_json model_;
  std::vector<ReportRow> rows_;
  nlohmann::ordered_json extra_ = nlohmann::ordered_json::object();
};

}  // namespace infer
