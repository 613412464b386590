// model_config.h: the hyper-parameters of a Llama-family model, filled the same way by every loader.
#pragma once

#include <cstdint>
#include <string>

namespace infer {

// How RoPE pairs up the dimensions of a head (the two conventions are a fixed permutation apart).
//  - Interleaved: rotates (x[2i], x[2i+1]). llama2.c checkpoints and GGUF llama (whose converter
//    permutes the HF Q/K rows into this order).
//  - HalfSplit:   rotates (x[i], x[i + head_dim/2]) ("neox" style). HF safetensors checkpoints.
enum class RopeLayout : uint8_t { Interleaved, HalfSplit };

struct ModelConfig {
  std::string architecture = "llama";
  int dim = 0;            // model width (embedding length)
  int n_layers = 0;
  int n_heads = 0;        // query heads
  int n_kv_heads = 0;     // key/value heads (GQA when < n_heads)
  int head_dim = 0;       // usually dim / n_heads
  int hidden_dim = 0;     // FFN inner width
  int vocab_size = 0;
  int max_seq_len = 0;    // context length the model was trained for
  float rope_theta = 10000.0f;
  RopeLayout rope_layout = RopeLayout::Interleaved;
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;  // classifier shares the token embedding matrix

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Number of weights in the model (embedding counted once when tied).
  int64_t n_params() const;
  // Throws infer::Error naming `source` if a field is out of range or inconsistent.
  void validate(const std::string& source) const;
};

}  // namespace infer
