// weights.h: the model's weights resident on a backend, in the storage format a chapter chose.
//
// Built once from a ModelFile: every matrix is converted to the requested WeightFormat on the host
// (F32 or F16; Q8_0/Q4_0/Q4_1 file tensors are dequantized first), then uploaded to the backend.
// Norm weights are always fp32. Every value is checked as it is converted: a NaN or Inf in the file
// (or a value too large for f16) is refused naming the tensor, the count and the first position.
#pragma once

#include "infer/model/backend.h"
#include "infer/formats/model_file.h"

#include <cstdint>
#include <string>
#include <vector>

namespace infer {

enum class WeightFormat : uint8_t { F32, F16, BF16 };
std::string_view weight_format_name(WeightFormat format);
WeightFormat parse_weight_format(const std::string& name);  // throws infer::Error on unknown

struct LayerWeights {
  DeviceArray<float> attn_norm;  // (dim)
  Matrix wq;                     // (n_heads * head_dim, dim)
  Matrix wk;                     // (n_kv_heads * head_dim, dim)
  Matrix wv;                     // (n_kv_heads * head_dim, dim)
  Matrix wo;                     // (dim, n_heads * head_dim)
  DeviceArray<float> ffn_norm;   // (dim)
  Matrix w_gate;                 // (hidden_dim, dim)    w1
  Matrix w_up;                   // (hidden_dim, dim)    w3
  Matrix w_down;                 // (dim, hidden_dim)    w2
};

class Weights {
 public:
  Weights(const ModelFile& file, WeightFormat format, Backend& backend);

  const ModelConfig& config() const { return config_; }
  WeightFormat format() const { return format_; }
  const Matrix& token_embedding() const { return token_embedding_; }  // (vocab, dim)
  const Matrix& classifier() const { return classifier_; }            // (vocab, dim), may alias the embedding
  const float* final_norm() const { return final_norm_.data(); }      // (dim)
  const std::vector<LayerWeights>& layers() const { return layers_; }

  // Bytes one forward pass reads from the weights: every matrix once, the embedding rows it looks
  // up, the norms. (With tied embeddings the classifier is the embedding matrix, read in full.)
  uint64_t bytes_per_forward(int n_tokens) const;
  // Bytes held on the backend.
  uint64_t resident_bytes() const { return resident_bytes_; }
  // The same number computed from the file's config before anything is converted: the constructor
  // refuses (infer::Error naming both sizes) a model whose weights exceed backend.available_memory().
  static uint64_t resident_bytes_for(const ModelConfig& config, WeightFormat format);

 private:
  Matrix upload_matrix(const TensorView& tensor, Backend& backend);
  DeviceArray<float> upload_vector(const TensorView& tensor, Backend& backend);

  ModelConfig config_;
  WeightFormat format_;
  std::vector<DeviceArray<uint8_t>> storage_;  // owns every matrix's bytes
  Matrix token_embedding_;
  Matrix classifier_;
  DeviceArray<float> final_norm_;
  std::vector<LayerWeights> layers_;
  uint64_t resident_bytes_ = 0;
};

}  // namespace infer
