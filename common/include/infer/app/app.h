// app.h: what every chapter binary shares: the common command line (DESIGN.md section 3), finding
// and loading the model and its tokenizer, encoding the prompt, and describing the machine.
#pragma once

#include "infer/formats/model_file.h"
#include "infer/app/report.h"
#include "infer/engine/sampler.h"
#include "infer/tokenizer/tokenizer.h"
#include "infer/model/weights.h"

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace infer {

struct CommonOptions {
  std::string model;            // empty: models/ default if fetched, else a synthetic model
  std::string tokenizer;        // llama2.c models keep their tokenizer in a separate file
  std::string device = "cpu";
  int threads = 0;              // 0: every core
  std::string prompt = "The capital of France is";
  int max_tokens = 32;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 42;
  std::string json;             // write the report here when set
  std::string weights = "f32";  // storage format of the weights: f32, f16, bf16
  std::string weight_layout = "auto";  // CPU: auto, interleaved or rows (make_cpu_backend)
  bool chat = false;            // wrap the prompt in the model's chat template
  std::string synthetic_preset = "smollm2-135m";  // shape of the fallback model
  bool check_numerics = false;  // Transformer::set_check_finite: NaN/Inf scan after every op (slow)

  SamplerConfig sampler() const;
};

// Registers --model, --tokenizer, --device, --threads, --prompt, --max-tokens, --temperature,
// --top-p, --top-k, --min-p, --repeat-penalty, --presence-penalty, --frequency-penalty, --seed,
// --json, --weights, --weight-layout, --chat, --synthetic, --check-numerics on `app`.
void add_common_options(CLI::App& app, CommonOptions& options);

// Removes shared flags a program does not honour (a greedy comparison has no use for --temperature; a server
// takes its prompts over HTTP): every flag a program offers is one it honours (DESIGN.md section 3).
void remove_options(CLI::App& app, std::initializer_list<const char*> names);
// The flags of the sampler (--temperature, --top-p, --top-k, --min-p, --repeat-penalty, --presence-penalty,
// --frequency-penalty, --seed), for programs that decode greedily by construction.
inline constexpr std::initializer_list<const char*> kSamplingOptionNames = {
    "--temperature", "--top-p", "--top-k", "--min-p", "--repeat-penalty", "--presence-penalty", "--frequency-penalty",
    "--seed"};

// --device cuda where no GPU is usable (no device, no driver, or a CPU-only build): every chapter behaves the
// same, saying why on stdout and running on the CPU (options.device becomes "cpu").
void fall_back_to_cpu_without_gpu(CommonOptions& options);

// The default model, SmolLM2-135M-Instruct.Q4_1.gguf: models/ under the working directory, then the
// search order of infer/core/model_search.h (scripts/fetch_models.sh puts it in models/). Empty if absent.
std::string default_model_path();

struct LoadedModel {
  ModelFile file;
  std::unique_ptr<Tokenizer> tokenizer;
  bool synthetic = false;      // random weights: the text is gibberish
  std::string description;     // one line for the output: path or "synthetic <preset>"
};

// Loads --model (or the default, or a synthetic fallback with a notice on stderr) and its tokenizer
// (embedded in GGUF; --tokenizer for llama2.c; a tokenizer.json-free safetensors model needs a GGUF
// vocabulary and is refused with a clear message).
LoadedModel load_model(const CommonOptions& options);

// Prompt ids: chat template if requested, BOS if the tokenizer asks for it.
std::vector<int> encode_prompt(const LoadedModel& model, const CommonOptions& options);

// CPU model, thread count (resolved from `threads`, 0 = all cores) and the bandwidth to compare to.
MachineInfo describe_machine(int threads, double bandwidth_gb_s);
int resolve_threads(int threads);

// Runs a chapter's body and returns its exit status; an infer::Error (bad input: a corrupt model, an
// over-long prompt) or any other exception is printed as "error: ..." and gives status 1, never a crash.
int run_reporting_errors(const std::function<int()>& body);

// Writes the report's JSON to `path` and says so on stderr.
void write_report_json(const Report& report, const std::string& path);

// The "model" object of the JSON report.
nlohmann::ordered_json model_json(const LoadedModel& model, const std::string& weight_format);

}  // namespace infer
