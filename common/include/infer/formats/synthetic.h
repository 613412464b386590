// synthetic.h: random-weight models of any shape, written in every format the loaders read.
//
// Tests use them to cover every format, dtype and shape; chapter binaries fall back to them when no
// real model was fetched (their text is gibberish, and they say so). The same seed gives the same
// weights in every format, so the GGUF and safetensors files of one SyntheticModel must produce
// the same logits.
#pragma once

#include "infer/core/dtype.h"
#include "infer/core/model_config.h"
#include "infer/formats/model_file.h"

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <string>
#include <vector>

namespace infer {

// Weights as float32, canonical names and shapes (see model_file.h), Q/K rows in Interleaved order.
struct SyntheticModel {
  ModelConfig config;
  std::map<std::string, std::vector<float>> tensors;
  std::map<std::string, std::vector<int64_t>> shapes;
  TokenizerData tokenizer;  // a small byte-level vocabulary (gpt2 style) that covers all 256 bytes
};

// Named presets with real shapes: "micro" (dim 32, 1 layer: fuzzing), "tiny" (dim 64, 2 layers, GQA), "stories260k", "smollm2-135m",
// "tinyllama-1.1b", "llama3-8b". Throws infer::Error for an unknown name.
ModelConfig synthetic_preset(const std::string& name);

// Weights uniform with standard deviation 1/sqrt(fan_in) so activations stay O(1); norms ~ 1 + small
// noise. Each tensor is drawn from its own stream (seed mixed with its name), so one tensor can be
// regenerated alone (synthetic_tensor) and gives the same values as in the whole model.
SyntheticModel make_synthetic_model(const ModelConfig& config, uint64_t seed);

// The model as an in-memory ModelFile (fp32 tensors it owns), with no file written.
ModelFile model_file_from_synthetic(SyntheticModel model);

// ---- streaming (models too large to hold as fp32: llama3-8b is 32 GB) ----------------------------
// Canonical tensor names and shapes of a Llama with this config, in file order (the llama2.c writer
// uses its own order); output.weight only when !tied_embeddings.
std::vector<std::pair<std::string, std::vector<int64_t>>> llama_tensor_shapes(const ModelConfig& config);
// One tensor of make_synthetic_model(config, seed), generated alone.
std::vector<float> synthetic_tensor(const ModelConfig& config, uint64_t seed, const std::string& name);
// The byte-level vocabulary of vocab_size tokens. Throws infer::Error if vocab_size is too small
// for the 256 byte tokens, the merges and the special tokens.
TokenizerData synthetic_tokenizer(int vocab_size);
// Fills `out` with the fp32 values of the canonical tensor `name`. Writers call it once per tensor
// and write the result before asking for the next, so at most one tensor is held in memory.
using TensorSource = std::function<void(const std::string& name, std::vector<float>& out)>;

// GGUF v3, with tokenizer.ggml.* metadata. Matrices are stored as `dtype` (F32, F16, BF16, Q8_0,
// Q4_0, Q4_1; block formats need row lengths that are multiples of 32 and fall back to F32 for
// rows that are not); 1-D norm weights stay F32, as llama.cpp writes them.
void write_gguf(const std::string& path, const SyntheticModel& model, DType dtype);
// HF layout: `dir`/model.safetensors + `dir`/config.json, HF tensor names, Q/K rows permuted into
// the HalfSplit (neox) order HF checkpoints use. dtype: F32, F16 or BF16.
void write_safetensors(const std::string& dir, const SyntheticModel& model, DType dtype);
// llama2.c legacy (version 0) or version 1 .bin.
void write_llama2c(const std::string& path, const SyntheticModel& model, int version);

// The same writers, reading tensors from a TensorSource (file contents are identical).
void write_gguf(const std::string& path, const ModelConfig& config, const TokenizerData& tokenizer,
                const TensorSource& source, DType dtype);
void write_safetensors(const std::string& dir, const ModelConfig& config, const TensorSource& source, DType dtype);
void write_llama2c(const std::string& path, const ModelConfig& config, const TensorSource& source, int version);

// make_synthetic_model + write_*, streamed tensor by tensor (what tools/synth uses).
void write_synthetic_gguf(const std::string& path, const ModelConfig& config, uint64_t seed, DType dtype);
void write_synthetic_safetensors(const std::string& dir, const ModelConfig& config, uint64_t seed, DType dtype);
void write_synthetic_llama2c(const std::string& path, const ModelConfig& config, uint64_t seed, int version);

}  // namespace infer
