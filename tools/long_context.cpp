// long_context: prefill and decode speed against the context length (infer/app/long_context.h).
//
//   long_context --weights f32 --threads 2 --contexts 32,128,2048
//
// Prints one row per context length (prefill tok/s of a prompt that long; decode tok/s with that many tokens
// cached) and the two ratios of ch06's acceptance: decode at the longest context / decode at the shortest, and
// prefill of the longest prompt / prefill of the second shortest (128 in the default run).
#include "infer/app/app.h"
#include "infer/app/hardware.h"
#include "infer/app/long_context.h"
#include "infer/core/error.h"
#include "infer/model/backend.h"
#include "infer/model/transformer.h"
#include "infer/model/weights.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>

int main(int argc, char** argv) {
  CLI::App app{"Prefill and decode speed against the context length"};
  infer::CommonOptions options;
  options.threads = 2;
  infer::add_common_options(app, options);
  std::vector<int> contexts = {32, 128, 2048};
  int decode_steps = 16, repeats = 2, block_size = 16;
  app.add_option("--contexts", contexts, "context lengths (comma-separated)")->delimiter(',')->capture_default_str();
  app.add_option("--decode-steps", decode_steps, "decode steps timed per context")->capture_default_str();
  app.add_option("--repeats", repeats, "each measurement repeated, fastest kept")->capture_default_str();
  app.add_option("--block-size", block_size, "KV pool block size")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return infer::run_reporting_errors([&] {
    const infer::LoadedModel loaded = infer::load_model(options);
    auto backend = infer::make_backend(options.device, options.threads, options.weight_layout);
    infer::Weights weights(loaded.file, infer::parse_weight_format(options.weights), *backend);
    const int longest = *std::max_element(contexts.begin(), contexts.end());
    infer::Transformer model(weights, *backend, longest);
    const auto rows = infer::measure_long_context(model, contexts, decode_steps, repeats, block_size);
    fmt::print("{} | {} weights | {} | {} thread(s)\n", loaded.description, options.weights, backend->name(),
               infer::resolve_threads(options.threads));
    fmt::print("{:>8} {:>12} {:>14} {:>14} {:>14} {:>16} {:>18}\n", "context", "prefill ms", "prefill tok/s",
               "decode ms/tok", "decode tok/s", "prefill cpu ms", "decode cpu ms/tok");
    for (const auto& r : rows)
      fmt::print("{:>8} {:>12.1f} {:>14.1f} {:>14.2f} {:>14.2f} {:>16.1f} {:>18.2f}\n", r.context, r.prefill_ms,
                 r.prefill_tok_per_s, r.decode_ms_per_token, r.decode_tok_per_s, r.prefill_cpu_ms,
                 r.decode_cpu_ms_per_token);
    if (rows.size() >= 2) {
      fmt::print("decode ratio  (context {} / {}): {:.3f}\n", rows.back().context, rows.front().context,
                 rows.back().decode_tok_per_s / rows.front().decode_tok_per_s);
      const auto& base = rows.size() >= 3 ? rows[1] : rows[0];
      fmt::print("prefill ratio (prompt {} / {}): {:.3f}\n", rows.back().context, base.context,
                 rows.back().prefill_tok_per_s / base.prefill_tok_per_s);
      // The same ratios from the CPU time (work per token), steadier on a loaded machine.
      fmt::print("cpu-time decode ratio: {:.3f}   cpu-time prefill ratio: {:.3f}\n",
                 rows.front().decode_cpu_ms_per_token / rows.back().decode_cpu_ms_per_token,
                 (base.prefill_cpu_ms / base.context) / (rows.back().prefill_cpu_ms / rows.back().context));
    }
    return 0;
  });
}
