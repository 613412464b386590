// report.cpp: the one results table (fmt) and JSON file (nlohmann) every chapter writes.
//
// Rows are built from what a chapter measured (tokens, wall time, bytes counted in code); the
// derived columns are computed here so every chapter derives them the same way:
//   ms/token = total_ms / tokens            tok/s = tokens / (total_ms / 1000)
//   GB/s     = bytes / (total_ms / 1000) / 1e9
//   speedup  = tok/s / first row's tok/s    % BW  = 100 * GB/s / machine's measured GB/s
#include "infer/app/report.h"

#include "infer/core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <utility>

namespace infer {

namespace {

// The standard columns' JSON keys; `extra` may not reuse them (a chapter would silently overwrite one).
constexpr const char* kStandardKeys[] = {"variant", "tokens", "ms_per_token", "tok_per_s",
                                         "speedup", "gb_per_s", "bandwidth_pct"};

// ---- Number formatting ---------------------------------------------------------------------------

// Floats with 2 decimals in the everyday range, fewer digits for large values and 3 significant
// digits for small ones, so 1234.5 tok/s, 23.41 ms and 0.0123 ms all read naturally.
std::string format_float(double value) {
  if (!std::isfinite(value)) return fmt::format("{}", value);
  const double magnitude = std::abs(value);
  if (magnitude == 0.0) return "0";
  if (magnitude >= 1000.0) return fmt::format("{:.0f}", value);
  if (magnitude >= 100.0) return fmt::format("{:.1f}", value);
  if (magnitude >= 0.1) return fmt::format("{:.2f}", value);
  if (magnitude >= 1e-4) return fmt::format("{:.3g}", value);
  return fmt::format("{:.2e}", value);
}

// One extra column's cell: integers as integers, floats as above, strings as they are.
std::string format_json_cell(const nlohmann::ordered_json& value) {
  switch (value.type()) {
    case nlohmann::ordered_json::value_t::null: return "-";
    case nlohmann::ordered_json::value_t::string: return value.get<std::string>();
    case nlohmann::ordered_json::value_t::boolean: return value.get<bool>() ? "true" : "false";
    case nlohmann::ordered_json::value_t::number_integer: return fmt::format("{}", value.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: return fmt::format("{}", value.get<uint64_t>());
    case nlohmann::ordered_json::value_t::number_float: return format_float(value.get<double>());
    default: return value.dump();
  }
}

}  // namespace

// ---- Rows ----------------------------------------------------------------------------------------

Report::Report(std::string chapter, MachineInfo machine, nlohmann::ordered_json model)
    : chapter_(std::move(chapter)), machine_(std::move(machine)), model_(std::move(model)) {}

ReportRow Report::make_row(std::string variant, int tokens, double total_ms, uint64_t bytes) {
  if (tokens <= 0) fail("report: row '{}' has tokens = {} (must be > 0)", variant, tokens);
  if (!(total_ms > 0.0) || !std::isfinite(total_ms))
    fail("report: row '{}' has total_ms = {} (must be > 0)", variant, total_ms);
  ReportRow row;
  row.variant = std::move(variant);
  row.tokens = tokens;
  row.ms_per_token = total_ms / tokens;
  row.tok_per_s = tokens / (total_ms / 1000.0);
  row.gb_per_s = static_cast<double>(bytes) / (total_ms / 1000.0) / 1e9;
  return row;
}

ReportRow& Report::add_row(ReportRow row) {
  if (!row.extra.is_object()) fail("report: row '{}' has non-object extra columns: {}", row.variant, row.extra.dump());
  for (const char* key : kStandardKeys)
    if (row.extra.contains(key)) fail("report: row '{}' has an extra column '{}' that clashes with a standard one", row.variant, key);

  // The first row is the baseline every speedup is measured against.
  const double baseline_tok_per_s = rows_.empty() ? row.tok_per_s : rows_.front().tok_per_s;
  row.speedup = baseline_tok_per_s > 0.0 ? row.tok_per_s / baseline_tok_per_s : 0.0;
  // Unknown machine bandwidth (0) leaves the percentage at 0 rather than dividing by zero.
  row.bandwidth_pct = machine_.bandwidth_gb_s > 0.0 ? 100.0 * row.gb_per_s / machine_.bandwidth_gb_s : 0.0;
  rows_.push_back(std::move(row));
  return rows_.back();
}

// ---- Table ---------------------------------------------------------------------------------------

void Report::print_table(std::FILE* out) const {
  // Columns: the standard seven, then every extra key in the order it first appears in any row.
  std::vector<std::string> headers = {"variant", "tokens", "ms/token", "tok/s", "speedup", "GB/s", "% BW"};
  const size_t n_standard = headers.size();
  for (const auto& row : rows_)
    for (const auto& [key, value] : row.extra.items())
      if (std::find(headers.begin() + static_cast<std::ptrdiff_t>(n_standard), headers.end(), key) == headers.end())
        headers.push_back(key);

  // Every cell as text first, so column widths can be fitted to the widest one.
  const bool bandwidth_known = machine_.bandwidth_gb_s > 0.0;
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows_) {
    std::vector<std::string> line = {row.variant,
                                     fmt::format("{}", row.tokens),
                                     format_float(row.ms_per_token),
                                     format_float(row.tok_per_s),
                                     fmt::format("{:.2f}x", row.speedup),
                                     format_float(row.gb_per_s),
                                     bandwidth_known ? fmt::format("{:.1f}", row.bandwidth_pct) : "-"};
    for (size_t column = n_standard; column < headers.size(); ++column)
      line.push_back(row.extra.contains(headers[column]) ? format_json_cell(row.extra[headers[column]]) : "-");
    cells.push_back(std::move(line));
  }
  std::vector<size_t> widths(headers.size());
  for (size_t column = 0; column < headers.size(); ++column) {
    widths[column] = headers[column].size();
    for (const auto& line : cells) widths[column] = std::max(widths[column], line[column].size());
  }

  // The variant column reads left-aligned, numbers right-aligned.
  auto print_line = [&](const std::vector<std::string>& line) {
    std::string text;
    for (size_t column = 0; column < line.size(); ++column) {
      if (column > 0) text += " | ";
      text += column == 0 ? fmt::format("{:<{}}", line[column], widths[column])
                          : fmt::format("{:>{}}", line[column], widths[column]);
    }
    fmt::print(out, "{}\n", text);
  };

  fmt::print(out, "{} | cpu: {} ({} threads){}{}\n", chapter_, machine_.cpu, machine_.threads,
             machine_.gpu ? fmt::format(" | gpu: {}", *machine_.gpu) : std::string(),
             bandwidth_known ? fmt::format(" | measured bandwidth {} GB/s", format_float(machine_.bandwidth_gb_s))
                             : std::string(" | bandwidth not measured"));
  print_line(headers);
  std::string rule;
  for (size_t column = 0; column < widths.size(); ++column) {
    if (column > 0) rule += "-|-";
    rule += std::string(widths[column], '-');
  }
  fmt::print(out, "{}\n", rule);
  for (const auto& line : cells) print_line(line);
  std::fflush(out);
}

// ---- JSON ----------------------------------------------------------------------------------------

nlohmann::ordered_json Report::to_json() const {
  nlohmann::ordered_json machine = {{"cpu", machine_.cpu}, {"threads", machine_.threads}};
  machine["gpu"] = machine_.gpu ? nlohmann::ordered_json(*machine_.gpu) : nlohmann::ordered_json(nullptr);
  machine["bandwidth_gb_s"] = machine_.bandwidth_gb_s;

  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& row : rows_) {
    nlohmann::ordered_json object = {{"variant", row.variant},
                                     {"tokens", row.tokens},
                                     {"ms_per_token", row.ms_per_token},
                                     {"tok_per_s", row.tok_per_s},
                                     {"speedup", row.speedup},
                                     {"gb_per_s", row.gb_per_s},
                                     {"bandwidth_pct", row.bandwidth_pct}};
    for (const auto& [key, value] : row.extra.items()) object[key] = value;
    rows.push_back(std::move(object));
  }

  nlohmann::ordered_json json;
  json["chapter"] = chapter_;
  json["machine"] = std::move(machine);
  json["model"] = model_;
  json["rows"] = std::move(rows);
  for (const auto& [key, value] : extra_.items()) json[key] = value;
  return json;
}

void Report::write_json(const std::string& path) const {
  std::ofstream file(path);
  if (!file) fail("{}: cannot open for writing the JSON report: {}", path, std::strerror(errno));
  // Generated text can hold invalid UTF-8 (a byte-level token cut mid-character, a synthetic model's
  // random bytes): written as U+FFFD rather than throwing (nlohmann's default) and leaving an empty file.
  file << to_json().dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
  file.close();
  if (!file) fail("{}: writing the JSON report failed", path);
}

}  // namespace infer
