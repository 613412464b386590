// weights.h: the model's weights resident on a backend, in the storage format a chapter chose.
//
// Built once from a ModelFile: every matrix is converted to the requested WeightFormat on the host
// (dequantized to f32 first, then stored as f32, f16, bf16 or quantized to Q8_0/Q4_0/Q4_1/Q5_0/Q5_1),
// then uploaded to the backend. Native keeps every matrix in the dtype the file stores; so does a
// block format equal to the file's. On the CPU such a matrix is used straight from the memory-mapped
// file (no copy). A matrix whose rows are not whole blocks of the target stays f32.
// Norm weights are always fp32. Every value is checked as it is converted: a NaN or Inf in the file
// (or a value too large for f16) is refused naming the tensor, the count and the first position.
#pragma once

#include "infer/model/backend.h"
#include "infer/formats/model_file.h"

#include <cstdint>
#include <string>
#include <vector>

namespace infer {

enum class WeightFormat : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Native };
std::string_view weight_format_name(WeightFormat format);  // "f32", ..., "q4_1", "q5_0", "q5_1", "native"
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
  // (Native: counted as f32 here; the constructor uses the file's own dtypes, see below.) With a backend, a
  // matrix it stores in its compute layout (Backend::interleaves: 16-row groups, the last one padded) counts
  // that layout's bytes.
  static uint64_t resident_bytes_for(const ModelConfig& config, WeightFormat format, const Backend* backend = nullptr);
  // The bytes of the file's matrices in `format` (Native: as stored), plus the f32 norms.
  static uint64_t resident_bytes_for(const ModelFile& file, WeightFormat format, const Backend* backend = nullptr);
  // Bytes of matrices used in place from the memory-mapped file (counted in resident_bytes too).
  uint64_t mapped_bytes() const { return mapped_bytes_; }
  // The dtype `format` stores a tensor of dtype `source` with rows of `cols` values in.
  static DType target_dtype(WeightFormat format, DType source, int64_t cols);

 private:
  Matrix upload_matrix(const TensorView& tensor, Backend& backend);
  Matrix store_interleaved(DType type, int rows, int cols, const void* row_major, Backend& backend);
  DeviceArray<float> upload_vector(const TensorView& tensor, Backend& backend);

  ModelConfig config_;
  WeightFormat format_;
  std::vector<DeviceArray<uint8_t>> storage_;  // owns every matrix's bytes
  Matrix token_embedding_;
  Matrix classifier_;
  DeviceArray<float> final_norm_;
  std::vector<LayerWeights> layers_;
  uint64_t resident_bytes_ = 0;
  uint64_t mapped_bytes_ = 0;
  std::shared_ptr<MappedFile> mapping_;  // keeps matrices used in place alive
};

}  // namespace infer
