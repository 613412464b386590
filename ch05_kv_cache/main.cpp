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
#include <memory>

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

// ==== the chapter's steps, in the order main() runs them ============================================

struct Settings {
  int naive_max = 256;
  int repeat = 3;
  int prefill_tokens = 128;
  int bandwidth_mib = 1024;
  double given_bandwidth = 0.0;
  std::string kv_cache = "f32";  // --kv-cache: the cache's element type (ch07's int8 option)
  KVDType kv_dtype() const { return parse_kv_dtype(kv_cache); }
};

// What every step shares: the backend, the model and its weights, the prompt.
struct Setup {
  int threads = 1;
  std::unique_ptr<Backend> backend;
  LoadedModel model;
  std::unique_ptr<Weights> weights;
  uint64_t weight_bytes = 0;  // read per forward pass
  std::vector<int> prompt;
  bool on_gpu = false;
  std::string gpu_name;
  const ModelConfig& config() const { return model.file.config; }
};

Setup load_setup(const CommonOptions& options) {
  Setup setup;
  setup.threads = resolve_threads(options.threads);
  setup.backend = make_backend(options.device, setup.threads, options.weight_layout);
  setup.model = load_model(options);
  setup.weights = std::make_unique<Weights>(setup.model.file, parse_weight_format(options.weights), *setup.backend);
  setup.weight_bytes = setup.weights->bytes_per_forward(1);
  setup.prompt = encode_prompt(setup.model, options);
  check_generation_length(setup.config(), setup.prompt.size(), options.max_tokens, setup.config().max_seq_len);
  setup.on_gpu = setup.backend->name() == "cuda";
  if (setup.on_gpu) setup.gpu_name = query_gpu().name;
  return setup;
}

void print_header(const Setup& setup, const CommonOptions& options) {
  fmt::print("ch05_kv_cache: naive decoding vs the KV cache\n");
  fmt::print("  cpu     {}\n  threads {}\n", cpu_model_name(), setup.threads);
  if (setup.on_gpu) fmt::print("  gpu     {} (--device cuda: both decoders run on it)\n", setup.gpu_name);
  fmt::print("  model   {} ({:.1f} M params, {} weights, {:.1f} MB read per token)\n", setup.model.description,
             setup.config().n_params() / 1e6, options.weights, setup.weight_bytes / 1e6);
}

// The ceiling is the bandwidth of the memory the weights stream from: host RAM for the CPU, the GPU's HBM
// (device-to-device copy, reads + writes counted) for CUDA.
double measure_bandwidth(const Setup& setup, const Settings& settings) {
  double bandwidth = settings.given_bandwidth;
  if (bandwidth <= 0.0) {
    if (setup.on_gpu) {
      fmt::print(stderr, "measuring GPU copy bandwidth ({} MiB buffer)...\n", settings.bandwidth_mib);
      bandwidth = measure_gpu_copy_bandwidth(size_t(settings.bandwidth_mib) << 20, 10).gb_per_s;
    } else {
      fmt::print(stderr, "measuring memory bandwidth ({} MiB buffer, {} threads)...\n", settings.bandwidth_mib, setup.threads);
      bandwidth = measure_read_bandwidth(size_t(settings.bandwidth_mib) << 20, setup.threads, 5).gb_per_s;
    }
  }
  fmt::print("  {} {:.1f} GB/s: the ceiling for {:.1f} tok/s at {:.1f} MB/token\n",
             setup.on_gpu ? "GPU copy bandwidth" : fmt::format("memory read bandwidth ({} threads)", setup.threads),
             bandwidth, bandwidth * 1e9 / double(setup.weight_bytes), setup.weight_bytes / 1e6);
  return bandwidth;
}

struct Decodes {
  GenerationResult naive;   // empty when --naive-max 0
  GenerationResult cached;  // the fastest of --repeat runs
  int naive_tokens = 0;
};

// Part 1's runs: greedy, no stop tokens, so every run generates exactly its length and the rows compare
// equal work.
Decodes run_decoders(Transformer& transformer, const Setup& setup, const CommonOptions& options, const Settings& settings) {
  Decodes decodes;
  decodes.naive_tokens = std::min(settings.naive_max, options.max_tokens);
  GenerationOptions generation;
  generation.sampler.temperature = 0.0f;  // greedy
  fmt::print("\n== Part 1: naive vs KV cache, greedy, {} prompt tokens, end-of-text ignored ==\n", setup.prompt.size());
  if (decodes.naive_tokens > 0) {
    fmt::print(stderr, "naive decoder, {} tokens (every step reruns the whole prefix: this takes a while)\n",
               decodes.naive_tokens);
    NaiveGenerator naive_generator(transformer, settings.kv_dtype());
    generation.max_new_tokens = decodes.naive_tokens;
    decodes.naive = naive_generator.generate(setup.prompt, generation, progress("naive   ", decodes.naive_tokens));
  }
  CachedGenerator cached_generator(transformer, settings.kv_dtype());
  generation.max_new_tokens = options.max_tokens;
  for (int run = 0; run < settings.repeat; ++run) {
    fmt::print(stderr, "KV-cache decoder, {} tokens, run {}/{}\n", options.max_tokens, run + 1, settings.repeat);
    GenerationResult result = cached_generator.generate(setup.prompt, generation, progress("kv_cache", options.max_tokens));
    if (run > 0 && result.tokens != decodes.cached.tokens) fail("the KV-cache decoder gave different tokens on run {}", run + 1);
    if (run == 0 || result.total_ms < decodes.cached.total_ms) decodes.cached = std::move(result);
  }
  return decodes;
}

struct TokenCheck {
  bool identical = true;
  size_t first_difference = 0;
  bool is_bug = false;  // a difference that numerics cannot explain
};

// Same tokens: the naive run's tokens must be the first naive_tokens of the cached run's. One exception,
// numerics and not the cache: on the GPU with f16/bf16 weights a multi-token pass (every naive step, the
// cached prefill) rounds the activations to the weights' type for the tensor cores while a one-token pass
// (the cached decode GEMV) keeps them fp32, so near-tied logits may pick different tokens. There a difference
// is reported, not fatal; f32 weights (or the CPU) must agree.
TokenCheck compare_tokens(const Decodes& decodes, const Setup& setup, const CommonOptions& options) {
  TokenCheck check;
  const auto& naive = decodes.naive.tokens;
  const auto& cached = decodes.cached.tokens;
  check.identical = std::equal(naive.begin(), naive.end(), cached.begin());
  check.first_difference = naive.size();
  if (check.identical) return check;
  check.first_difference = 0;
  while (naive[check.first_difference] == cached[check.first_difference]) ++check.first_difference;
  fmt::print("tokens identical: NO - first difference at generated token {} (naive {}, kv_cache {})\n",
             check.first_difference, naive[check.first_difference], cached[check.first_difference]);
  const bool mixed_precision = setup.on_gpu && options.weights != "f32";
  check.is_bug = !mixed_precision;
  if (mixed_precision) {
    fmt::print("  (expected possible with {} weights on the GPU: the naive passes' GEMMs round activations to {},\n"
               "   the decode GEMV keeps them fp32; run --weights f32 for the exact comparison)\n",
               options.weights, options.weights);
  }
  return check;
}

void print_output_text(const Setup& setup, const Decodes& decodes, const CommonOptions& options) {
  std::string text;
  int previous = setup.prompt.back();
  for (int token : decodes.cached.tokens) {
    text += setup.model.tokenizer->decode_token(previous, token);
    previous = token;
  }
  fmt::print("prompt: {}\noutput: {}\n\n", options.prompt, text);
}

// Part 1's table: for each length, the naive row (when it ran that far) and the kv_cache row.
Report part1_table(const Setup& setup, const Decodes& decodes, const TokenCheck& check, double bandwidth,
                   const CommonOptions& options, const Settings& settings) {
  MachineInfo machine = describe_machine(setup.threads, bandwidth);
  if (setup.on_gpu) machine.gpu = setup.gpu_name;
  Report report("ch05_kv_cache", machine, model_json(setup.model, options.weights));
  const KVCache sizing(*setup.backend, setup.config(), 1, settings.kv_dtype());  // only for bytes_for, the formula
  const GenerationResult& naive = decodes.naive;
  const GenerationResult& cached = decodes.cached;
  for (int length : generation_lengths(options.max_tokens)) {
    const bool with_naive = length <= decodes.naive_tokens;
    if (with_naive) {
      ReportRow row = Report::make_row("naive", length, naive.token_ms[length - 1], naive.token_bytes[length - 1]);
      row.extra["vs_naive"] = 1.0;
      row.extra["last_token_ms"] = last_token_ms(naive, length);
      row.extra["kv_bytes"] = nullptr;  // nothing kept between steps
      report.add_row(std::move(row));
    }
    ReportRow row = Report::make_row("kv_cache", length, cached.token_ms[length - 1], cached.token_bytes[length - 1]);
    // A number (tok/s ratio at the same length), or null where the naive decoder did not run that far.
    row.extra["vs_naive"] = with_naive ? nlohmann::ordered_json(naive.token_ms[length - 1] / cached.token_ms[length - 1])
                                       : nlohmann::ordered_json(nullptr);
    row.extra["last_token_ms"] = last_token_ms(cached, length);
    row.extra["kv_bytes"] = sizing.bytes_for(int(setup.prompt.size()) + length);
    report.add_row(std::move(row));
  }
  report.print_table(stdout);
  if (naive.tokens.empty())
    fmt::print("tokens identical: not checked (--naive-max 0: the naive decoder did not run)\n");
  else if (!check.identical)
    fmt::print("tokens identical: NO, from generated token {} on (mixed precision on the GPU, see above)\n",
               check.first_difference);
  else
    fmt::print("tokens identical: yes (naive = kv_cache for all {} tokens the naive decoder generated)\n", naive.tokens.size());
  if (decodes.naive_tokens < options.max_tokens)
    fmt::print("naive rows stop at {} tokens (--naive-max {}): its cost grows quadratically with the length\n",
               decodes.naive_tokens, settings.naive_max);
  fmt::print("speedup: vs the first row; vs_naive: kv_cache tok/s / naive tok/s at the same length (- where the naive\n"
             "decoder did not run). GB/s counts weights + KV bytes. last_token_ms: the time of the length-th token alone.\n");
  fmt::print("\nWhy the naive cost grows quadratically: step t reruns all P + t tokens (P = {} prompt tokens)\n"
             "through every matmul and attends each of them over its prefix, so step t costs ~(P + t) token-passes\n"
             "(plus (P + t)^2 / 2 attention dot products) and T tokens cost ~T*P + T^2/2 token-passes: doubling T\n"
             "quadruples the time (its last_token_ms grows linearly with t). With the cache, step t runs one token\n"
             "and reads the weights once plus t cached K/V rows: T tokens cost ~T token-passes.\n", setup.prompt.size());
  return report;
}

// Part 2: the KV-cache formula with this model's numbers, and what GQA saves. Returns the JSON field.
nlohmann::ordered_json part2_kv_memory(const Setup& setup, const CommonOptions& options, const Settings& settings) {
  const ModelConfig& config = setup.config();
  const KVCache sizing(*setup.backend, config, 1, settings.kv_dtype());
  const int bytes_per_element = sizeof(float);
  const uint64_t per_token = 2ull * config.n_layers * config.n_kv_heads * config.head_dim * bytes_per_element;
  const uint64_t per_token_mha = 2ull * config.n_layers * config.n_heads * config.head_dim * bytes_per_element;
  const int context_tokens = int(setup.prompt.size()) + options.max_tokens;
  const double gqa_saving_pct = 100.0 * (1.0 - double(per_token) / double(per_token_mha));
  fmt::print("\n== Part 2: KV-cache memory ==\n");
  fmt::print("  kv_bytes = 2 (K and V) * n_layers * n_kv_heads * head_dim * bytes/element * tokens\n");
  fmt::print("           = 2 * {} * {} * {} * {} * tokens = {} bytes/token ({:.1f} KiB)\n", config.n_layers,
             config.n_kv_heads, config.head_dim, bytes_per_element, per_token, per_token / 1024.0);
  if (settings.kv_dtype() == KVDType::int8)
    fmt::print("  --kv-cache int8 (ch07): each (position, kv head) row is head_dim int8 values + one 4-byte scale:\n"
               "           2 * {} * ({} * {} * 1 + {} * 4) = {} bytes/token ({:.1f}% of f32's {}); the sizes below use it.\n",
               config.n_layers, config.n_kv_heads, config.head_dim, config.n_kv_heads, sizing.bytes_per_position(),
               100.0 * double(sizing.bytes_per_position()) / double(per_token), per_token);
  fmt::print("  this run ({} tokens): {:.2f} MB;  the model's full context ({} tokens): {:.1f} MB\n", context_tokens,
             sizing.bytes_for(context_tokens) / 1e6, config.max_seq_len, double(sizing.bytes_for(config.max_seq_len)) / 1e6);
  fmt::print("  GQA: {} kv heads for {} query heads. Full multi-head attention would store n_heads = {} heads:\n",
             config.n_kv_heads, config.n_heads, config.n_heads);
  fmt::print("           2 * {} * {} * {} * {} = {} bytes/token, so GQA saves {:.1f}% of the cache\n", config.n_layers,
             config.n_heads, config.head_dim, bytes_per_element, per_token_mha, gqa_saving_pct);
  fmt::print("  and of the attention reads per step (v2_grouped reads each cached row once per kv head).\n");
  fmt::print("  Decode at {} tokens reads {:.2f} MB of K/V per step next to {:.1f} MB of weights ({:.1f}%).\n",
             context_tokens, sizing.bytes_for(context_tokens) / 1e6, setup.weight_bytes / 1e6,
             100.0 * double(sizing.bytes_for(context_tokens)) / double(setup.weight_bytes));
  return {{"formula", "2 * n_layers * n_kv_heads * head_dim * bytes * tokens"},
          {"kv_cache", kv_dtype_name(settings.kv_dtype())},
          {"bytes_per_token_this_cache", sizing.bytes_per_position()},
          {"n_layers", config.n_layers},
          {"n_kv_heads", config.n_kv_heads},
          {"n_heads", config.n_heads},
          {"head_dim", config.head_dim},
          {"bytes_per_element", bytes_per_element},
          {"bytes_per_token", per_token},
          {"bytes_per_token_full_mha", per_token_mha},
          {"gqa_saving_pct", gqa_saving_pct}};
}

// Part 3: the same weights read once for a whole prompt (prefill) vs once per token (decode). Returns the
// JSON field.
nlohmann::ordered_json part3_prefill_vs_decode(Transformer& transformer, const Setup& setup, const Decodes& decodes,
                                               const Settings& settings) {
  const int prefill_tokens = std::min(settings.prefill_tokens, setup.config().max_seq_len);
  fmt::print(stderr, "prefill of {} tokens, {} runs\n", prefill_tokens, settings.repeat);
  const std::vector<int> prefill_prompt = long_prompt(setup.prompt, prefill_tokens);
  KVCache prefill_cache(*setup.backend, setup.config(), prefill_tokens, settings.kv_dtype());
  std::vector<float> logits(size_t(setup.config().vocab_size));
  double prefill_ms = 0.0;
  uint64_t prefill_bytes = 0;
  for (int run = 0; run < settings.repeat; ++run) {
    const auto start = std::chrono::steady_clock::now();
    const ForwardStats stats = transformer.forward(prefill_prompt, 0, prefill_cache, logits.data());
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (run == 0 || ms < prefill_ms) prefill_ms = ms;
    prefill_bytes = stats.weight_bytes + stats.kv_bytes;
  }
  const GenerationResult& cached = decodes.cached;
  const double prefill_rate = 1000.0 * prefill_tokens / prefill_ms;
  // With one generated token there is no decode step: compare with the whole run's rate instead.
  const double decode_rate = cached.tokens.size() > 1 ? cached.decode_tokens_per_second() : cached.tokens_per_second();
  fmt::print("\n== Part 3: prefill (input tokens) vs decode (output tokens) ==\n");
  fmt::print("  prefill  {:4} tokens in one pass: {:8.1f} ms = {:7.1f} tok/s  (weights read once for all of them)\n",
             prefill_tokens, prefill_ms, prefill_rate);
  fmt::print("  prefill  {:4} tokens (this prompt): {:6.1f} ms = {:7.1f} tok/s\n", setup.prompt.size(), cached.prefill_ms,
             1000.0 * double(setup.prompt.size()) / cached.prefill_ms);
  fmt::print("  decode   {:4} tokens one at a time:  {:6.1f} ms = {:7.1f} tok/s  (weights read once per token)\n",
             cached.tokens.size() - 1, cached.decode_ms, decode_rate);
  fmt::print("  an output token costs {:.1f}x an input token here: prefill is parallel over the prompt (GEMM,\n"
             "  compute-bound), decode is serial (GEMV, bandwidth-bound: every step re-reads all the weights and the\n"
             "  whole KV cache).\n", prefill_rate / decode_rate);
  return {{"prefill_tokens", prefill_tokens},
          {"prefill_ms", prefill_ms},
          {"prefill_tok_per_s", prefill_rate},
          {"prefill_gb_per_s", double(prefill_bytes) / prefill_ms / 1e6},
          {"decode_tokens", int(cached.tokens.size()) - 1},
          {"decode_ms", cached.decode_ms},
          {"decode_tok_per_s", decode_rate},
          {"output_vs_input_cost", prefill_rate / decode_rate}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ch05_kv_cache: naive decoding vs a KV cache (same tokens, O(T^2) vs O(T) work)"};
  CommonOptions options;
  options.max_tokens = 256;
  add_common_options(app, options);
  // Both decoders run greedily so that their tokens can be compared: the sampling flags are not offered.
  remove_options(app, kSamplingOptionNames);
  Settings settings;
  app.add_option("--naive-max", settings.naive_max, "Longest generation the naive decoder runs (its cost is quadratic)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--repeat", settings.repeat, "Runs of the cached decoder (and of the prefill); the fastest is reported")
      ->check(CLI::Range(1, 100));
  app.add_option("--prefill-tokens", settings.prefill_tokens, "Prompt length for the prefill vs decode comparison")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--bandwidth-mib", settings.bandwidth_mib, "Buffer size for the bandwidth measurement")->check(CLI::Range(16, 65536));
  app.add_option("--bandwidth-gb-s", settings.given_bandwidth, "Use this bandwidth instead of measuring it");
  app.add_option("--kv-cache", settings.kv_cache, "KV cache element type: f32, or int8 (ch07: one scale per position "
                                                  "and kv head; both decoders use it)");
  CLI11_PARSE(app, argc, argv);

  return run_reporting_errors([&] {
    fall_back_to_cpu_without_gpu(options);
    const Setup setup = load_setup(options);
    print_header(setup, options);
    const double bandwidth = measure_bandwidth(setup, settings);
    // The naive decoder runs prompt + naive tokens in its last pass; prefill runs prefill_tokens.
    const int naive_tokens = std::min(settings.naive_max, options.max_tokens);
    const int buffer_tokens = std::max({int(setup.prompt.size()) + naive_tokens,
                                        std::min(settings.prefill_tokens, setup.config().max_seq_len),
                                        int(setup.prompt.size())});
    Transformer transformer(*setup.weights, *setup.backend, buffer_tokens);
    transformer.set_check_finite(options.check_numerics);

    const Decodes decodes = run_decoders(transformer, setup, options, settings);
    const TokenCheck check = compare_tokens(decodes, setup, options);
    if (check.is_bug) {
      fmt::print(stderr, "error: the KV-cache decoder changed the greedy tokens; this is a bug\n");
      return 2;
    }
    print_output_text(setup, decodes, options);
    Report report = part1_table(setup, decodes, check, bandwidth, options, settings);
    const nlohmann::ordered_json kv_memory = part2_kv_memory(setup, options, settings);
    const nlohmann::ordered_json prefill = part3_prefill_vs_decode(transformer, setup, decodes, settings);

    if (!options.json.empty()) {
      report.set_field("tokens_identical", check.identical);
      if (!check.identical) report.set_field("first_difference", int(check.first_difference));
      report.set_field("naive_max", decodes.naive_tokens);
      report.set_field("prompt_tokens", int(setup.prompt.size()));
      report.set_field("kv_cache", kv_memory);
      report.set_field("prefill_vs_decode", prefill);
      report.set_field("output_tokens", decodes.cached.tokens);
      write_report_json(report, options.json);
    }
    return 0;
  });
}
