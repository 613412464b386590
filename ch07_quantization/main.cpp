// ch07_quantization: the same model with its weights in f32 and in GGUF block formats, one row each:
// what a format costs (bits per weight, model bytes), what it buys (decode and prefill speed, GB/s,
// % of the measured bandwidth) and what it loses (perplexity, KL divergence of the next-token
// distribution from f32's, top-1 agreement with f32), all measured in one run on the same tokens.
//
// Quality: every format runs the project's evaluation text (ch07_quantization/eval.txt, written for
// the project) in chunks through its own KV cache, side by side with f32, so each position's two
// distributions are compared without storing them. Speed: greedy decode of --max-tokens tokens
// (end-of-text ignored, fastest of --repeat runs) and one prefill pass of --prefill-tokens tokens.
//
// The row int8_kv is f32 weights with the int8 KV cache (KVDType::int8: one scale per position and kv head):
// its quality is the KV cache's own cost, and its long-context decode column (--long-context tokens cached,
// where the KV read is a visible share of each step's bytes) what it buys; kv_bytes_per_token is the cache's
// real size per position (paged_kv_cache.h).
//
// With a GGUF of quantized weights (the default model is shipped as Q4_1), "f32" is that file
// dequantized: the baseline every format is compared with, so "native" (the file as stored) shows the
// shipped quantization's own cost, and q8_0 / q4_0 / q4_1 are quantized again from those f32 values.
#include "infer/app/app.h"
#include "infer/app/gpu_hardware.h"
#include "infer/app/hardware.h"
#include "infer/core/error.h"
#include "infer/cpu/quant_kernels.h"
#include "infer/engine/generator.h"
#include "infer/model/save_gguf.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string_view>

using namespace infer;

namespace {

struct Variant {
  std::string name;
  WeightFormat format;
  Backend* backend = nullptr;        // the row-major backend for FORMAT@rows rows
  bool rows_layout = false;
  KVDType kv_dtype = KVDType::f32;  // int8 for the int8_kv row
  std::shared_ptr<Weights> weights;  // int8_kv shares f32's
  std::unique_ptr<Transformer> transformer;
  std::unique_ptr<KVCache> eval_cache;
  // quality, summed over the evaluated positions
  double nll = 0.0, kl = 0.0;
  int64_t top1_same = 0, positions = 0;
  // speed
  GenerationResult decode;
  double prefill_ms = 0.0;
  double long_decode_ms = 0.0;  // per token, with --long-context tokens cached (fastest of --repeat)
};

// "int8_kv": f32 weights, int8 KV cache; "FORMAT+int8_kv" (e.g. q8_0+int8_kv): that format's weights with the
// int8 cache; any other name is a weight format with the f32 cache.
constexpr const char* kInt8KvRow = "int8_kv";
constexpr std::string_view kInt8KvSuffix = "+int8_kv";

// "FORMAT@rows" (e.g. q4_0@rows): that format with the matrices row-major as the file stores them, run by
// the row-major kernels (quant_kernels.h: v2-v8), beside the CPU's default interleaved layout (v9): the
// layout's own gain, measured in the same run.
constexpr std::string_view kRowsSuffix = "@rows";

// The weight format of a row's name (its weights: "q4_0@rows" keeps the suffix), and whether it runs the
// int8 KV cache.
std::pair<std::string, bool> split_row_name(const std::string& name) {
  if (name == kInt8KvRow) return {"f32", true};
  if (name.size() > kInt8KvSuffix.size() && name.ends_with(kInt8KvSuffix))
    return {name.substr(0, name.size() - kInt8KvSuffix.size()), true};
  return {name, false};
}

// The format of a weights name and whether it asks for the row-major layout.
std::pair<std::string, bool> split_layout(const std::string& weights_name) {
  if (weights_name.size() > kRowsSuffix.size() && weights_name.ends_with(kRowsSuffix))
    return {weights_name.substr(0, weights_name.size() - kRowsSuffix.size()), true};
  return {weights_name, false};
}

std::string default_eval_text_path() {
  for (const std::filesystem::path& path : {std::filesystem::current_path() / "ch07_quantization" / "eval.txt",
                                            std::filesystem::path(INFER_SOURCE_DIR) / "ch07_quantization" / "eval.txt"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) return path.string();
  }
  return {};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read the evaluation text", path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');)
    if (!item.empty()) items.push_back(item);
  return items;
}

// log-softmax of one row of logits, in double.
void log_softmax(const float* logits, int n, std::vector<double>& out) {
  out.resize(size_t(n));
  const double max = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - max);
  const double log_sum = max + std::log(sum);
  for (int i = 0; i < n; ++i) out[size_t(i)] = double(logits[i]) - log_sum;
}

int argmax(const float* logits, int n) { return int(std::max_element(logits, logits + n) - logits); }

// Bytes and count of the weight matrices (what the block formats change; norms stay f32).
std::pair<uint64_t, uint64_t> matrix_bytes_and_weights(const Weights& weights) {
  uint64_t bytes = 0, count = 0;
  auto add = [&](const Matrix& m) {
    bytes += m.n_bytes();
    count += uint64_t(m.rows) * uint64_t(m.cols);
  };
  add(weights.token_embedding());
  if (!weights.config().tied_embeddings) add(weights.classifier());
  for (const LayerWeights& layer : weights.layers())
    for (const Matrix* m : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down}) add(*m);
  return {bytes, count};
}

// "q4_1 x210, q8_0 x1": the dtypes of the file's matrices, as stored.
std::string dtype_mix(const ModelFile& file) {
  std::map<std::string, int> counts;
  for (const auto& [name, tensor] : file.tensors)
    if (tensor.shape.size() == 2) counts[std::string(dtype_name(tensor.dtype))]++;
  std::string text;
  for (const auto& [name, count] : counts) text += fmt::format("{}{} x{}", text.empty() ? "" : ", ", name, count);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ch07_quantization: weights in int8/int4 GGUF blocks: speed, bandwidth and quality vs f32, one run"};
  CommonOptions options;
  options.max_tokens = 64;
  options.weights = "native";  // from this chapter on, each matrix as the file stores it
  add_common_options(app, options);
  std::string formats_text = "f32,q8_0,q4_1,q4_0,native,int8_kv,q8_0@rows,q4_0@rows";
  std::string eval_path;
  std::string save_path;
  int eval_tokens = 0;
  int chunk = 128;
  int repeat = 2;
  int prefill_tokens = 128;
  int bandwidth_mib = 1024;
  double given_bandwidth = 0.0;
  std::string activations = "auto";
  int long_context = 1024;
  int long_steps = 16;
  app.add_option("--formats", formats_text, "Rows of the table, comma-separated: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, "
                 "q5_1, native, int8_kv (f32 weights + int8 KV cache), FORMAT+int8_kv (e.g. q8_0+int8_kv), FORMAT@rows "
                 "(the matrices row-major, as the file stores them, instead of the CPU's interleaved layout)");
  app.add_option("--long-context", long_context, "Cached tokens of the long-context decode column (0 = skip)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--long-steps", long_steps, "Decode steps timed at --long-context")->check(CLI::Range(1, 4096));
  app.add_option("--eval-text", eval_path, "Text for perplexity / KL / top-1 (default: ch07_quantization/eval.txt)");
  app.add_option("--eval-tokens", eval_tokens, "Evaluate only the first N tokens of the text (0 = all)")->check(CLI::Range(0, 1 << 20));
  app.add_option("--eval-chunk", chunk, "Tokens per forward pass of the evaluation")->check(CLI::Range(1, 4096));
  app.add_option("--repeat", repeat, "Decode and prefill runs per format; the fastest is reported")->check(CLI::Range(1, 100));
  app.add_option("--prefill-tokens", prefill_tokens, "Prompt length of the prefill measurement")->check(CLI::Range(1, 1 << 16));
  app.add_option("--bandwidth-mib", bandwidth_mib, "Buffer size for the bandwidth measurement")->check(CLI::Range(16, 65536));
  app.add_option("--bandwidth-gb-s", given_bandwidth, "Use this bandwidth instead of measuring it");
  app.add_option("--activations", activations,
                 "Activation precision of the integer kernels: auto (each format's measured default), int8, int16")
      ->check(CLI::IsMember({"auto", "int8", "int16"}));
  app.add_option("--save-gguf", save_path, "Write the model with --weights' format as a GGUF to PATH and exit");
  CLI11_PARSE(app, argc, argv);

  return run_reporting_errors([&] {
    fall_back_to_cpu_without_gpu(options);
    const int threads = resolve_threads(options.threads);
    if (activations != "auto")
      cpu::override_activation_bits(activations == "int8" ? cpu::ActivationBits::Int8 : cpu::ActivationBits::Int16);
    auto backend = make_backend(options.device, threads, options.weight_layout);
    // --device cuda: every format runs on the GPU (Q8_0/Q4_0/Q4_1 as blocks: src/cuda/gemv_quant.cu,
    // gemm_quant.cu), and % BW is against the GPU's device-to-device copy bandwidth.
    const bool on_gpu = backend->name() == "cuda";
    const std::string gpu_name = on_gpu ? query_gpu().name : std::string();
    LoadedModel model = load_model(options);
    const ModelConfig& config = model.file.config;

    if (!save_path.empty()) {
      if (model.synthetic) fail("--save-gguf needs a model file (--model), not the synthetic fallback");
      const auto start = std::chrono::steady_clock::now();
      save_gguf(model.file, parse_weight_format(options.weights), save_path);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      fmt::print("wrote {} ({} weights, {:.1f} MB) in {:.0f} ms\n", save_path, options.weights,
                 std::filesystem::file_size(save_path) / 1e6, ms);
      return 0;
    }

    // ---- the evaluation tokens ------------------------------------------------------------------
    if (eval_path.empty()) eval_path = default_eval_text_path();
    if (eval_path.empty()) fail("ch07_quantization/eval.txt not found; pass --eval-text PATH");
    std::vector<int> eval = model.tokenizer->encode(read_file(eval_path), model.tokenizer->add_bos_by_default());
    if (eval_tokens > 0 && int(eval.size()) > eval_tokens) eval.resize(size_t(eval_tokens));
    if (int(eval.size()) > config.max_seq_len) eval.resize(size_t(config.max_seq_len));
    if (eval.size() < 2) fail("{}: the evaluation text needs at least 2 tokens", eval_path);
    const std::vector<int> prompt = encode_prompt(model, options);
    check_generation_length(config, prompt.size(), options.max_tokens, config.max_seq_len);
    if (long_context > 0 && long_context + long_steps > config.max_seq_len) {
      const int fits = std::max(config.max_seq_len - long_steps, 0);
      fmt::print("  note     --long-context {} + {} steps exceeds the model's context of {}: measured at {}\n", long_context,
                 long_steps, config.max_seq_len, fits);
      long_context = fits;
    }

    // ---- the formats, all resident at once ------------------------------------------------------
    std::vector<std::string> names = split_list(formats_text);
    if (names.empty() || names[0] != "f32") names.insert(names.begin(), "f32");  // the baseline comes first
    const int buffer_tokens = std::max({chunk, std::min(prefill_tokens, config.max_seq_len), int(prompt.size())});
    std::unique_ptr<Backend> rows_backend;  // FORMAT@rows rows: a CPU backend that keeps the file's layout
    std::vector<Variant> variants;          // (after rows_backend: destroyed before it)
    for (const std::string& name : names) {
      Variant v;
      v.name = name;
      const auto [format_name, int8_kv] = split_row_name(name);
      const auto [format_only, rows_layout] = split_layout(format_name);
      v.format = parse_weight_format(format_only);
      v.rows_layout = rows_layout;
      v.backend = backend.get();
      if (rows_layout) {
        if (on_gpu) fail("{}: the @rows rows compare the CPU's two weight layouts (--device cpu)", name);
        if (rows_backend == nullptr) rows_backend = make_cpu_backend(threads, "rows");
        v.backend = rows_backend.get();
      }
      v.kv_dtype = int8_kv ? KVDType::int8 : KVDType::f32;
      for (const Variant& other : variants)  // rows of the same weights share them (int8_kv: the f32 row's)
        if (split_row_name(other.name).first == format_name) v.weights = other.weights;
      if (v.weights == nullptr) {
        fmt::print(stderr, "loading {} weights\n", format_name);
        v.weights = std::make_shared<Weights>(model.file, v.format, *v.backend);
      }
      v.transformer = std::make_unique<Transformer>(*v.weights, *v.backend, buffer_tokens);
      variants.push_back(std::move(v));
    }

    fmt::print("ch07_quantization: weights in GGUF block formats vs f32, one run\n");
    // The CPU interleaves Q8_0 / Q4_0 / Q4_1 where its v9 kernels run (infer/core/interleaved.h).
    const bool interleaved = backend->interleaves(DType::Q4_0, 32);
    const std::string row_path(cpu::quant_path_name(cpu::best_quant_path()));
    const std::string dot_path_text =
        interleaved ? fmt::format("v9_avx512_vnni_interleaved, @rows rows {}", row_path) : row_path;
    fmt::print("  cpu      {} ({} threads; integer dot path: {}; activations: q8_0 int{}, q4_0 int{}, q4_1 int{})\n",
               cpu_model_name(), threads, dot_path_text,
               int(cpu::activation_bits(DType::Q8_0)), int(cpu::activation_bits(DType::Q4_0)),
               int(cpu::activation_bits(DType::Q4_1)));
    if (on_gpu) fmt::print("  gpu      {} (--device cuda: every row runs on it, blocks decoded in registers)\n", gpu_name);
    fmt::print("  model    {} ({:.1f} M params; native = {})\n", model.description, config.n_params() / 1e6,
               dtype_mix(model.file));
    fmt::print("  eval     {} ({} tokens, chunks of {}); decode {} tokens greedy, prefill {} tokens, best of {}\n",
               eval_path, eval.size(), chunk, options.max_tokens, prefill_tokens, repeat);

    double bandwidth = given_bandwidth;
    if (bandwidth <= 0.0 && on_gpu) {
      fmt::print(stderr, "measuring GPU copy bandwidth ({} MiB buffer)...\n", bandwidth_mib);
      bandwidth = measure_gpu_copy_bandwidth(size_t(bandwidth_mib) << 20, 10).gb_per_s;
    } else if (bandwidth <= 0.0) {
      fmt::print(stderr, "measuring memory bandwidth ({} MiB buffer, {} threads)...\n", bandwidth_mib, threads);
      bandwidth = measure_read_bandwidth(size_t(bandwidth_mib) << 20, threads, 5).gb_per_s;
    }
    if (on_gpu) {
      fmt::print("  GPU copy bandwidth {:.1f} GB/s (device-to-device, reads + writes counted)\n", bandwidth);
    } else {
      fmt::print("  memory read bandwidth {:.1f} GB/s ({} threads, measured in this run)\n", bandwidth, threads);
    }

    // ---- quality: every format beside f32 on the same tokens -------------------------------------
    const int vocab = config.vocab_size;
    for (Variant& v : variants) v.eval_cache = std::make_unique<KVCache>(*v.backend, config, int(eval.size()), v.kv_dtype);
    const size_t chunk_floats = static_cast<size_t>(chunk) * static_cast<size_t>(vocab);
    std::vector<float> reference_logits(chunk_floats), logits(chunk_floats), last(static_cast<size_t>(vocab));
    std::vector<std::vector<double>> reference_log_p(static_cast<size_t>(chunk));
    for (size_t start = 0; start + 1 < eval.size(); start += size_t(chunk)) {
      const size_t n = std::min(size_t(chunk), eval.size() - 1 - start);  // positions with a next token
      fmt::print(stderr, "\r  evaluating tokens {:5}/{}", start + n, eval.size() - 1);
      const std::span<const int> tokens(eval.data() + start, n);
      for (size_t vi = 0; vi < variants.size(); ++vi) {
        Variant& v = variants[vi];
        float* out = vi == 0 ? reference_logits.data() : logits.data();
        v.transformer->forward(tokens, int(start), *v.eval_cache, last.data(), out);
        if (vi == 0) {
#pragma omp parallel for num_threads(threads)
          for (size_t i = 0; i < n; ++i) log_softmax(reference_logits.data() + i * vocab, vocab, reference_log_p[i]);
        }
        double nll = 0.0, kl = 0.0;
        int64_t same = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : nll, kl, same)
        for (size_t i = 0; i < n; ++i) {
          std::vector<double> log_q;
          log_softmax(out + i * vocab, vocab, log_q);
          const std::vector<double>& log_p = reference_log_p[i];
          double sum = 0.0;
          for (int k = 0; k < vocab; ++k) sum += std::exp(log_p[k]) * (log_p[k] - log_q[k]);
          kl += sum;
          nll -= log_q[size_t(eval[start + i + 1])];
          same += argmax(out + i * vocab, vocab) == argmax(reference_logits.data() + i * vocab, vocab);
        }
        v.nll += nll;
        v.kl += kl;
        v.top1_same += same;
        v.positions += int64_t(n);
      }
    }
    fmt::print(stderr, "\n");
    for (Variant& v : variants) v.eval_cache.reset();

    // ---- speed: decode and prefill ---------------------------------------------------------------
    GenerationOptions generation;
    generation.sampler = options.sampler();
    generation.sampler.temperature = 0.0f;  // greedy, no stop tokens: every run generates max_tokens
    generation.max_new_tokens = options.max_tokens;
    std::vector<int> prefill_prompt;
    for (int i = 0; int(prefill_prompt.size()) < std::min(prefill_tokens, config.max_seq_len); ++i)
      prefill_prompt.push_back(eval[size_t(i) % eval.size()]);
    std::vector<float> prefill_logits(static_cast<size_t>(vocab));
    for (Variant& v : variants) {
      CachedGenerator generator(*v.transformer, v.kv_dtype);
      for (int run = 0; run < repeat; ++run) {
        fmt::print(stderr, "{}: decode run {}/{}\n", v.name, run + 1, repeat);
        GenerationResult result = generator.generate(prompt, generation);
        if (run == 0 || result.decode_ms < v.decode.decode_ms) v.decode = std::move(result);
      }
      KVCache cache(*v.backend, config, int(prefill_prompt.size()), v.kv_dtype);
      for (int run = 0; run < repeat; ++run) {
        const auto start = std::chrono::steady_clock::now();
        v.transformer->forward(prefill_prompt, 0, cache, prefill_logits.data());
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (run == 0 || ms < v.prefill_ms) v.prefill_ms = ms;
      }
      // Decode with long_context tokens cached: the eval text prefilled in chunks, then long_steps one-token
      // passes (the same positions each run: a run overwrites the previous run's rows).
      if (long_context > 0) {
        KVCache long_cache(*v.backend, config, long_context + long_steps, v.kv_dtype);
        std::vector<int> tokens(size_t(long_context + long_steps));
        for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = eval[i % eval.size()];
        fmt::print(stderr, "{}: prefill of {} tokens, then {} decode steps x {}\n", v.name, long_context, long_steps, repeat);
        for (int start = 0; start < long_context; start += chunk)
          v.transformer->forward(std::span<const int>(tokens.data() + start, size_t(std::min(chunk, long_context - start))),
                                 start, long_cache, prefill_logits.data());
        for (int run = 0; run < repeat; ++run) {
          const auto start = std::chrono::steady_clock::now();
          for (int step = 0; step < long_steps; ++step)
            v.transformer->forward(std::span<const int>(tokens.data() + long_context + step, 1), long_context + step,
                                   long_cache, prefill_logits.data());
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                            double(long_steps);
          if (run == 0 || ms < v.long_decode_ms) v.long_decode_ms = ms;
        }
      }
    }

    // ---- the table ---------------------------------------------------------------------------------
    MachineInfo machine = describe_machine(threads, bandwidth);
    if (on_gpu) machine.gpu = gpu_name;
    Report report("ch07_quantization", machine, model_json(model, formats_text));
    for (Variant& v : variants) {
      const GenerationResult& d = v.decode;
      const int decode_tokens = int(d.tokens.size()) - 1;
      // Bytes of the decode steps only (the first token's bytes are the prefill's).
      const uint64_t decode_bytes = d.token_bytes.back() - d.token_bytes.front();
      ReportRow row = Report::make_row(v.name, decode_tokens, d.decode_ms, decode_bytes);
      const auto [matrix_bytes, matrix_weights] = matrix_bytes_and_weights(*v.weights);
      row.extra["bits_per_weight"] = std::round(800.0 * double(matrix_bytes) / double(matrix_weights)) / 100.0;
      row.extra["model_mb"] = std::round(double(v.weights->resident_bytes()) / 1e5) / 10.0;
      row.extra["prefill_tok_per_s"] = std::round(10.0 * 1000.0 * double(prefill_prompt.size()) / v.prefill_ms) / 10.0;
      row.extra["perplexity"] = std::round(1e4 * std::exp(v.nll / double(v.positions))) / 1e4;
      row.extra["kl"] = v.kl / double(v.positions);
      row.extra["top1_agreement"] = std::round(1e5 * double(v.top1_same) / double(v.positions)) / 1e5;
      row.extra["kv_bytes_per_token"] = PagedKVCache::bytes_per_position(config, v.kv_dtype);
      if (long_context > 0)
        row.extra["long_ctx_tok_per_s"] = std::round(100.0 * 1000.0 / v.long_decode_ms) / 100.0;
      report.add_row(std::move(row));
    }
    fmt::print("\n");
    report.print_table(stdout);
    fmt::print("rows: decode of {} tokens after a {}-token prompt (GB/s counts weight + KV bytes read per step);\n"
               "bits_per_weight over the weight matrices; model_mb = weights resident (norms included);\n"
               "perplexity over {} positions of the eval text; kl = mean KL(f32 || format) in nats; top1_agreement =\n"
               "share of positions whose most likely next token is f32's. int8_kv = f32 weights + int8 KV cache (X+int8_kv: X's);\n"
               "kv_bytes_per_token = K + V bytes per cached position over all layers (int8: 2 * n_layers * (kv_dim + 4 *\n"
               "n_kv_heads), f32: 2 * n_layers * kv_dim * 4); long_ctx_tok_per_s = decode tok/s with {} tokens cached.\n",
               options.max_tokens - 1, prompt.size(), variants[0].positions, long_context);

    fmt::print("\ngreedy text (\"{}\", {} tokens):\n", options.prompt, options.max_tokens);
    for (const Variant& v : variants) {
      std::string text = model.tokenizer->decode(v.decode.tokens);
      std::replace(text.begin(), text.end(), '\n', ' ');
      if (text.size() > 110) text = text.substr(0, 110) + "...";
      fmt::print("  {:9} {}\n", v.name, text);
    }

    // ---- the book's claim against this run ----------------------------------------------------------
    const ReportRow& base = report.rows()[0];
    fmt::print("\nthe book: ~4x lower cost, <1% accuracy loss. This run, against f32:\n");
    for (const ReportRow& row : report.rows()) {
      if (row.variant == "f32") continue;
      if (const auto [format_only, rows_layout] = split_layout(row.variant); rows_layout) {
        // The layout's own gain: the same format interleaved (v9) against row-major (v2-v8).
        for (const ReportRow& other : report.rows()) {
          if (other.variant != format_only) continue;
          fmt::print("  {:7} row-major: the interleaved layout decodes {:4.2f}x and prefills {:4.2f}x as fast "
                     "(same weights, same bytes)\n",
                     row.variant, other.tok_per_s / row.tok_per_s,
                     other.extra["prefill_tok_per_s"].get<double>() / row.extra["prefill_tok_per_s"].get<double>());
        }
        continue;
      }
      const auto [format_name, int8_kv] = split_row_name(row.variant);
      if (int8_kv) {
        // The long-context decode against the same weights with the f32 cache (f32's row for int8_kv).
        const ReportRow* same_weights = &base;
        for (const ReportRow& other : report.rows())
          if (other.variant == format_name) same_weights = &other;
        const double ppl = row.extra["perplexity"].get<double>(), base_ppl = base.extra["perplexity"].get<double>();
        fmt::print("  {:7} {:4.2f}x less KV memory ({} vs {} bytes/token), perplexity {:+.2f}% (acceptance: within 1%), "
                   "top-1 {:.2f}%", row.variant,
                   base.extra["kv_bytes_per_token"].get<double>() / row.extra["kv_bytes_per_token"].get<double>(),
                   row.extra["kv_bytes_per_token"].get<uint64_t>(), base.extra["kv_bytes_per_token"].get<uint64_t>(),
                   100.0 * (ppl / base_ppl - 1.0), 100.0 * row.extra["top1_agreement"].get<double>());
        if (long_context > 0)
          fmt::print(", decode at {} cached tokens {:4.2f}x {}'s", long_context,
                     row.extra["long_ctx_tok_per_s"].get<double>() /
                         same_weights->extra["long_ctx_tok_per_s"].get<double>(),
                     same_weights->variant);
        fmt::print("\n");
        continue;
      }
      const double ppl = row.extra["perplexity"].get<double>(), base_ppl = base.extra["perplexity"].get<double>();
      fmt::print("  {:7} {:4.2f}x the decode speed, {:4.2f}x less weight memory, perplexity {:+.2f}%, top-1 {:.2f}%\n",
                 row.variant, row.speedup,
                 base.extra["model_mb"].get<double>() / row.extra["model_mb"].get<double>(), 100.0 * (ppl / base_ppl - 1.0),
                 100.0 * row.extra["top1_agreement"].get<double>());
    }

    if (!options.json.empty()) {
      report.set_field("eval_text", eval_path);
      report.set_field("eval_positions", variants[0].positions);
      report.set_field("quant_path", interleaved ? std::string("v9_avx512_vnni_interleaved") : row_path);
      report.set_field("weight_layout", std::string(interleaved ? "interleaved" : "rows"));
      nlohmann::ordered_json bits = nlohmann::ordered_json::object();
      for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1})
        bits[std::string(dtype_name(type))] = int(cpu::activation_bits(type));
      report.set_field("activation_bits", bits);
      nlohmann::ordered_json texts = nlohmann::ordered_json::object();
      for (const Variant& v : variants) texts[v.name] = model.tokenizer->decode(v.decode.tokens);
      report.set_field("greedy_text", texts);
      write_report_json(report, options.json);
    }
    return 0;
  });
}
