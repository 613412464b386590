// bench.cpp: the HTTP load generator. `concurrency` client threads share a list of requests; request i is
// sent at its arrival time (all at once, or Poisson arrivals at --rate), streams its tokens back as SSE and
// records when its first text arrived (TTFT), the mean gap between tokens after that (TPOT) and its latency.
// Prompts are seeded random token ids (prompt: [ids]) and max_tokens is forced with ignore_eos, so every
// request costs exactly prompt_tokens + output_tokens whatever the model says.
#include "bench.h"

#include "infer/core/error.h"
#include "infer/serve/openai_protocol.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <random>
#include <thread>

namespace infer {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * double(values.size() - 1);
  const size_t lo = size_t(std::floor(rank)), hi = size_t(std::ceil(rank));
  return values[lo] + (values[hi] - values[lo]) * (rank - double(lo));
}

void add_bench_options(CLI::App& app, BenchOptions& options) {
  app.add_option("--url", options.url, "The server's base URL");
  app.add_option("--model", options.model, "Model id to request (default: the first one /v1/models lists)");
  app.add_option("--api-key", options.api_key, "Sent as 'Authorization: Bearer KEY'");
  app.add_option("--concurrency", options.concurrency, "Requests in flight at most")->check(CLI::Range(1, 4096));
  app.add_option("--requests", options.requests, "Requests in all")->check(CLI::Range(1, 1 << 20));
  app.add_option("--rate", options.rate, "Arrivals per second (Poisson); 0: all at once")->check(CLI::Range(0.0, 1e6));
  app.add_option("--prompt-tokens", options.prompt_tokens, "Prompt length in tokens")->check(CLI::Range(1, 1 << 20));
  app.add_option("--output-tokens", options.output_tokens, "Tokens generated per request")->check(CLI::Range(1, 1 << 20));
  app.add_option("--token-id-max", options.token_id_max, "Prompt token ids are drawn below this")->check(CLI::Range(4, 1 << 24));
  app.add_flag("!--no-stream", options.stream, "Ask for whole responses instead of SSE streams (no TTFT/TPOT)");
  app.add_flag("--shared-prompt", options.shared_prompt, "Every request sends the same prompt");
  app.add_option("--seed", options.seed, "Seed of the prompts and arrival times");
  app.add_option("--json", options.json, "Write the result as JSON to this file");
}

namespace {

struct Endpoint {
  std::string host;
  int port = 80;
};

Endpoint parse_url(const std::string& url) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) fail("--url '{}': only http://host:port is supported", url);
  std::string rest = url.substr(prefix.size());
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  Endpoint endpoint;
  const size_t colon = rest.rfind(':');
  endpoint.host = rest.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      endpoint.port = std::stoi(rest.substr(colon + 1));
    } catch (const std::exception&) {
      fail("--url '{}': bad port", url);
    }
  }
  return endpoint;
}

httplib::Headers auth_headers(const BenchOptions& options) {
  httplib::Headers headers;
  if (!options.api_key.empty()) headers.emplace("Authorization", "Bearer " + options.api_key);
  return headers;
}

std::string first_model(const Endpoint& endpoint, const BenchOptions& options) {
  httplib::Client client(endpoint.host, endpoint.port);
  auto response = client.Get("/v1/models", auth_headers(options));
  if (!response) fail("cannot reach {} ({})", options.url, httplib::to_string(response.error()));
  if (response->status != 200) fail("GET /v1/models: HTTP {}: {}", response->status, response->body);
  return json::parse(response->body).at("data").at(0).at("id").get<std::string>();
}

double ms_since(Clock::time_point from) {
  return std::chrono::duration<double, std::milli>(Clock::now() - from).count();
}

// One request; streaming reads the SSE events as they arrive.
RequestTiming send_request(const Endpoint& endpoint, const BenchOptions& options, const std::string& body) {
  RequestTiming timing;
  httplib::Client client(endpoint.host, endpoint.port);
  client.set_read_timeout(600, 0);
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/completions";
  request.headers = auth_headers(options);
  request.set_header("Content-Type", "application/json");
  request.body = body;
  const auto sent = Clock::now();
  std::optional<Clock::time_point> first_text, last_text;
  std::string buffer, error_body;
  bool saw_done = false;
  if (options.stream) {
    request.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
      buffer.append(data, length);
      size_t end;
      while ((end = buffer.find("\n\n")) != std::string::npos) {
        const std::string event = buffer.substr(0, end);
        buffer.erase(0, end + 2);
        if (event.rfind("data: ", 0) != 0) continue;
        const std::string payload = event.substr(6);
        if (payload == "[DONE]") {
          saw_done = true;
          continue;
        }
        const json chunk = json::parse(payload, nullptr, false);
        if (chunk.is_discarded()) continue;
        if (chunk.contains("error")) {
          timing.error = chunk["error"].value("message", "error");
          continue;
        }
        if (chunk.contains("usage") && chunk["usage"].is_object()) {
          timing.prompt_tokens = chunk["usage"].value("prompt_tokens", 0);
          timing.completion_tokens = chunk["usage"].value("completion_tokens", 0);
        }
        for (const json& choice : chunk.value("choices", json::array())) {
          const std::string text = choice.value("text", "");
          if (text.empty()) continue;
          const auto now = Clock::now();
          if (!first_text) first_text = now;
          last_text = now;
          timing.text += text;
        }
      }
      return true;
    };
  }
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  const bool sent_ok = client.send(request, response, error);
  timing.latency_ms = ms_since(sent);
  if (!sent_ok) {
    timing.error = fmt::format("{} (HTTP client error after {:.0f} ms, {} bytes of text received)",
                               httplib::to_string(error), timing.latency_ms, timing.text.size());
    return timing;
  }
  if (response.status != 200) {
    timing.error = fmt::format("HTTP {}: {}", response.status, response.body.empty() ? buffer : response.body);
    return timing;
  }
  if (options.stream) {
    if (!saw_done && timing.error.empty()) timing.error = "the stream ended without data: [DONE]";
    if (first_text) timing.ttft_ms = std::chrono::duration<double, std::milli>(*first_text - sent).count();
    if (first_text && timing.completion_tokens > 1) {
      timing.tpot_ms = std::chrono::duration<double, std::milli>(*last_text - *first_text).count() /
                       double(timing.completion_tokens - 1);
    }
  } else {
    const json whole = json::parse(response.body, nullptr, false);
    if (whole.is_discarded()) {
      timing.error = "the response is not JSON";
      return timing;
    }
    timing.text = whole["choices"][0].value("text", "");
    timing.prompt_tokens = whole["usage"].value("prompt_tokens", 0);
    timing.completion_tokens = whole["usage"].value("completion_tokens", 0);
    timing.ttft_ms = timing.latency_ms;
  }
  timing.ok = timing.error.empty();
  return timing;
}

}  // namespace

BenchResult run_load(const BenchOptions& options) {
  const Endpoint endpoint = parse_url(options.url);
  const std::string model = options.model.empty() ? first_model(endpoint, options) : options.model;

  // The workload, fixed by the seed: prompts and arrival offsets.
  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int> token(3, options.token_id_max - 1);
  std::exponential_distribution<double> gap(options.rate > 0 ? options.rate : 1.0);
  std::vector<std::string> bodies;
  std::vector<double> arrival_s;
  std::vector<int> shared;
  for (int i = 0; i < options.prompt_tokens; ++i) shared.push_back(token(rng));
  double t = 0.0;
  for (int r = 0; r < options.requests; ++r) {
    std::vector<int> prompt = options.prompt_ids.empty() ? shared : options.prompt_ids;
    if (!options.shared_prompt && options.prompt_ids.empty()) {
      for (int& id : prompt) id = token(rng);
    }
    json body = {{"model", model}, {"prompt", prompt}, {"max_tokens", options.output_tokens}, {"temperature", 0},
                 {"ignore_eos", true}, {"stream", options.stream}};
    if (options.stream) body["stream_options"] = {{"include_usage", true}};
    bodies.push_back(body.dump());
    arrival_s.push_back(t);
    if (options.rate > 0) t += gap(rng);
  }

  BenchResult result;
  result.requests.resize(size_t(options.requests));
  std::atomic<int> next{0};
  const auto start = Clock::now();
  std::atomic<int> finished{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < std::min(options.concurrency, options.requests); ++c) {
    clients.emplace_back([&] {
      for (int r = next.fetch_add(1); r < options.requests; r = next.fetch_add(1)) {
        std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrival_s[size_t(r)])));
        result.requests[size_t(r)] = send_request(endpoint, options, bodies[size_t(r)]);
        const int done = finished.fetch_add(1) + 1;
        if (!options.quiet && (done % std::max(1, options.requests / 10) == 0 || done == options.requests)) {
          fmt::print(stderr, "\rbench: {}/{} requests", done, options.requests);
        }
      }
    });
  }
  for (auto& client : clients) client.join();
  if (!options.quiet) fmt::print(stderr, "\n");
  result.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  for (const RequestTiming& timing : result.requests) {
    if (timing.ok) {
      ++result.completed;
      result.generated_tokens += uint64_t(timing.completion_tokens);
    } else {
      ++result.failed;
    }
  }
  result.generated_tok_per_s = result.wall_s > 0 ? double(result.generated_tokens) / result.wall_s : 0.0;
  result.requests_per_s = result.wall_s > 0 ? double(result.completed) / result.wall_s : 0.0;
  return result;
}

nlohmann::ordered_json BenchResult::to_json(const BenchOptions& options) const {
  std::vector<double> ttft, tpot, latency;
  for (const RequestTiming& timing : requests) {
    if (!timing.ok) continue;
    ttft.push_back(timing.ttft_ms);
    if (timing.tpot_ms > 0) tpot.push_back(timing.tpot_ms);
    latency.push_back(timing.latency_ms);
  }
  auto summary = [](const std::vector<double>& values) {
    return nlohmann::ordered_json{{"p50", percentile(values, 50)}, {"p90", percentile(values, 90)},
                                  {"p99", percentile(values, 99)}, {"max", percentile(values, 100)}};
  };
  nlohmann::ordered_json out;
  out["workload"] = {{"url", options.url}, {"requests", options.requests}, {"concurrency", options.concurrency},
                     {"rate", options.rate}, {"prompt_tokens", options.prompt_tokens},
                     {"output_tokens", options.output_tokens}, {"stream", options.stream},
                     {"shared_prompt", options.shared_prompt}, {"seed", options.seed}};
  out["completed"] = completed;
  out["failed"] = failed;
  out["wall_s"] = wall_s;
  out["generated_tokens"] = generated_tokens;
  out["generated_tok_per_s"] = generated_tok_per_s;
  out["requests_per_s"] = requests_per_s;
  out["ttft_ms"] = summary(ttft);
  out["tpot_ms"] = summary(tpot);
  out["latency_ms"] = summary(latency);
  return out;
}

int run_bench(const BenchOptions& options) {
  const BenchResult result = run_load(options);
  const nlohmann::ordered_json summary = result.to_json(options);
  fmt::print("ch09_production bench: {} requests to {} ({} at a time, {}), {} prompt + {} output tokens each\n",
             options.requests, options.url, options.concurrency,
             options.rate > 0 ? fmt::format("Poisson arrivals at {}/s", options.rate) : "all at once",
             options.prompt_tokens, options.output_tokens);
  fmt::print("  completed {}  failed {}  wall {:.2f} s\n", result.completed, result.failed, result.wall_s);
  fmt::print("  throughput  {:.1f} generated tok/s, {:.2f} requests/s\n", result.generated_tok_per_s, result.requests_per_s);
  auto line = [&](const char* name, const char* key) {
    const auto& s = summary[key];
    fmt::print("  {:<12} p50 {:8.1f}  p90 {:8.1f}  p99 {:8.1f}  max {:8.1f} ms\n", name, s["p50"].get<double>(),
               s["p90"].get<double>(), s["p99"].get<double>(), s["max"].get<double>());
  };
  if (options.stream) {
    line("TTFT", "ttft_ms");
    line("TPOT", "tpot_ms");
  }
  line("latency", "latency_ms");
  for (const RequestTiming& timing : result.requests) {
    if (!timing.ok) {
      fmt::print("  first failure: {}\n", timing.error);
      break;
    }
  }
  if (!options.json.empty()) {
    std::ofstream out(options.json);
    if (!out) fail("cannot write {}", options.json);
    out << summary.dump(2) << "\n";
    fmt::print(stderr, "wrote {}\n", options.json);
  }
  return result.failed == 0 ? 0 : 1;
}

}  // namespace infer
