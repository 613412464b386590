// weights.cpp: converts a ModelFile's tensors into the chosen storage format and uploads them.
#include "infer/weights.h"

#include "infer/error.h"

#include <omp.h>

#include <vector>

namespace infer {

std::string_view weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::F32: return "f32";
    case WeightFormat::F16: return "f16";
    case WeightFormat::BF16: return "bf16";
  }
  return "?";
}

WeightFormat parse_weight_format(const std::string& name) {
  if (name == "f32") return WeightFormat::F32;
  if (name == "f16") return WeightFormat::F16;
  if (name == "bf16") return WeightFormat::BF16;
  fail("unknown weight format '{}' (expected f32, f16 or bf16)", name);
}

namespace {

DType storage_dtype(WeightFormat format) {
  switch (format) {
    case WeightFormat::F32: return DType::F32;
    case WeightFormat::F16: return DType::F16;
    case WeightFormat::BF16: return DType::BF16;
  }
  return DType::F32;
}

}  // namespace

Matrix Weights::upload_matrix(const TensorView& tensor, Backend& backend) {
  if (tensor.shape.size() != 2) fail("tensor '{}' should be a matrix", tensor.name);
  const int rows = int(tensor.shape[0]), cols = int(tensor.shape[1]);
  const DType target = storage_dtype(format_);
  const size_t src_row_bytes = dtype_row_bytes(tensor.dtype, cols);
  const size_t dst_row_bytes = dtype_row_bytes(target, cols);

  // Convert row by row on the host: dequantize to fp32, then store in the target format.
  std::vector<uint8_t> host(dst_row_bytes * rows);
#pragma omp parallel
  {
    std::vector<float> row(cols);
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      dequantize_row(tensor.dtype, static_cast<const uint8_t*>(tensor.data) + size_t(r) * src_row_bytes, row.data(), cols);
      quantize_row(target, row.data(), host.data() + size_t(r) * dst_row_bytes, cols);
    }
  }
  DeviceArray<uint8_t> storage(backend, host.size());
  backend.upload(storage.data(), host.data(), host.size());
  Matrix matrix{target, rows, cols, storage.data()};
  resident_bytes_ += storage.bytes();
  storage_.push_back(std::move(storage));
  return matrix;
}

DeviceArray<float> Weights::upload_vector(const TensorView& tensor, Backend& backend) {
  const auto n = tensor.n_elements();
  std::vector<float> host(n);
  dequantize_row(tensor.dtype, tensor.data, host.data(), n);
  DeviceArray<float> vector(backend, n);
  backend.upload(vector.data(), host.data(), vector.bytes());
  resident_bytes_ += vector.bytes();
  return vector;
}

Weights::Weights(const ModelFile& file, WeightFormat format, Backend& backend)
    : config_(file.config), format_(format) {
  file.validate_llama_tensors();
  token_embedding_ = upload_matrix(file.tensor("token_embd.weight"), backend);
  classifier_ = config_.tied_embeddings ? token_embedding_ : upload_matrix(file.tensor("output.weight"), backend);
  final_norm_ = upload_vector(file.tensor("output_norm.weight"), backend);
  layers_.resize(config_.n_layers);
  for (int i = 0; i < config_.n_layers; ++i) {
    auto name = [&](const char* what) { return fmt::format("blk.{}.{}.weight", i, what); };
    LayerWeights& layer = layers_[i];
    layer.attn_norm = upload_vector(file.tensor(name("attn_norm")), backend);
    layer.wq = upload_matrix(file.tensor(name("attn_q")), backend);
    layer.wk = upload_matrix(file.tensor(name("attn_k")), backend);
    layer.wv = upload_matrix(file.tensor(name("attn_v")), backend);
    layer.wo = upload_matrix(file.tensor(name("attn_output")), backend);
    layer.ffn_norm = upload_vector(file.tensor(name("ffn_norm")), backend);
    layer.w_gate = upload_matrix(file.tensor(name("ffn_gate")), backend);
    layer.w_up = upload_matrix(file.tensor(name("ffn_up")), backend);
    layer.w_down = upload_matrix(file.tensor(name("ffn_down")), backend);
  }
}

uint64_t Weights::bytes_per_forward(int n_tokens) const {
  uint64_t bytes = 0;
  for (const LayerWeights& layer : layers_) {
    for (const Matrix* m : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down})
      bytes += m->n_bytes();
    bytes += 2 * layer.attn_norm.bytes();
  }
  bytes += classifier_.n_bytes() + final_norm_.bytes();
  bytes += uint64_t(n_tokens) * dtype_row_bytes(token_embedding_.dtype, token_embedding_.cols);  // looked-up rows
  return bytes;
}

}  // namespace infer
