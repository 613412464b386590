// test_report.cpp: the derived columns, the JSON shape of DESIGN.md section 3, and the table.
#include "infer/core/error.h"
#include "infer/app/report.h"
#include "test_util.h"

#include <cstdio>
#include <fstream>
#include <string>

namespace {

infer::MachineInfo test_machine(double bandwidth_gb_s = 25.0) {
  return infer::MachineInfo{.cpu = "Test CPU", .threads = 2, .gpu = std::nullopt, .bandwidth_gb_s = bandwidth_gb_s};
}

// Captures what print_table writes (tmpfile works on every platform the book targets).
std::string table_text(const infer::Report& report) {
  std::FILE* file = std::tmpfile();
  REQUIRE(file != nullptr);
  report.print_table(file);
  std::rewind(file);
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, n);
  std::fclose(file);
  return text;
}

}  // namespace

// ---- Rows ----------------------------------------------------------------------------------------

TEST_CASE("make_row derives ms/token, tok/s and GB/s from tokens, milliseconds and bytes") {
  // 256 tokens in 2 s having read 51.2 GB: 7.8125 ms/token, 128 tok/s, 25.6 GB/s. All exact in binary.
  const auto row = infer::Report::make_row("cached", 256, 2000.0, 51'200'000'000ULL);
  CHECK(row.variant == "cached");
  CHECK(row.tokens == 256);
  CHECK(row.ms_per_token == doctest::Approx(7.8125).epsilon(1e-12));
  CHECK(row.tok_per_s == doctest::Approx(128.0).epsilon(1e-12));
  CHECK(row.gb_per_s == doctest::Approx(25.6).epsilon(1e-12));

  CHECK_THROWS_AS(infer::Report::make_row("empty", 0, 10.0, 0), infer::Error);
  CHECK_THROWS_AS(infer::Report::make_row("instant", 10, 0.0, 0), infer::Error);
}

TEST_CASE("add_row computes speedup against the first row and % of the measured bandwidth") {
  infer::Report report("ch_test", test_machine(25.0), {{"path", "m.bin"}});
  const auto& first = report.add_row(infer::Report::make_row("naive", 100, 4000.0, 10'000'000'000ULL));
  CHECK(first.speedup == doctest::Approx(1.0));
  CHECK(first.gb_per_s == doctest::Approx(2.5));
  CHECK(first.bandwidth_pct == doctest::Approx(10.0));  // 2.5 of 25 GB/s

  const auto& second = report.add_row(infer::Report::make_row("cached", 100, 500.0, 10'000'000'000ULL));
  CHECK(second.speedup == doctest::Approx(8.0));         // 200 tok/s vs 25 tok/s
  CHECK(second.bandwidth_pct == doctest::Approx(80.0));  // 20 of 25 GB/s
  CHECK(report.rows().size() == 2);

  infer::Report unmeasured("ch_test", test_machine(0.0), nullptr);
  CHECK(unmeasured.add_row(infer::Report::make_row("x", 1, 1.0, 1000)).bandwidth_pct == 0.0);
}

TEST_CASE("extra columns may not overwrite a standard column") {
  infer::Report report("ch_test", test_machine(), nullptr);
  auto row = infer::Report::make_row("bad", 1, 1.0, 0);
  row.extra["speedup"] = 9.0;
  CHECK_THROWS_WITH_AS(report.add_row(row), doctest::Contains("speedup"), infer::Error);
}

// ---- JSON ----------------------------------------------------------------------------------------

TEST_CASE("to_json has the DESIGN.md shape: chapter, machine (gpu null when absent), model, rows with extras") {
  const nlohmann::ordered_json model = {{"path", "stories260K.bin"}, {"params", 260000}, {"weight_format", "f32"}};
  infer::Report report("ch05_kv_cache", test_machine(25.0), model);
  auto row = infer::Report::make_row("naive", 200, 1000.0, 5'000'000'000ULL);
  row.extra["kv_bytes"] = 4096;
  row.extra["acceptance_rate"] = 0.75;
  report.add_row(row);

  const auto json = report.to_json();
  std::vector<std::string> top_keys;
  for (const auto& [key, value] : json.items()) top_keys.push_back(key);
  CHECK(top_keys == std::vector<std::string>{"chapter", "machine", "model", "rows"});
  CHECK(json["chapter"] == "ch05_kv_cache");
  CHECK(json["machine"]["cpu"] == "Test CPU");
  CHECK(json["machine"]["threads"] == 2);
  CHECK(json["machine"]["gpu"].is_null());
  CHECK(json["machine"]["bandwidth_gb_s"] == 25.0);
  CHECK(json["model"] == model);

  REQUIRE(json["rows"].size() == 1);
  const auto& r = json["rows"][0];
  std::vector<std::string> row_keys;
  for (const auto& [key, value] : r.items()) row_keys.push_back(key);
  CHECK(row_keys == std::vector<std::string>{"variant", "tokens", "ms_per_token", "tok_per_s", "speedup",
                                             "gb_per_s", "bandwidth_pct", "kv_bytes", "acceptance_rate"});
  CHECK(r["variant"] == "naive");
  CHECK(r["tokens"] == 200);
  CHECK(r["ms_per_token"].get<double>() == doctest::Approx(5.0));
  CHECK(r["tok_per_s"].get<double>() == doctest::Approx(200.0));
  CHECK(r["speedup"].get<double>() == doctest::Approx(1.0));
  CHECK(r["gb_per_s"].get<double>() == doctest::Approx(5.0));
  CHECK(r["bandwidth_pct"].get<double>() == doctest::Approx(20.0));
  CHECK(r["kv_bytes"] == 4096);
  CHECK(r["acceptance_rate"].get<double>() == doctest::Approx(0.75));

  infer::MachineInfo with_gpu = test_machine();
  with_gpu.gpu = "NVIDIA H100";
  CHECK(infer::Report("ch03", with_gpu, nullptr).to_json()["machine"]["gpu"] == "NVIDIA H100");
}

TEST_CASE("write_json writes the same JSON, and names the path when it cannot") {
  infer::Report report("ch_test", test_machine(), {{"path", "x"}});
  report.add_row(infer::Report::make_row("only", 10, 100.0, 1'000'000));
  const auto path = infer::test::scratch_dir("report_write_json") / "report.json";
  report.write_json(path.string());
  std::ifstream file(path);
  CHECK(nlohmann::ordered_json::parse(file) == report.to_json());

  const std::string bad_path = (path.parent_path() / "no_such_dir" / "report.json").string();
  CHECK_THROWS_WITH_AS(report.write_json(bad_path), doctest::Contains(bad_path.c_str()), infer::Error);
}

TEST_CASE("write_json writes text that is not valid UTF-8 with U+FFFD instead of failing") {
  // ch07's greedy_text of a synthetic model: random byte tokens, here a lone continuation byte.
  infer::Report report("ch_test", test_machine(), {{"path", "x"}});
  report.set_field("greedy_text", std::string("ab\xa9."));
  const auto path = infer::test::scratch_dir("report_write_json_utf8") / "report.json";
  report.write_json(path.string());
  std::ifstream file(path);
  const auto json = nlohmann::ordered_json::parse(file);
  CHECK(json["greedy_text"] == "ab\xef\xbf\xbd.");
}

// ---- Table ---------------------------------------------------------------------------------------

TEST_CASE("print_table shows every variant, the standard headers and the union of extra columns") {
  infer::Report report("ch_test", test_machine(25.0), nullptr);
  auto naive = infer::Report::make_row("naive", 64, 6400.0, 1'000'000'000ULL);
  naive.extra["kv_bytes"] = 123456;
  report.add_row(naive);
  auto cached = infer::Report::make_row("kv-cache", 64, 640.0, 1'000'000'000ULL);
  cached.extra["perplexity"] = 3.14159;
  report.add_row(cached);

  const std::string text = table_text(report);
  INFO(text);
  for (const char* expected : {"variant", "tokens", "ms/token", "tok/s", "speedup", "GB/s", "% BW", "kv_bytes",
                               "perplexity", "naive", "kv-cache", "123456", "3.14", "10.00x", "100.0"})
    CHECK(text.find(expected) != std::string::npos);
  // The extra columns follow the standard ones, in first-seen order.
  CHECK(text.find("% BW") < text.find("kv_bytes"));
  CHECK(text.find("kv_bytes") < text.find("perplexity"));
}
