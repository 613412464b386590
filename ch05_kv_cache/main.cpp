// ch05_kv_cache: the naive decoder against the KV-cache decoder, on the same prompt and tokens.
//
// Part 1 generates tokens greedily with both generators (stop tokens ignored, so every length
// generates exactly that many tokens) and tabulates, for several generation lengths, ms/token,
// tok/s, GB/s and % of the measured bandwidth, the KV-cache bytes and the speedup. The tokens must
// be identical: the cache changes the cost, never the result.
// Part 2 is the KV-cache memory formula with the model's numbers and what GQA saves.
// Part 3 is prefill vs decode: the same weights, read once for a whole prompt vs once per token.
//
// One run per generator gives every length: a greedy run of T tokens is exactly the first T steps of
// a longer run, so the time and bytes at token T (GenerationResult::token_ms / token_bytes) are
// what a T-token run costs. The cached run is repeated (--repeat) and the fastest kept, because the
// machine may be shared; the naive one (minutes at 256 tokens) runs once.
//
// --device cuda runs both decoders on the GPU; "% BW" is then against the GPU's measured
// device-to-device copy bandwidth (gpu_hardware.h), and the JSON's machine.gpu names the GPU.
#include "infer/app/app.h"
#include "infer/core/error.h"
#include "infer/engine/generator.h"
#include "infer/app/gpu_hardware.h"
#include "infer/app/hardware.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

using namespace infer;

namespace {

// "\r naive  37/256 tokens" on stderr while a generator runs; a newline when it is done.
TokenCallback progress(const std::string& label, int total) {
  return [label, total, count = 0](int) mutable {
    ++count;
    if (count == total || count % 8 == 0) fmt::print(stderr, "\r  {} {:4}/{} tokens", label, count, total);
    if (count == total) fmt::print(stderr, "\n");
    return true;
  };
}

// The lengths of the table: 32, 64, ... up to max_tokens, and max_tokens itself.
std::vector<int> generation_lengths(int max_tokens) {
  std::vector<int> lengths;
  for (int length : {32, 64, 128, 256, 512})
    if (length <= max_tokens) lengths.push_back(length);
  if (lengths.empty() || lengths.back() != max_tokens) lengths.push_back(max_tokens);
  return lengths;
}

// Time of token `length` alone (the last step of a length-token run).
double last_token_ms(const GenerationResult& result, int length) {
  return length >= 2 ? result.token_ms[length - 1] - result.token_ms[length - 2] : result.token_ms[0];
}

// A prompt of exactly `count` tokens for the prefill measurement: the prompt's tokens repeated
// (the first one, BOS when present, only once).
std::vector<int> long_prompt(const std::vector<int>& prompt, int count) {
  std::vector<int> tokens = prompt;
  const size_t body = prompt.size() > 1 ? 1 : 0;
  while (int(tokens.size()) < count) tokens.push_back(prompt[body + (tokens.size() - body) % (prompt.size() - body)]);
  tokens.resize(size_t(count));
  return tokens;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ch05_kv_cache: naive decoding vs a KV cache (same tokens, O(T^2) vs O(T) work)"};
  CommonOptions options;
  options.max_tokens = 256;
  add_common_options(app, options);
  int naive_max = 256;
  int repeat = 3;
  int prefill_tokens = 128;
  int bandwidth_mib = 1024;
  double given_bandwidth = 0.0;
  app.add_option("--naive-max", naive_max, "Longest generation the naive decoder runs (its cost is quadratic)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--repeat", repeat, "Runs of the cached decoder (and of the prefill); the fastest is reported")
      ->check(CLI::Range(1, 100));
  app.add_option("--prefill-tokens", prefill_tokens, "Prompt length for the prefill vs decode comparison")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--bandwidth-mib", bandwidth_mib, "Buffer size for the bandwidth measurement")->check(CLI::Range(16, 65536));
  app.add_option("--bandwidth-gb-s", given_bandwidth, "Use this bandwidth instead of measuring it");
  CLI11_PARSE(app, argc, argv);

  return run_reporting_errors([&] {
    const int threads = resolve_threads(options.threads);
    auto backend = make_backend(options.device, threads);
    LoadedModel model = load_model(options);
    const ModelConfig& config = model.file.config;
    Weights weights(model.file, parse_weight_format(options.weights), *backend);
    const uint64_t weight_bytes = weights.bytes_per_forward(1);

    const std::vector<int> prompt = encode_prompt(model, options);
    const int max_tokens = options.max_tokens;
    const int naive_tokens = std::min(naive_max, max_tokens);
    const std::vector<int> lengths = generation_lengths(max_tokens);
    check_generation_length(config, prompt.size(), max_tokens, config.max_seq_len);
    prefill_tokens = std::min(prefill_tokens, config.max_seq_len);

    const bool on_gpu = backend->name() == "cuda";
    const std::string gpu_name = on_gpu ? query_gpu().name : std::string();
    fmt::print("ch05_kv_cache: naive decoding vs the KV cache\n");
    fmt::print("  cpu     {}\n  threads {}\n", cpu_model_name(), threads);
    if (on_gpu) fmt::print("  gpu     {} (--device cuda: both decoders run on it)\n", gpu_name);
    fmt::print("  model   {} ({:.1f} M params, {} weights, {:.1f} MB read per token)\n", model.description,
               config.n_params() / 1e6, options.weights, weight_bytes / 1e6);
    if (options.temperature != 0.0f)
      fmt::print("  note    --temperature ignored: both decoders run greedily so their tokens can be compared\n");

    // The ceiling is the bandwidth of the memory the weights stream from: host RAM for the CPU, the
    // GPU's HBM (device-to-device copy, reads + writes counted) for CUDA.
    double bandwidth = given_bandwidth;
    if (bandwidth <= 0.0) {
      if (on_gpu) {
        fmt::print(stderr, "measuring GPU copy bandwidth ({} MiB buffer)...\n", bandwidth_mib);
        bandwidth = measure_gpu_copy_bandwidth(size_t(bandwidth_mib) << 20, 10).gb_per_s;
      } else {
        fmt::print(stderr, "measuring memory bandwidth ({} MiB buffer, {} threads)...\n", bandwidth_mib, threads);
        bandwidth = measure_read_bandwidth(size_t(bandwidth_mib) << 20, threads, 5).gb_per_s;
      }
    }
    fmt::print("  {} {:.1f} GB/s: the ceiling for {:.1f} tok/s at {:.1f} MB/token\n",
               on_gpu ? "GPU copy bandwidth" : fmt::format("memory read bandwidth ({} threads)", threads), bandwidth,
               bandwidth * 1e9 / double(weight_bytes), weight_bytes / 1e6);

    // The naive decoder runs prompt + naive_tokens tokens in its last pass; prefill runs prefill_tokens.
    const int buffer_tokens = std::max({int(prompt.size()) + naive_tokens, prefill_tokens, int(prompt.size())});
    Transformer transformer(weights, *backend, buffer_tokens);
    GenerationOptions generation;
    generation.sampler = options.sampler();
    generation.sampler.temperature = 0.0f;  // greedy
    // No stop tokens: every run generates exactly its length, so the rows compare equal work.

    // ---- Part 1: naive vs cached ----------------------------------------------------------------
    fmt::print("\n== Part 1: naive vs KV cache, greedy, {} prompt tokens, end-of-text ignored ==\n", prompt.size());
    GenerationResult naive;
    if (naive_tokens > 0) {
      fmt::print(stderr, "naive decoder, {} tokens (every step reruns the whole prefix: this takes a while)\n", naive_tokens);
      NaiveGenerator naive_generator(transformer);
      generation.max_new_tokens = naive_tokens;
      naive = naive_generator.generate(prompt, generation, progress("naive   ", naive_tokens));
    }
    CachedGenerator cached_generator(transformer);
    generation.max_new_tokens = max_tokens;
    GenerationResult cached;
    for (int run = 0; run < repeat; ++run) {
      fmt::print(stderr, "KV-cache decoder, {} tokens, run {}/{}\n", max_tokens, run + 1, repeat);
      GenerationResult result = cached_generator.generate(prompt, generation, progress("kv_cache", max_tokens));
      if (run > 0 && result.tokens != cached.tokens) fail("the KV-cache decoder gave different tokens on run {}", run + 1);
      if (run == 0 || result.total_ms < cached.total_ms) cached = std::move(result);
    }

    // Same tokens: the naive run's tokens must be the first naive_tokens of the cached run's.
    // One exception, numerics and not the cache: on the GPU with f16/bf16 weights a multi-token pass
    // (every naive step, the cached prefill) rounds the activations to the weights' type for the tensor
    // cores while a one-token pass (the cached decode GEMV) keeps them fp32, so near-tied logits may pick
    // different tokens. There a difference is reported, not fatal; f32 weights (or the CPU) must agree.
    const bool mixed_precision = on_gpu && options.weights != "f32";
    const bool identical = std::equal(naive.tokens.begin(), naive.tokens.end(), cached.tokens.begin());
    size_t first_difference = naive.tokens.size();
    if (!identical) {
      first_difference = 0;
      while (naive.tokens[first_difference] == cached.tokens[first_difference]) ++first_difference;
      fmt::print("tokens identical: NO - first difference at generated token {} (naive {}, kv_cache {})\n",
                 first_difference, naive.tokens[first_difference], cached.tokens[first_difference]);
      if (!mixed_precision) {
        fmt::print(stderr, "error: the KV-cache decoder changed the greedy tokens; this is a bug\n");
        return 2;
      }
      fmt::print("  (expected possible with {} weights on the GPU: the naive passes' GEMMs round activations to {},\n"
                 "   the decode GEMV keeps them fp32; run --weights f32 for the exact comparison)\n",
                 options.weights, options.weights);
    }

    std::string text;
    int previous = prompt.back();
    for (int token : cached.tokens) {
      text += model.tokenizer->decode_token(previous, token);
      previous = token;
    }
    fmt::print("prompt: {}\noutput: {}\n\n", options.prompt, text);

    MachineInfo machine = describe_machine(threads, bandwidth);
    if (on_gpu) machine.gpu = gpu_name;
    Report report("ch05_kv_cache", machine, model_json(model, options.weights));
    const KVCache sizing(*backend, config, 1);  // only for bytes_for, the formula
    for (int length : lengths) {
      const bool with_naive = length <= naive_tokens;
      const uint64_t kv_bytes = sizing.bytes_for(int(prompt.size()) + length);
      if (with_naive) {
        ReportRow row = Report::make_row("naive", length, naive.token_ms[length - 1], naive.token_bytes[length - 1]);
        row.extra["vs_naive"] = "1.00x";
        row.extra["last_token_ms"] = last_token_ms(naive, length);
        row.extra["kv_bytes"] = nullptr;  // nothing kept between steps
        report.add_row(std::move(row));
      }
      ReportRow row = Report::make_row("kv_cache", length, cached.token_ms[length - 1], cached.token_bytes[length - 1]);
      row.extra["vs_naive"] = with_naive ? fmt::format("{:.2f}x", naive.token_ms[length - 1] / cached.token_ms[length - 1])
                                         : std::string("(naive not run)");
      row.extra["last_token_ms"] = last_token_ms(cached, length);
      row.extra["kv_bytes"] = kv_bytes;
      report.add_row(std::move(row));
    }
    report.print_table(stdout);
    if (naive.tokens.empty())
      fmt::print("tokens identical: not checked (--naive-max 0: the naive decoder did not run)\n");
    else if (!identical)
      fmt::print("tokens identical: NO, from generated token {} on (mixed precision on the GPU, see above)\n",
                 first_difference);
    else
      fmt::print("tokens identical: yes (naive = kv_cache for all {} tokens the naive decoder generated)\n",
                 naive.tokens.size());
    if (naive_tokens < max_tokens)
      fmt::print("naive rows stop at {} tokens (--naive-max {}): its cost grows quadratically with the length\n",
                 naive_tokens, naive_max);
    fmt::print("speedup: vs the first row; vs_naive: kv_cache vs naive at the same length. GB/s counts weights + KV bytes.\n"
               "last_token_ms: the time of the length-th token alone.\n");
    fmt::print("\nWhy the naive cost grows quadratically: step t reruns all P + t tokens (P = {} prompt tokens)\n"
               "through every matmul and attends each of them over its prefix, so step t costs ~(P + t) token-passes\n"
               "(plus (P + t)^2 / 2 attention dot products) and T tokens cost ~T*P + T^2/2 token-passes: doubling T\n"
               "quadruples the time (its last_token_ms grows linearly with t). With the cache, step t runs one token\n"
               "and reads the weights once plus t cached K/V rows: T tokens cost ~T token-passes.\n", prompt.size());

    // ---- Part 2: the KV-cache formula -------------------------------------------------------------
    const int bytes_per_element = sizeof(float);
    const uint64_t per_token = 2ull * config.n_layers * config.n_kv_heads * config.head_dim * bytes_per_element;
    const uint64_t per_token_mha = 2ull * config.n_layers * config.n_heads * config.head_dim * bytes_per_element;
    const int context_tokens = int(prompt.size()) + max_tokens;
    fmt::print("\n== Part 2: KV-cache memory ==\n");
    fmt::print("  kv_bytes = 2 (K and V) * n_layers * n_kv_heads * head_dim * bytes/element * tokens\n");
    fmt::print("           = 2 * {} * {} * {} * {} * tokens = {} bytes/token ({:.1f} KiB)\n", config.n_layers,
               config.n_kv_heads, config.head_dim, bytes_per_element, per_token, per_token / 1024.0);
    fmt::print("  this run ({} tokens): {:.2f} MB;  the model's full context ({} tokens): {:.1f} MB\n", context_tokens,
               sizing.bytes_for(context_tokens) / 1e6, config.max_seq_len, double(per_token) * config.max_seq_len / 1e6);
    fmt::print("  GQA: {} kv heads for {} query heads. Full multi-head attention would store n_heads = {} heads:\n",
               config.n_kv_heads, config.n_heads, config.n_heads);
    fmt::print("           2 * {} * {} * {} * {} = {} bytes/token, so GQA saves {:.1f}% of the cache\n", config.n_layers,
               config.n_heads, config.head_dim, bytes_per_element, per_token_mha,
               100.0 * (1.0 - double(per_token) / double(per_token_mha)));
    fmt::print("  and of the attention reads per step (v2_grouped reads each cached row once per kv head).\n");
    fmt::print("  Decode at {} tokens reads {:.2f} MB of K/V per step next to {:.1f} MB of weights ({:.1f}%).\n",
               context_tokens, sizing.bytes_for(context_tokens) / 1e6, weight_bytes / 1e6,
               100.0 * double(sizing.bytes_for(context_tokens)) / double(weight_bytes));

    // ---- Part 3: prefill vs decode ----------------------------------------------------------------
    fmt::print(stderr, "prefill of {} tokens, {} runs\n", prefill_tokens, repeat);
    const std::vector<int> prefill_prompt = long_prompt(prompt, prefill_tokens);
    KVCache prefill_cache(*backend, config, prefill_tokens);
    std::vector<float> logits(size_t(config.vocab_size));
    double prefill_ms = 0.0;
    uint64_t prefill_bytes = 0;
    for (int run = 0; run < repeat; ++run) {
      const auto start = std::chrono::steady_clock::now();
      const ForwardStats stats = transformer.forward(prefill_prompt, 0, prefill_cache, logits.data());
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      if (run == 0 || ms < prefill_ms) prefill_ms = ms;
      prefill_bytes = stats.weight_bytes + stats.kv_bytes;
    }
    const double prefill_rate = 1000.0 * prefill_tokens / prefill_ms;
    // With one generated token there is no decode step: compare with the whole run's rate instead.
    const double decode_rate = cached.tokens.size() > 1 ? cached.decode_tokens_per_second() : cached.tokens_per_second();
    fmt::print("\n== Part 3: prefill (input tokens) vs decode (output tokens) ==\n");
    fmt::print("  prefill  {:4} tokens in one pass: {:8.1f} ms = {:7.1f} tok/s  (weights read once for all of them)\n",
               prefill_tokens, prefill_ms, prefill_rate);
    fmt::print("  prefill  {:4} tokens (this prompt): {:6.1f} ms = {:7.1f} tok/s\n", prompt.size(), cached.prefill_ms,
               1000.0 * double(prompt.size()) / cached.prefill_ms);
    fmt::print("  decode   {:4} tokens one at a time:  {:6.1f} ms = {:7.1f} tok/s  (weights read once per token)\n",
               cached.tokens.size() - 1, cached.decode_ms, decode_rate);
    fmt::print("  an output token costs {:.1f}x an input token here: prefill is parallel over the prompt (GEMM,\n"
               "  compute-bound), decode is serial (GEMV, bandwidth-bound: every step re-reads all the weights and the\n"
               "  whole KV cache).\n", prefill_rate / decode_rate);

    if (!options.json.empty()) {
      report.set_field("tokens_identical", identical);
      if (!identical) report.set_field("first_difference", int(first_difference));
      report.set_field("naive_max", naive_tokens);
      report.set_field("prompt_tokens", int(prompt.size()));
      report.set_field("kv_cache", {{"formula", "2 * n_layers * n_kv_heads * head_dim * bytes * tokens"},
                                    {"n_layers", config.n_layers},
                                    {"n_kv_heads", config.n_kv_heads},
                                    {"n_heads", config.n_heads},
                                    {"head_dim", config.head_dim},
                                    {"bytes_per_element", bytes_per_element},
                                    {"bytes_per_token", per_token},
                                    {"bytes_per_token_full_mha", per_token_mha},
                                    {"gqa_saving_pct", 100.0 * (1.0 - double(per_token) / double(per_token_mha))}});
      report.set_field("prefill_vs_decode", {{"prefill_tokens", prefill_tokens},
                                             {"prefill_ms", prefill_ms},
                                             {"prefill_tok_per_s", prefill_rate},
                                             {"prefill_gb_per_s", double(prefill_bytes) / prefill_ms / 1e6},
                                             {"decode_tokens", int(cached.tokens.size()) - 1},
                                             {"decode_ms", cached.decode_ms},
                                             {"decode_tok_per_s", decode_rate},
                                             {"output_vs_input_cost", prefill_rate / decode_rate}});
      report.set_field("output_tokens", cached.tokens);
      write_report_json(report, options.json);
    }
    return 0;
  });
}
