// ch09_production: the serving binary and the book's headline table.
//
//   ch09_production serve  --model PATH --port 8080 --threads N   OpenAI-compatible HTTP server (server.cpp)
//   ch09_production bench  --url http://127.0.0.1:8080 ...         HTTP load generator (bench.cpp)
//   ch09_production ladder --json FILE                             naive -> KV cache -> batching -> ... (ladder.cpp)
#include "bench.h"
#include "ladder.h"
#include "server.h"

#include "infer/app/app.h"

#include <CLI/CLI.hpp>

using namespace infer;

namespace {

void add_serve_options(CLI::App& serve, CommonOptions& common, ServeOptions& options) {
  add_common_options(serve, common);
  // Sampling comes with each request; the prompt too; the server writes no report.
  remove_options(serve, {"--prompt", "--temperature", "--top-p", "--top-k", "--min-p", "--repeat-penalty",
                         "--presence-penalty", "--frequency-penalty", "--json", "--chat"});  // --seed stays: see below
  serve.get_option("--max-tokens")->description("max_tokens of a request that sets none (capped by the context)");
  serve.get_option("--seed")->description("Seed of the first request that sets none (each such request gets the next)");
  serve.add_option("--host", options.host, "Address to listen on (0.0.0.0: every interface)");
  serve.add_option("--port", options.port, "TCP port")->check(CLI::Range(0, 65535));
  serve.add_option("--api-key", options.api_key, "Require 'Authorization: Bearer KEY' on /v1/*");
  serve.add_option("--served-model-name", options.served_model_name, "The model id clients use (default: the file name)");
  serve.add_option("--http-threads", options.http_threads, "Connections served at once")->check(CLI::Range(2, 4096));
  serve.add_option("--max-queued", options.max_queued, "Requests queued beyond the batch before 429")->check(CLI::Range(0, 1 << 20));
  serve.add_option("--max-body-bytes", options.max_body_bytes, "Largest request body (413 beyond)")->check(CLI::Range(1024, 1 << 30));
  serve.add_option("--grace-seconds", options.grace_seconds, "SIGINT/SIGTERM: time for requests in flight")->check(CLI::Range(0.0, 3600.0));
  serve.add_option("--max-batch", options.engine.max_batch, "Sequences per engine step")->check(CLI::Range(1, 4096));
  serve.add_option("--max-step-tokens", options.engine.max_step_tokens, "Token budget of one engine step")->check(CLI::Range(1, 1 << 16));
  serve.add_option("--block-size", options.engine.block_size, "Positions per KV block")->check(CLI::Range(1, 1024));
  serve.add_option("--kv-blocks", options.engine.num_blocks, "KV pool size in blocks (0: sized by the engine)")->check(CLI::Range(0, 1 << 24));
  serve.add_flag("!--no-prefix-caching", options.engine.prefix_caching, "Turn prefix caching off");
  // Quantization: --weights (q8_0, q4_0, q4_1, native, ...) and --kv-cache, as in every chapter. Speculation: ch08's
  // prompt lookup inside the engine; it switches itself off while the batch is too large for it to pay.
  serve.add_option_function<std::string>(
           "--speculative",
           [&options](const std::string& kind) {
             options.engine.speculation.draft = kind == "prompt-lookup" ? EngineDraft::prompt_lookup : EngineDraft::none;
           },
           "Speculative decoding inside the engine: none or prompt-lookup (default none)")
      ->check(CLI::IsMember({"none", "prompt-lookup"}));
  serve.add_option_function<std::string>(
           "--kv-cache", [&options](const std::string& name) { options.engine.kv_dtype = parse_kv_dtype(name); },
           "KV cache element type: f32 (default) or int8 (ch07: one scale per position and kv head)")
      ->check(CLI::IsMember({"f32", "int8"}));
  serve.add_option("--speculative-gamma", options.engine.speculation.gamma, "Guesses per sequence and step")
      ->check(CLI::Range(1, 16));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ch09_production: an OpenAI-compatible server on the batching engine, its load generator, and the speedup ladder"};
  app.require_subcommand(1);

  CommonOptions serve_common;
  serve_common.max_tokens = 256;
  ServeOptions serve_options;
  CLI::App* serve = app.add_subcommand("serve", "Serve the OpenAI API over HTTP (/v1/completions, /v1/chat/completions, /metrics, chat page at /)");
  add_serve_options(*serve, serve_common, serve_options);

  BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand("bench", "Load-test a running server over HTTP: throughput, TTFT / TPOT / latency percentiles");
  add_bench_options(*bench, bench_options);

  CommonOptions ladder_common;
  LadderOptions ladder_options;
  CLI::App* ladder = app.add_subcommand("ladder", "The speedup ladder: naive -> KV cache -> continuous batching -> ... in one run");
  add_ladder_options(*ladder, ladder_common, ladder_options);

  CLI11_PARSE(app, argc, argv);
  return run_reporting_errors([&] {
    if (serve->parsed()) {
      fall_back_to_cpu_without_gpu(serve_common);
      return run_server(serve_common, serve_options);
    }
    if (bench->parsed()) return run_bench(bench_options);
    fall_back_to_cpu_without_gpu(ladder_common);
    return run_ladder(ladder_common, ladder_options);
  });
}
