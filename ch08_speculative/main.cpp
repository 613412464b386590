// ch08_speculative: plain decoding against speculative decoding with each kind of draft, on several kinds of prompt.
//
// Part 1 measures what a target pass costs as it scores more tokens at once (1 .. max_gamma + 1) and what one
// token of each draft costs: the two numbers speculative decoding trades against each other.
// Part 2 generates greedily on each prompt (open-ended, code, input-copying) with plain decoding (ch05's
// CachedGenerator) and with the speculative generator over each draft, and tabulates the mean gamma, the
// per-token acceptance rate, tokens per target pass, tok/s, the speedup over plain decoding and the speedup
// Leviathan et al.'s formula predicts from the acceptance rate and the measured draft / target cost ratio. Every
// speculative output must equal plain decoding's token for token (greedy); the run checks it.
// Part 3 is the mix: each method over all prompts (total tokens / total time), the rows of --json.
// Part 4 runs prompt lookup inside ch06's batching Engine (EngineOptions::speculation) with B copies of the
// input-copying prompt, against the plain engine: the policy, fed Part 1's measured cost curve, speculates only
// while fewer than its limit of sequences decode (the `json` field "engine").
#include "infer/app/app.h"
#include "infer/app/hardware.h"
#include "infer/core/error.h"
#include "infer/core/timer.h"
#include "infer/engine/draft.h"
#include "infer/engine/engine.h"
#include "infer/engine/generator.h"
#include "infer/engine/speculative.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <sstream>

using namespace infer;

namespace {

struct PromptCase {
  std::string kind;  // open-ended, code, input-copying
  std::string text;
};

// The built-in prompts: one that invents, one that writes code, one that mostly copies its input.
std::vector<PromptCase> builtin_prompts() {
  return {
      {"open-ended", "Write a short story about a robot who learns to paint."},
      {"code", "Write a Python function that returns the n-th Fibonacci number, with a docstring."},
      {"input-copying",
       "Correct the spelling mistakes in the following text and return the whole corrected text.\n\n"
       "The quick brown fox jumpd over the lazy dog. Every mornig the fox ran through the forrest, looking for "
       "somthing to eat. The dog, who lived on a farm near the river, never chased the fox, becuase he was "
       "too tired from guarding the sheep all night. One day the farmer decided to buy a new dog."},
  };
}

// One method: a name and the draft it runs (none for plain decoding).
struct Method {
  std::string name;
  std::unique_ptr<Draft> draft;
};

// What one method did on one prompt.
struct Outcome {
  GenerationResult result;
  SpeculativeStats stats;  // empty for plain decoding
  bool identical = true;
};

// Per-token cost of a draft: ms of one one-token pass of its model (0 for prompt lookup).
double one_token_ms(Transformer& model, int repeat) {
  KVCache cache(model.backend(), model.config(), 64);
  std::vector<float> logits(size_t(model.config().vocab_size));
  const std::vector<int> context(32, 1);
  model.forward(context, 0, cache, logits.data());
  double best = 1e30;
  for (int run = 0; run < repeat; ++run) {
    const auto start = std::chrono::steady_clock::now();
    model.forward(std::span<const int>(context.data(), 1), 32 + run % 16, cache, logits.data());
    best = std::min(best, elapsed_ms(start));
  }
  return best;
}

// ms of one target pass over `width` tokens after 32 cached positions (the fastest of `repeat`).
double pass_ms(Transformer& model, int width, int repeat) {
  KVCache cache(model.backend(), model.config(), 64);
  std::vector<float> logits(size_t(model.config().vocab_size));
  std::vector<float> all(size_t(width) * model.config().vocab_size);
  const std::vector<int> context(32 + width, 1);
  model.forward(std::span<const int>(context.data(), 32), 0, cache, logits.data());
  double best = 1e30;
  for (int run = 0; run < repeat; ++run) {
    const auto start = std::chrono::steady_clock::now();
    model.forward(std::span<const int>(context.data() + 32, size_t(width)), 32, cache, logits.data(), all.data());
    best = std::min(best, elapsed_ms(start));
  }
  return best;
}

// The prediction with this machine's costs: Leviathan et al.'s expected tokens per round, but each round of g
// guesses costing g c + V(g + 1) one-token target passes (V = Part 1's measured verification cost, not 1), over
// the mix of rounds the run actually chose (gamma_rounds, plain steps included). `verify_cost[n]` = V(n).
double predicted_with_costs(const std::vector<int>& gamma_rounds, double acceptance, double cost_ratio,
                            const std::vector<double>& verify_cost) {
  double tokens = 0.0, passes = 0.0;
  for (size_t g = 0; g < gamma_rounds.size(); ++g) {
    if (gamma_rounds[g] == 0) continue;
    const double v = g + 1 < verify_cost.size() ? verify_cost[g + 1] : verify_cost.back();
    tokens += gamma_rounds[g] * (g == 0 ? 1.0 : expected_tokens_per_round(acceptance, double(g)));
    passes += gamma_rounds[g] * (double(g) * cost_ratio + v);
  }
  return passes > 0.0 ? tokens / passes : 1.0;
}

std::string switches_text(const SpeculativeStats& stats) {
  if (stats.switches.empty()) return "-";
  std::string text;
  for (const SpeculationSwitch& s : stats.switches)
    text += fmt::format("{}{}@{}", text.empty() ? "" : " ", s.on ? "on" : "off", s.token);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ch08_speculative: plain vs speculative decoding (a cheap draft guesses, the model verifies in one pass)"};
  CommonOptions options;
  options.max_tokens = 128;
  add_common_options(app, options);
  std::string draft_model_path, draft_weights = "f32", self_drafts = "q8_0,q4_0", early_exits = "8";
  int gamma = 4, max_gamma = 8, ngram_max = 4, ngram_min = 2, repeat = 5, block_size = 16, runs = 3;
  bool fixed_gamma = false, no_fallback = false, ignore_eos = false;
  std::string engine_batches = "1,4,16";
  double given_bandwidth = 0.0;
  app.add_option("--draft-model", draft_model_path, "A draft model with the target's vocabulary (draft kind a)");
  app.add_option("--draft-weights", draft_weights, "Weight format of --draft-model: f32, f16, bf16, q8_0, q4_0, ...");
  app.add_option("--target-weights", options.weights,
                 "Weight format of the target (the same as --weights): f32, or a quantized target such as q8_0");
  app.add_option("--self-draft", self_drafts,
                 "Comma-separated weight formats of the target's self-drafts (kind b: q8_0, q4_0, bf16, f16); '' for none");
  app.add_option("--early-exit", early_exits, "Comma-separated layer counts k of early-exit drafts (kind c); '' for none");
  app.add_option("--block-size", block_size, "Positions per KV block of the speculative runs' paged cache")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--gamma", gamma, "Guesses per round (the first rounds' value when adaptive)")->check(CLI::Range(1, 16));
  app.add_option("--max-gamma", max_gamma, "Largest gamma the controller may choose")->check(CLI::Range(1, 16));
  app.add_option("--ngram-max", ngram_max, "Longest n-gram prompt lookup matches")->check(CLI::Range(1, 16));
  app.add_option("--ngram-min", ngram_min, "Shortest n-gram prompt lookup matches")->check(CLI::Range(1, 16));
  app.add_option("--engine-batches", engine_batches,
                 "Part 4: comma-separated batch sizes of the engine with prompt lookup; '' to leave Part 4 out");
  app.add_flag("--fixed-gamma", fixed_gamma, "Keep gamma fixed (no adaptive gamma)");
  app.add_flag("--no-fallback", no_fallback, "Never switch speculation off");
  app.add_flag("--ignore-eos", ignore_eos, "Generate --max-tokens tokens whatever the model emits");
  app.add_option("--runs", runs, "Runs of each method on each prompt, alternated over the methods; the fastest is reported "
                 "(runs of one method vary by 5-10% on the 2-core VM)")
      ->check(CLI::Range(1, 20));
  app.add_option("--repeat", repeat, "Runs of each cost measurement (the fastest is kept)")->check(CLI::Range(1, 100));
  app.add_option("--bandwidth-gb-s", given_bandwidth, "Use this bandwidth instead of measuring it");
  CLI11_PARSE(app, argc, argv);
  const bool own_prompt = app.count("--prompt") > 0;

  return run_reporting_errors([&] {
    if (max_gamma < gamma) fail("--gamma {} exceeds --max-gamma {}", gamma, max_gamma);
    const int threads = resolve_threads(options.threads);
    auto backend = make_backend(options.device, threads, options.weight_layout);
    LoadedModel model = load_model(options);
    const ModelConfig& config = model.file.config;
    Weights weights(model.file, parse_weight_format(options.weights), *backend);

    // ---- the prompts --------------------------------------------------------------------------------
    std::vector<PromptCase> prompts = own_prompt ? std::vector<PromptCase>{{"--prompt", options.prompt}} : builtin_prompts();
    std::vector<std::vector<int>> prompt_ids;
    int longest = 0;
    for (const PromptCase& prompt : prompts) {
      CommonOptions encode = options;
      encode.prompt = prompt.text;
      encode.chat = options.chat || !own_prompt;  // the built-in prompts are instructions: the chat template
      prompt_ids.push_back(encode_prompt(model, encode));
      longest = std::max(longest, int(prompt_ids.back().size()));
    }
    const int max_new = options.max_tokens;
    for (const auto& ids : prompt_ids) check_generation_length(config, ids.size(), max_new, config.max_seq_len);
    const int capacity = longest + max_new + max_gamma + 1;
    // Buffers for the longest prompt (one prefill pass), gamma + 1 tokens, and Part 1's 32-token context.
    const int buffer_tokens = std::max({longest, max_gamma + 1, 32});
    Transformer target(weights, *backend, buffer_tokens);

    GenerationOptions generation;
    generation.max_new_tokens = max_new;
    generation.sampler = options.sampler();
    const bool greedy = generation.sampler.temperature == 0.0f;
    if (!ignore_eos)
      for (int id = 0; id < config.vocab_size; ++id)
        if (model.tokenizer->is_end_of_generation(id)) generation.stop_tokens.push_back(id);

    // ---- the drafts -------------------------------------------------------------------------------
    struct DraftModel {
      std::string label;
      std::unique_ptr<ModelFile> file;
      std::unique_ptr<Weights> weights;
      std::unique_ptr<Transformer> model;
      // Self-drafts copy the target's K/V of the prompt instead of prefilling it (ModelDraft::Prefill).
      ModelDraft::Prefill prefill = ModelDraft::Prefill::own_prefill;
    };
    std::vector<DraftModel> draft_models;
    std::vector<Method> methods;
    methods.push_back({"plain", nullptr});
    if (!draft_model_path.empty()) {
      CommonOptions draft_options = options;
      draft_options.model = draft_model_path;
      LoadedModel draft = load_model(draft_options);
      check_draft_compatible(config, draft.file.config, model.tokenizer.get(), draft.tokenizer.get());
      DraftModel entry{fmt::format("draft model {}", draft_weights), std::make_unique<ModelFile>(std::move(draft.file)),
                       nullptr, nullptr, ModelDraft::Prefill::own_prefill};
      entry.weights = std::make_unique<Weights>(*entry.file, parse_weight_format(draft_weights), *backend);
      entry.model = std::make_unique<Transformer>(*entry.weights, *backend, buffer_tokens);
      draft_models.push_back(std::move(entry));
    }
    std::stringstream formats(self_drafts);
    for (std::string format; std::getline(formats, format, ',');) {
      if (format.empty()) continue;
      DraftModel entry{fmt::format("self-draft {}", format), nullptr, nullptr, nullptr, ModelDraft::Prefill::target_prompt_kv};
      entry.weights = std::make_unique<Weights>(model.file, parse_weight_format(format), *backend);
      entry.model = std::make_unique<Transformer>(*entry.weights, *backend, buffer_tokens);
      draft_models.push_back(std::move(entry));
    }
    std::stringstream layer_counts(early_exits);
    for (std::string k; std::getline(layer_counts, k, ',');) {
      if (k.empty()) continue;
      DraftModel entry{fmt::format("early exit {}/{}", k, config.n_layers), nullptr, nullptr, nullptr,
                       ModelDraft::Prefill::own_prefill};  // copies its layers anyway: they are the target's rows
      entry.model = std::make_unique<Transformer>(weights, *backend, buffer_tokens);  // the target's weights
      entry.model->set_layer_limit(std::stoi(k));
      draft_models.push_back(std::move(entry));
    }
    // The speculative runs keep K/V in ch06's paged cache: one pool for the target and the drafts of its
    // shape (self-drafts, early exit), enough for two sequences of `capacity` positions; a draft model of
    // another shape keeps a contiguous cache of its own.
    const int pool_blocks = 2 * ((capacity + block_size - 1) / block_size);
    PagedKVCache paged_cache(*backend, config, pool_blocks, block_size);
    BlockManager pool(pool_blocks, block_size, /*prefix_caching=*/false);
    const KVStorage storage{&paged_cache, &pool};
    auto same_shape = [&](const ModelConfig& c) {
      return c.n_layers == config.n_layers && c.kv_dim() == config.kv_dim();
    };
    for (DraftModel& entry : draft_models)
      methods.push_back({entry.label, std::make_unique<ModelDraft>(entry.label, *entry.model, capacity,
                                                                   same_shape(entry.model->config()) ? storage : KVStorage{},
                                                                   entry.prefill)});
    methods.push_back({"prompt lookup", std::make_unique<NgramDraft>(ngram_max, ngram_min)});

    SpeculativeOptions speculative;
    speculative.gamma = gamma;
    speculative.max_gamma = max_gamma;
    speculative.adaptive = !fixed_gamma;
    speculative.fallback = !no_fallback;

    fmt::print("ch08_speculative: plain vs speculative decoding\n");
    fmt::print("  cpu     {}\n  threads {}\n", cpu_model_name(), threads);
    fmt::print("  model   {} ({:.1f} M params, {} weights, {:.1f} MB read per token)\n", model.description,
               config.n_params() / 1e6, options.weights, weights.bytes_per_forward(1) / 1e6);
    fmt::print("  decoding {}, {} new tokens at most{}; gamma {} ({}), max {}; fallback {}\n",
               greedy ? "greedy" : "sampling", max_new, ignore_eos ? " (end-of-text ignored)" : "", gamma,
               fixed_gamma ? "fixed" : "adaptive", max_gamma, no_fallback ? "off" : "on");
    double bandwidth = given_bandwidth;
    if (bandwidth <= 0.0) {
      fmt::print(stderr, "measuring memory bandwidth (1024 MiB buffer, {} threads)...\n", threads);
      bandwidth = measure_read_bandwidth(size_t(1024) << 20, threads, 5).gb_per_s;
    }
    fmt::print("  memory read bandwidth ({} threads) {:.1f} GB/s\n", threads, bandwidth);

    // ---- Part 1: costs ------------------------------------------------------------------------------
    fmt::print("  each method runs {} time(s) per prompt; the fastest run is reported\n", runs);
    fmt::print("\n== Part 1: what a pass costs (fastest of {}, 32 positions cached) ==\n", repeat);
    const double one_pass = pass_ms(target, 1, repeat);
    fmt::print("  target ({}), one pass over n tokens:\n  n  |   ms   | vs n=1\n", options.weights);
    std::vector<double> verify_cost(size_t(max_gamma) + 2, 1.0);  // V(n) = a pass over n tokens / a pass over 1
    for (int width = 1; width <= max_gamma + 1; ++width) {
      const double ms = width == 1 ? one_pass : pass_ms(target, width, repeat);
      verify_cost[size_t(width)] = ms / one_pass;
      fmt::print("  {:2} | {:6.2f} | {:5.2f}x\n", width, ms, ms / one_pass);
    }
    std::map<std::string, double> draft_cost;  // per-token cost / one target pass: Leviathan's c
    for (DraftModel& entry : draft_models) {
      const double ms = one_token_ms(*entry.model, repeat);
      draft_cost[entry.label] = ms / one_pass;
      fmt::print("  {:<18} one token {:6.2f} ms = {:.2f} of a target pass\n", entry.label, ms, ms / one_pass);
    }
    draft_cost["prompt lookup"] = 0.0;
    fmt::print("  {:<18} a lookup in the token history: ~0\n", "prompt lookup");

    // The controller starts from these costs (Part 1) instead of a warm-up round, then measures its own.
    speculative.pass_cost.assign(verify_cost.begin() + 1, verify_cost.end());

    // ---- Part 2: every method on every prompt -------------------------------------------------------
    MachineInfo machine = describe_machine(threads, bandwidth);
    std::vector<std::vector<Outcome>> outcomes(prompts.size());
    bool all_identical = true;
    std::vector<int> plain_tokens;
    for (size_t p = 0; p < prompts.size(); ++p) {
      fmt::print("\n== Part 2.{}: {} prompt ({} tokens) ==\n", p + 1, prompts[p].kind, prompt_ids[p].size());
      Report report("ch08_speculative", machine, model_json(model, options.weights));
      // The runs alternate over the methods (run 1 of every method, then run 2, ...), and each method keeps
      // its fastest: this VM's memory bandwidth shifts between two levels every few minutes, and methods run
      // back to back would each meet one level, the comparison then the shift rather than the methods.
      outcomes[p].resize(methods.size());
      std::vector<bool> every_run_identical(methods.size(), true);
      for (int run = 0; run < runs; ++run) {
        for (size_t m = 0; m < methods.size(); ++m) {
          Method& method = methods[m];
          fmt::print(stderr, "  {} / {} (run {}/{}) ...\n", prompts[p].kind, method.name, run + 1, runs);
          Outcome attempt;
          if (!method.draft) {
            attempt.result = CachedGenerator(target).generate(prompt_ids[p], generation);
          } else {
            SpeculativeOptions method_options = speculative;
            method_options.draft_cost = draft_cost[method.name];
            SpeculativeGenerator generator(target, *method.draft, method_options, storage);
            attempt.result = generator.generate(prompt_ids[p], generation);
            attempt.stats = generator.stats();
            if (pool.num_free() != pool.num_blocks())
              fail("{}: {} KV blocks were not given back after the run", method.name, pool.num_used());
          }
          // Every run of every method must give plain decoding's first run's tokens (greedy); plain runs first.
          if (!method.draft && run == 0) plain_tokens = attempt.result.tokens;
          every_run_identical[m] = every_run_identical[m] && attempt.result.tokens == plain_tokens;
          Outcome& best = outcomes[p][m];
          if (run == 0 || attempt.result.total_ms < best.result.total_ms) best = std::move(attempt);
        }
      }
      for (size_t m = 0; m < methods.size(); ++m) {
        outcomes[p][m].identical = every_run_identical[m];
        if (greedy) all_identical = all_identical && outcomes[p][m].identical;
      }
      const Outcome& plain = outcomes[p].front();
      std::string text;
      int previous = prompt_ids[p].back();
      for (int token : plain.result.tokens) {
        text += model.tokenizer->decode_token(previous, token);
        previous = token;
      }
      fmt::print("output ({} tokens): {}\n\n", plain.result.tokens.size(), text);
      for (size_t m = 0; m < methods.size(); ++m) {
        const Outcome& o = outcomes[p][m];
        ReportRow row = Report::make_row(methods[m].name, int(o.result.tokens.size()), o.result.total_ms, o.result.bytes_moved);
        const bool speculative_row = methods[m].draft != nullptr;
        const SpeculativeStats& s = o.stats;
        row.extra["gamma"] = speculative_row ? s.mean_gamma() : 0.0;
        row.extra["acceptance"] = speculative_row ? s.acceptance_rate() : 0.0;
        row.extra["tok_per_pass"] = speculative_row ? double(o.result.tokens.size()) / std::max(s.target_passes(), 1) : 1.0;
        row.extra["predicted"] = speculative_row && s.rounds > 0
                                     ? predicted_speedup(s.acceptance_rate(), s.mean_gamma(), draft_cost[methods[m].name])
                                     : 1.0;
        row.extra["predicted_v"] =
            speculative_row ? predicted_with_costs(s.gamma_rounds, s.acceptance_rate(), draft_cost[methods[m].name], verify_cost)
                            : 1.0;
        row.extra["spec_rounds"] = s.rounds;
        row.extra["plain_steps"] = speculative_row ? s.plain_steps : int(o.result.tokens.size());
        row.extra["switches"] = switches_text(s);
        row.extra["identical"] = o.identical;
        report.add_row(std::move(row));
      }
      report.print_table(stdout);
    }

    // ---- Part 3: the mix --------------------------------------------------------------------------------
    fmt::print("\n== Part 3: over the {} prompts (total tokens / total time) ==\n", prompts.size());
    Report report("ch08_speculative", machine, model_json(model, options.weights));
    for (size_t m = 0; m < methods.size(); ++m) {
      int tokens = 0, rounds = 0, drafted = 0, accepted = 0, rejected = 0, passes = 0, switches = 0;
      std::vector<int> gamma_rounds(size_t(max_gamma) + 1, 0);
      double ms = 0.0;
      uint64_t bytes = 0;
      bool identical = true;
      for (size_t p = 0; p < prompts.size(); ++p) {
        const Outcome& o = outcomes[p][m];
        tokens += int(o.result.tokens.size());
        ms += o.result.total_ms;
        bytes += o.result.bytes_moved;
        rounds += o.stats.rounds;
        drafted += o.stats.drafted;
        accepted += o.stats.accepted;
        rejected += o.stats.rejected;
        passes += methods[m].draft ? o.stats.target_passes() : int(o.result.tokens.size());
        switches += int(o.stats.switches.size());
        for (size_t g = 0; g < o.stats.gamma_rounds.size() && g < gamma_rounds.size(); ++g)
          gamma_rounds[g] += o.stats.gamma_rounds[g];
        identical = identical && o.identical;
      }
      ReportRow row = Report::make_row(methods[m].name, tokens, ms, bytes);
      const double acceptance = accepted + rejected > 0 ? double(accepted) / (accepted + rejected) : 0.0;
      const double mean_gamma = rounds > 0 ? double(drafted) / rounds : 0.0;
      row.extra["gamma"] = mean_gamma;
      row.extra["acceptance"] = acceptance;
      row.extra["tok_per_pass"] = double(tokens) / std::max(passes, 1);
      row.extra["predicted"] = rounds > 0 ? predicted_speedup(acceptance, mean_gamma, draft_cost[methods[m].name]) : 1.0;
      row.extra["predicted_v"] =
          methods[m].draft ? predicted_with_costs(gamma_rounds, acceptance, draft_cost[methods[m].name], verify_cost) : 1.0;
      row.extra["draft_cost"] = methods[m].draft ? draft_cost[methods[m].name] : 0.0;
      row.extra["switches"] = switches;
      row.extra["outputs_identical"] = identical;
      report.add_row(std::move(row));
    }
    // Every (prompt, method) row of Part 2, for plotting.
    nlohmann::ordered_json per_prompt = nlohmann::ordered_json::array();
    for (size_t p = 0; p < prompts.size(); ++p) {
      for (size_t m = 0; m < methods.size(); ++m) {
        const Outcome& o = outcomes[p][m];
        const double plain_tps = outcomes[p].front().result.tokens_per_second();
        per_prompt.push_back({{"prompt", prompts[p].kind},
                              {"variant", methods[m].name},
                              {"tokens", o.result.tokens.size()},
                              {"tok_per_s", o.result.tokens_per_second()},
                              {"speedup", o.result.tokens_per_second() / plain_tps},
                              {"acceptance", o.stats.acceptance_rate()},
                              {"predicted_v", methods[m].draft ? predicted_with_costs(o.stats.gamma_rounds, o.stats.acceptance_rate(),
                                                                                       draft_cost[methods[m].name], verify_cost)
                                                               : 1.0},
                              {"gamma", o.stats.mean_gamma()},
                              {"target_passes", methods[m].draft ? o.stats.target_passes() : int(o.result.tokens.size())},
                              {"switches", switches_text(o.stats)},
                              {"outputs_identical", o.identical}});
      }
    }
    report.set_field("per_prompt", per_prompt);
    report.print_table(stdout);
    fmt::print("outputs identical: {} (every speculative output {} plain decoding's, token for token)\n",
               greedy ? (all_identical ? "yes" : "NO") : "not compared (sampling)",
               greedy ? (all_identical ? "equals" : "does NOT equal") : "is drawn from the same distribution as");
    fmt::print("gamma: mean guesses per speculative round; acceptance: per-token rate a = accepted / (accepted + rejected);\n"
               "predicted: Leviathan et al., (1 - a^(gamma+1)) / ((1 - a)(gamma c + 1)), c = a draft token's cost / a\n"
               "target pass (Part 1); it assumes a pass over gamma + 1 tokens costs one pass over 1 (Part 1 shows it does not).\n");
    fmt::print("predicted_v: the same with this machine's costs: a round of g guesses costs g c + V(g + 1) one-token\n"
               "passes (V from Part 1), over the rounds the controller actually ran (plain steps included).\n");

    // ---- the best model draft, chosen by measurement, and the targets -------------------------
    auto mix_speedup = [&](size_t m) {
      int tokens = 0;
      double ms = 0.0;
      for (size_t p = 0; p < prompts.size(); ++p) {
        tokens += int(outcomes[p][m].result.tokens.size());
        ms += outcomes[p][m].result.total_ms;
      }
      return ms > 0.0 ? tokens / ms : 0.0;
    };
    const double plain_rate = mix_speedup(0);
    size_t best = 0;
    for (size_t m = 1; m < methods.size(); ++m)
      if (methods[m].name != "prompt lookup" && (best == 0 || mix_speedup(m) > mix_speedup(best))) best = m;
    double worst = 1e30, lookup_copying = 0.0;
    std::string worst_where;
    for (size_t p = 0; p < prompts.size(); ++p) {
      const double plain_tps = outcomes[p].front().result.tokens_per_second();
      for (size_t m = 1; m < methods.size(); ++m) {
        const double speedup = outcomes[p][m].result.tokens_per_second() / plain_tps;
        if (speedup < worst) {
          worst = speedup;
          worst_where = fmt::format("{} on {}", methods[m].name, prompts[p].kind);
        }
        if (methods[m].name == "prompt lookup" && prompts[p].kind == "input-copying") lookup_copying = speedup;
      }
    }
    nlohmann::ordered_json targets = nlohmann::ordered_json::object();
    if (best > 0) {
      const double speedup = mix_speedup(best) / plain_rate;
      fmt::print("best model draft (measured over the mix): {} at {:.2f}x (target >= 1.6x: {})\n", methods[best].name,
                 speedup, speedup >= 1.6 ? "met" : "not met");
      report.set_field("best_model_draft", methods[best].name);
      targets["best_model_draft_speedup"] = speedup;
      targets["best_model_draft_met"] = speedup >= 1.6;
    }
    if (!own_prompt) {
      fmt::print("prompt lookup on the input-copying prompt: {:.2f}x (target >= 2x: {})\n", lookup_copying,
                 lookup_copying >= 2.0 ? "met" : "not met");
      targets["prompt_lookup_copying_speedup"] = lookup_copying;
      targets["prompt_lookup_copying_met"] = lookup_copying >= 2.0;
    }
    if (methods.size() > 1) {
      fmt::print("slowest speculative run: {:.2f}x ({}; target >= 0.95x: {})\n", worst, worst_where,
                 worst >= 0.95 ? "met" : "not met");
      targets["slowest_speedup"] = worst;
      targets["slowest_met"] = worst >= 0.95;
    }
    report.set_field("targets", targets);
    report.set_field("verify_cost", verify_cost);
    report.set_field("outputs_identical", greedy ? nlohmann::ordered_json(all_identical) : nlohmann::ordered_json(nullptr));
    report.set_field("blocks_free_after", pool.num_free() == pool.num_blocks());
    // ---- Part 4: prompt lookup inside the batching engine ------------------------------------------------
    nlohmann::ordered_json engine_rows = nlohmann::ordered_json::array();
    std::stringstream batch_list(engine_batches);
    std::vector<int> batches;
    for (std::string b; std::getline(batch_list, b, ',');)
      if (!b.empty()) batches.push_back(std::stoi(b));
    if (!batches.empty()) {
      const size_t copying = own_prompt ? 0 : 2;  // the input-copying prompt
      const std::vector<int>& prompt = prompt_ids[copying];
      EngineSpeculation lookup;
      lookup.draft = EngineDraft::prompt_lookup;
      lookup.gamma = gamma;
      lookup.ngram_max = ngram_max;
      lookup.ngram_min = ngram_min;
      lookup.pass_cost.clear();
      for (int n = 1; n <= max_gamma + 1; ++n)  // Part 1's curve, made non-decreasing (a busy moment can dip it)
        lookup.pass_cost.emplace_back(n, std::max(verify_cost[size_t(n)], lookup.pass_cost.empty() ? 1.0 : lookup.pass_cost.back().second));
      fmt::print("\n== Part 4: prompt lookup inside the batching engine ({} prompt, B copies, gamma {}, cost curve of Part 1) ==\n",
                 prompts[copying].kind, gamma);
      fmt::print("  B  | plain tok/s | spec tok/s | speedup | limit | steps speculating | rounds | acceptance | switches off/on | identical\n");
      for (int b : batches) {
        if (b < 1) fail("--engine-batches: batch sizes must be >= 1 (got {})", b);
        double rate[2] = {0.0, 0.0};
        std::vector<std::vector<int>> outputs[2];
        EngineStats engine_stats[2];
        for (int speculate = 0; speculate < 2; ++speculate) {
          EngineOptions engine_options;
          engine_options.block_size = block_size;
          engine_options.max_batch = b;
          engine_options.num_blocks = b * ((int(prompt.size()) + max_new + max_gamma + block_size) / block_size + 1);
          if (speculate) engine_options.speculation = lookup;
          Engine engine(target, engine_options);
          std::map<RequestId, std::vector<int>> tokens;
          RequestParams params;
          params.max_tokens = max_new;
          params.sampler = generation.sampler;
          params.stop_tokens = generation.stop_tokens;
          for (int i = 0; i < b; ++i)
            engine.add_request(prompt, params, [&tokens](const RequestEvent& e) {
              if (e.token >= 0) tokens[e.id].push_back(e.token);
              if (e.finish == FinishReason::error) fail("engine: {}", e.error);
            });
          const auto start = std::chrono::steady_clock::now();
          while (engine.has_work()) engine.step();
          const double ms = elapsed_ms(start);
          int generated = 0;
          for (auto& [id, t] : tokens) {
            generated += int(t.size());
            outputs[speculate].push_back(t);
          }
          rate[speculate] = generated / ms * 1000.0;
          engine_stats[speculate] = engine.stats();
          if (engine_stats[speculate].blocks_free != engine_stats[speculate].blocks_total)
            fail("engine: {} KV blocks were not given back", engine_stats[speculate].blocks_total - engine_stats[speculate].blocks_free);
        }
        const EngineStats& st = engine_stats[1];
        const bool identical = outputs[0] == outputs[1];
        if (greedy) all_identical = all_identical && identical;
        const double acceptance = st.spec_proposed > 0 ? double(st.spec_accepted) / double(st.spec_proposed) : 0.0;
        fmt::print("  {:2} | {:11.2f} | {:10.2f} | {:6.2f}x | {:5} | {:8} of {:6} | {:6} | {:10.2f} | {:7} / {:<5} | {}\n", b,
                   rate[0], rate[1], rate[1] / rate[0], st.spec_batch_limit, st.spec_steps, st.steps, st.spec_rounds,
                   acceptance, st.spec_switched_off, st.spec_switched_on, identical);
        engine_rows.push_back({{"batch", b},
                               {"plain_tok_per_s", rate[0]},
                               {"tok_per_s", rate[1]},
                               {"speedup", rate[1] / rate[0]},
                               {"batch_limit", st.spec_batch_limit},
                               {"steps", st.steps},
                               {"steps_speculating", st.spec_steps},
                               {"rounds", st.spec_rounds},
                               {"proposed", st.spec_proposed},
                               {"accepted", st.spec_accepted},
                               {"switched_off", st.spec_switched_off},
                               {"switched_on", st.spec_switched_on},
                               {"outputs_identical", identical}});
      }
      fmt::print("acceptance here: accepted / proposed guesses; limit: speculation runs while fewer sequences decode\n");
      report.set_field("engine", engine_rows);
    }

    report.set_field("outputs_identical", greedy ? nlohmann::ordered_json(all_identical) : nlohmann::ordered_json(nullptr));
    if (!options.json.empty()) write_report_json(report, options.json);
    if (greedy && !all_identical) {
      fmt::print(stderr, "error: a speculative output differs from plain greedy decoding; this is a bug\n");
      return 2;
    }
    return 0;
  });
}
