// synth: writes a random-weight Llama of a real shape in any format the engine loads.
//
//   synth --preset tinyllama-1.1b --dtype f16 --format gguf --seed 1 --out tinyllama-synth.gguf
//
// Tensors are generated, converted and written one at a time, so even llama3-8b needs only one
// tensor's worth of memory. The text such a model produces is gibberish; it exists to measure
// speed and memory on real shapes without downloading weights.
#include "infer/core/error.h"
#include "infer/formats/synthetic.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

namespace {
uint64_t bytes_on_disk(const std::filesystem::path& path) {
  if (!std::filesystem::is_directory(path)) return std::filesystem::file_size(path);
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a synthetic (random-weight) Llama model of a real shape"};
  std::string preset = "tiny", dtype_text = "f32", format = "gguf", out;
  uint64_t seed = 1;
  int llama2c_version = 1;
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0, max_seq_len = 0;
  float rope_theta = 0.0f;
  std::string tied;
  app.add_option("--preset", preset, "tiny, stories260k, smollm2-135m, tinyllama-1.1b, llama3-8b")->capture_default_str();
  app.add_option("--dtype", dtype_text, "matrix dtype: f32, f16, bf16 (all formats); q8_0, q4_0, q4_1 (gguf)")->capture_default_str();
  app.add_option("--format", format, "gguf, safetensors (writes a directory) or llama2c")
      ->check(CLI::IsMember({"gguf", "safetensors", "llama2c"}))->capture_default_str();
  app.add_option("--seed", seed, "weights are a pure function of the seed")->capture_default_str();
  app.add_option("--out", out, "output file (gguf, llama2c) or directory (safetensors)")->required();
  app.add_option("--llama2c-version", llama2c_version, "0 (legacy) or 1")->check(CLI::IsMember({0, 1}))->capture_default_str();
  app.add_option("--dim", dim, "override the preset's model width");
  app.add_option("--hidden-dim", hidden_dim, "override the FFN width");
  app.add_option("--layers", n_layers, "override the number of layers");
  app.add_option("--heads", n_heads, "override the number of query heads");
  app.add_option("--kv-heads", n_kv_heads, "override the number of key/value heads");
  app.add_option("--head-dim", head_dim, "override the head width");
  app.add_option("--vocab", vocab_size, "override the vocabulary size");
  app.add_option("--seq-len", max_seq_len, "override the context length");
  app.add_option("--theta", rope_theta, "override the RoPE base");
  app.add_option("--tied", tied, "override tied embeddings: yes or no")->check(CLI::IsMember({"yes", "no"}));
  CLI11_PARSE(app, argc, argv);

  try {
    infer::ModelConfig config = infer::synthetic_preset(preset);
    auto override_with = [](int& field, int value) { if (value > 0) field = value; };
    override_with(config.dim, dim);
    override_with(config.hidden_dim, hidden_dim);
    override_with(config.n_layers, n_layers);
    override_with(config.n_heads, n_heads);
    override_with(config.n_kv_heads, n_kv_heads);
    override_with(config.vocab_size, vocab_size);
    override_with(config.max_seq_len, max_seq_len);
    if (head_dim > 0) {
      config.head_dim = head_dim;
    } else if (dim > 0 || n_heads > 0) {
      config.head_dim = config.dim / config.n_heads;  // keep dim = n_heads * head_dim when the width changes
    }
    if (rope_theta > 0.0f) config.rope_theta = rope_theta;
    if (!tied.empty()) config.tied_embeddings = tied == "yes";
    config.validate("synth options");

    infer::DType dtype;
    if (!infer::dtype_from_name(dtype_text, dtype)) infer::fail("--dtype: unknown dtype '{}'", dtype_text);

    const auto start = std::chrono::steady_clock::now();
    if (format == "gguf") {
      infer::write_synthetic_gguf(out, config, seed, dtype);
    } else if (format == "safetensors") {
      infer::write_synthetic_safetensors(out, config, seed, dtype);
    } else {
      if (dtype != infer::DType::F32) infer::fail("--dtype: llama2.c files are float32 only");
      infer::write_synthetic_llama2c(out, config, seed, llama2c_version);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const uint64_t bytes = bytes_on_disk(out);
    fmt::print("wrote {} ({}, {}, preset {}, seed {})\n", out, format, dtype_text, preset, seed);
    fmt::print("  dim {} hidden {} layers {} heads {}/{} head_dim {} vocab {} seq {} theta {} tied {}\n", config.dim,
               config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads, config.head_dim, config.vocab_size,
               config.max_seq_len, config.rope_theta, config.tied_embeddings ? "yes" : "no");
    fmt::print("  params {} ({:.3f} B), {} bytes ({:.2f} GB) in {:.1f} s ({:.2f} GB/s)\n", config.n_params(),
               double(config.n_params()) / 1e9, bytes, double(bytes) / 1e9, seconds, double(bytes) / 1e9 / seconds);
  } catch (const std::exception& error) {
    fmt::print(stderr, "synth: {}\n", error.what());
    return 1;
  }
  return 0;
}
