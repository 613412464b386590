// app.cpp: the command line, model discovery and loading shared by every chapter binary.
#include "infer/app/app.h"

#include "infer/core/error.h"
#include "infer/core/model_search.h"
#include "infer/app/hardware.h"
#include "infer/formats/synthetic.h"

#include <omp.h>

#include <cstring>
#include <filesystem>

namespace infer {

namespace fs = std::filesystem;

SamplerConfig CommonOptions::sampler() const {
  SamplerConfig config;
  config.temperature = temperature;
  config.top_p = top_p;
  config.top_k = top_k;
  config.min_p = min_p;
  config.repetition_penalty = repetition_penalty;
  config.presence_penalty = presence_penalty;
  config.frequency_penalty = frequency_penalty;
  config.seed = seed;
  return config;
}

void add_common_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--model", o.model, "Model file: GGUF, llama2.c .bin, or safetensors (file or directory). "
                                     "Default: models/SmolLM2-135M-Instruct.Q4_1.gguf if fetched, else a synthetic model");
  app.add_option("--tokenizer", o.tokenizer, "Tokenizer file for llama2.c models (tokenizer.bin), or a GGUF whose vocabulary to use");
  app.add_option("--device", o.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", o.threads, "CPU threads (0 = all cores)")->check(CLI::Range(0, 1024));
  app.add_option("--prompt", o.prompt, "Prompt text");
  app.add_option("--max-tokens", o.max_tokens, "Tokens to generate")->check(CLI::Range(1, 1 << 20));
  app.add_option("--temperature", o.temperature, "Sampling temperature (0 = greedy)")->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--top-p", o.top_p, "Nucleus sampling threshold")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--top-k", o.top_k, "Keep only the k most likely tokens (0 = off)")->check(CLI::Range(0, 1 << 22));
  app.add_option("--min-p", o.min_p, "Drop tokens below min_p x the top probability (0 = off)")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--repeat-penalty", o.repetition_penalty, "Repetition penalty over the last 64 tokens (1 = off)")
      ->check(CLI::Range(0.01f, 100.0f));
  app.add_option("--presence-penalty", o.presence_penalty, "Subtracted once from the logit of every recent token");
  app.add_option("--frequency-penalty", o.frequency_penalty, "Subtracted per occurrence of every recent token");
  app.add_option("--seed", o.seed, "Sampling seed");
  app.add_option("--json", o.json, "Write the results as JSON to this file");
  app.add_option("--weights", o.weights,
                 "Weight storage format: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, or native (each matrix as the file stores it)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "native"}));
  app.add_option("--weight-layout", o.weight_layout,
                 "CPU layout of F32 and Q8_0/Q4_0/Q4_1 matrices: auto (F32 in 16-row panels where AVX-512 runs their "
                 "kernels, Q8_0/Q4_0/Q4_1 interleaved where AVX-512 VNNI does), interleaved (16 rows side by side: "
                 "panels, block groups), rows (row-major, as the file stores them)")
      ->check(CLI::IsMember({"auto", "interleaved", "rows"}));
  app.add_flag("--chat", o.chat, "Wrap the prompt in the model's chat template");
  app.add_flag("--check-numerics", o.check_numerics,
               "Debug: after every op of the forward pass, stop at the first NaN/Inf naming the layer and op (slow)");
  app.add_option("--synthetic", o.synthetic_preset, "Shape of the synthetic fallback model (tiny, stories260k, smollm2-135m, tinyllama-1.1b)");
}

void remove_options(CLI::App& app, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (!app.remove_option(app.get_option(name))) fail("remove_options: {} is not an option", name);
  }
}

void fall_back_to_cpu_without_gpu(CommonOptions& options) {
  if (options.device != "cuda") return;
  const std::string reason = cuda_unavailable_reason();
  if (reason.empty()) return;
  fmt::print("--device cuda: no usable GPU ({}).\nRunning on the CPU instead.\n\n", reason);
  std::fflush(stdout);
  options.device = "cpu";
}

std::string default_model_path() {
  // models/ under the working directory first (a binary run from another checkout), then the project's
  // search order (infer/core/model_search.h: INFER_MODELS_DIR, <repository>/models, ../shared/models).
  const std::string name = "SmolLM2-135M-Instruct.Q4_1.gguf";
  std::error_code ec;
  if (!env_flag("INFER_HIDE_SHARED_MODELS") && fs::is_regular_file(fs::current_path() / "models" / name, ec))
    return (fs::current_path() / "models" / name).string();
  return find_model_file(name).string();
}

namespace {

// A tokenizer from --tokenizer: a GGUF's embedded vocabulary, a Hugging Face tokenizer.json, or a
// llama2.c tokenizer.bin (told apart by their first bytes).
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path, int vocab_size) {
  auto mapping = MappedFile::open(path);
  if (mapping->size() >= 4 && std::memcmp(mapping->data(), "GGUF", 4) == 0) {
    ModelFile vocabulary = load_gguf(path);
    if (!vocabulary.tokenizer) fail("{}: this GGUF file has no tokenizer.ggml vocabulary", path);
    return make_tokenizer(*vocabulary.tokenizer);
  }
  if (mapping->size() >= 1 && mapping->data()[0] == '{') return make_tokenizer(load_hf_tokenizer_json(path));
  return load_llama2c_tokenizer(path, vocab_size);
}

// tokenizer.json beside a safetensors checkpoint (the directory, or the file's directory).
std::string hf_tokenizer_beside(const std::string& model_path) {
  std::error_code ec;
  const fs::path dir = fs::is_directory(model_path, ec) ? fs::path(model_path) : fs::path(model_path).parent_path();
  const fs::path candidate = dir / "tokenizer.json";
  return fs::is_regular_file(candidate, ec) ? candidate.string() : std::string();
}

}  // namespace

LoadedModel load_model(const CommonOptions& options) {
  LoadedModel loaded;
  std::string path = options.model.empty() ? default_model_path() : options.model;
  if (path.empty()) {
    // No real model: random weights of a real shape, so every code path and timing still runs.
    fmt::print(stderr,
               "notice: no model given and models/SmolLM2-135M-Instruct.Q4_1.gguf is not fetched "
               "(run scripts/fetch_models.sh).\n        Using a synthetic '{}' model with random weights: "
               "timings are real, the text is gibberish.\n",
               options.synthetic_preset);
    SyntheticModel synthetic = make_synthetic_model(synthetic_preset(options.synthetic_preset), /*seed=*/1);
    loaded.file = model_file_from_synthetic(std::move(synthetic));
    loaded.tokenizer = make_tokenizer(*loaded.file.tokenizer);
    loaded.synthetic = true;
    loaded.description = fmt::format("synthetic {} (random weights)", options.synthetic_preset);
    return loaded;
  }
  loaded.file = load_model_file(path);
  loaded.description = path;
  if (!options.tokenizer.empty()) {
    loaded.tokenizer = load_tokenizer_file(options.tokenizer, loaded.file.config.vocab_size);
  } else if (loaded.file.tokenizer) {
    loaded.tokenizer = make_tokenizer(*loaded.file.tokenizer);
  } else if (const std::string json = loaded.file.format == "safetensors" ? hf_tokenizer_beside(path) : ""; !json.empty()) {
    loaded.file.tokenizer = load_hf_tokenizer_json(json);  // keeps the chat template for --chat
    loaded.tokenizer = make_tokenizer(*loaded.file.tokenizer);
  } else {
    fail("{}: this {} model carries no tokenizer; pass --tokenizer PATH (a llama2.c tokenizer.bin, a Hugging "
         "Face tokenizer.json, or a GGUF with the same vocabulary)", path, loaded.file.format);
  }
  if (loaded.tokenizer->vocab_size() > loaded.file.config.vocab_size)
    fail("{}: the tokenizer has {} tokens but the model's vocabulary has only {}", path, loaded.tokenizer->vocab_size(),
         loaded.file.config.vocab_size);
  return loaded;
}

std::vector<int> encode_prompt(const LoadedModel& model, const CommonOptions& options) {
  std::string text = options.prompt;
  if (options.chat && model.file.tokenizer) text = apply_chat_template(*model.file.tokenizer, text);
  std::vector<int> ids = model.tokenizer->encode(text, model.tokenizer->add_bos_by_default());
  if (ids.empty()) fail("the prompt encodes to no tokens; give a non-empty --prompt");
  return ids;
}

int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_num_procs(); }

MachineInfo describe_machine(int threads, double bandwidth_gb_s) {
  MachineInfo machine;
  machine.cpu = cpu_model_name();
  machine.threads = resolve_threads(threads);
  machine.bandwidth_gb_s = bandwidth_gb_s;
  return machine;
}

int run_reporting_errors(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& error) {
    fmt::print(stderr, "error: {}\n", error.what());
  } catch (const std::exception& error) {
    fmt::print(stderr, "error (unexpected): {}\n", error.what());
  }
  return 1;
}

void write_report_json(const Report& report, const std::string& path) {
  report.write_json(path);
  fmt::print(stderr, "wrote {}\n", path);
}

nlohmann::ordered_json model_json(const LoadedModel& model, const std::string& weight_format) {
  nlohmann::ordered_json json;
  json["path"] = model.description;
  json["params"] = model.file.config.n_params();
  json["weight_format"] = weight_format;
  json["synthetic"] = model.synthetic;
  return json;
}

}  // namespace infer
