// weights.cpp: converts a ModelFile's tensors into the chosen storage format and uploads them.
#include "infer/model/weights.h"

#include "infer/core/error.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace infer {

std::string_view weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::F32: return "f32";
    case WeightFormat::F16: return "f16";
    case WeightFormat::BF16: return "bf16";
    case WeightFormat::Q8_0: return "q8_0";
    case WeightFormat::Q4_0: return "q4_0";
    case WeightFormat::Q4_1: return "q4_1";
    case WeightFormat::Q5_0: return "q5_0";
    case WeightFormat::Q5_1: return "q5_1";
    case WeightFormat::Native: return "native";
  }
  return "?";
}

WeightFormat parse_weight_format(const std::string& name) {
  if (name == "f32") return WeightFormat::F32;
  if (name == "f16") return WeightFormat::F16;
  for (WeightFormat format : {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16, WeightFormat::Q8_0, WeightFormat::Q4_0,
                              WeightFormat::Q4_1, WeightFormat::Q5_0, WeightFormat::Q5_1, WeightFormat::Native}) {
    if (weight_format_name(format) == name) return format;
  }
  fail("unknown weight format '{}' (expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 or native)", name);
}

namespace {

DType storage_dtype(WeightFormat format) {
  switch (format) {
    case WeightFormat::F32: return DType::F32;
    case WeightFormat::F16: return DType::F16;
    case WeightFormat::BF16: return DType::BF16;
    case WeightFormat::Q8_0: return DType::Q8_0;
    case WeightFormat::Q4_0: return DType::Q4_0;
    case WeightFormat::Q4_1: return DType::Q4_1;
    case WeightFormat::Q5_0: return DType::Q5_0;
    case WeightFormat::Q5_1: return DType::Q5_1;
    case WeightFormat::Native: return DType::F32;  // per tensor: see Weights::target_dtype
  }
  return DType::F32;
}

// Non-finite values met while converting a tensor; `first` is the flat index of the earliest.
struct NonFinite {
  int64_t count = 0;
  int64_t first = INT64_MAX;
};

// Counts the values of `row` that are NaN/Inf, or that the target format cannot hold (|x| above the
// largest finite f16, 65504, would become Inf). One compare per value, next to the conversion.
NonFinite scan_row(const float* row, int64_t n, int64_t base, DType target) {
  const float limit = target == DType::F16 ? 65504.0f : std::numeric_limits<float>::max();
  NonFinite found;
  for (int64_t i = 0; i < n; ++i) {
    if (!(std::fabs(row[i]) <= limit)) {  // false for NaN too
      if (found.count++ == 0) found.first = base + i;
    }
  }
  return found;
}

[[noreturn]] void fail_non_finite(const TensorView& tensor, const NonFinite& found, int64_t cols, DType target) {
  const char* what = target == DType::F16 ? "non-finite or beyond-f16 (|x| > 65504)" : "non-finite";
  if (tensor.shape.size() == 2)
    fail("{}: {} {} values (first at row {}, col {})", tensor.name, found.count, what, found.first / cols, found.first % cols);
  fail("{}: {} {} values (first at index {})", tensor.name, found.count, what, found.first);
}

}  // namespace

DType Weights::target_dtype(WeightFormat format, DType source, int64_t cols) {
  if (format == WeightFormat::Native) return source;
  const DType target = storage_dtype(format);
  return cols % dtype_block_size(target) == 0 ? target : DType::F32;
}

namespace {

// A (rows, cols) matrix of `type` as `backend` stores it: its compute layout where it has one, else row-major.
uint64_t stored_matrix_bytes(DType type, int64_t rows, int64_t cols, const Backend* backend) {
  if (backend != nullptr && backend->interleaves(type, int(cols)))
    return interleaved_shape(type, int(rows), int(cols)).total_bytes();
  return dtype_row_bytes(type, rows * cols);
}

}  // namespace

uint64_t Weights::resident_bytes_for(const ModelFile& file, WeightFormat format, const Backend* backend) {
  uint64_t total = 0;
  for (const auto& [name, tensor] : file.tensors) {
    if (tensor.shape.size() == 2) {
      const DType target = target_dtype(format, tensor.dtype, tensor.shape[1]);
      total += stored_matrix_bytes(target, tensor.shape[0], tensor.shape[1], backend);
    } else {
      total += uint64_t(tensor.n_elements()) * sizeof(float);
    }
  }
  return total;
}

uint64_t Weights::resident_bytes_for(const ModelConfig& c, WeightFormat format, const Backend* backend) {
  const DType target = storage_dtype(format);
  auto matrix = [&](int64_t rows, int64_t cols) { return stored_matrix_bytes(target, rows, cols, backend); };
  auto vector = [](int64_t n) { return uint64_t(n) * sizeof(float); };
  uint64_t per_layer = 2 * vector(c.dim) + matrix(c.q_dim(), c.dim) + 2 * matrix(c.kv_dim(), c.dim) +
                       matrix(c.dim, c.q_dim()) + 2 * matrix(c.hidden_dim, c.dim) + matrix(c.dim, c.hidden_dim);
  uint64_t total = uint64_t(c.n_layers) * per_layer + matrix(c.vocab_size, c.dim) + vector(c.dim);
  if (!c.tied_embeddings) total += matrix(c.vocab_size, c.dim);
  return total;
}

Matrix Weights::upload_matrix(const TensorView& tensor, Backend& backend) {
  if (tensor.shape.size() != 2) fail("tensor '{}' should be a matrix", tensor.name);
  const int rows = int(tensor.shape[0]), cols = int(tensor.shape[1]);
  const DType target = target_dtype(format_, tensor.dtype, cols);
  const size_t src_row_bytes = dtype_row_bytes(tensor.dtype, cols);
  const size_t dst_row_bytes = dtype_row_bytes(target, cols);

  // Kept as stored: on the CPU straight from the mapped file, elsewhere uploaded as is. Its values
  // are still checked (dequantized row by row, a NaN/Inf scale is refused like any bad value).
  const auto* mapped_begin = mapping_ ? mapping_->data() : nullptr;
  const bool in_mapping = mapped_begin != nullptr && static_cast<const uint8_t*>(tensor.data) >= mapped_begin &&
                          static_cast<const uint8_t*>(tensor.data) + tensor.n_bytes <= mapped_begin + mapping_->size();
  if (target == tensor.dtype && dtype_is_quantized(target)) {
    int64_t bad_count = 0, bad_first = INT64_MAX;
#pragma omp parallel reduction(+ : bad_count) reduction(min : bad_first)
    {
      std::vector<float> row(cols);
#pragma omp for schedule(static)
      for (int r = 0; r < rows; ++r) {
        dequantize_row(tensor.dtype, static_cast<const uint8_t*>(tensor.data) + size_t(r) * src_row_bytes, row.data(), cols);
        const NonFinite found = scan_row(row.data(), cols, int64_t(r) * cols, DType::F32);
        bad_count += found.count;
        bad_first = std::min(bad_first, found.first);
      }
    }
    if (bad_count != 0) fail_non_finite(tensor, {bad_count, bad_first}, cols, DType::F32);
    if (backend.interleaves(target, cols)) return store_interleaved(target, rows, cols, tensor.data, backend);
    resident_bytes_ += tensor.n_bytes;
    if (in_mapping && backend.name() == "cpu") {
      mapped_bytes_ += tensor.n_bytes;
      return Matrix{target, rows, cols, tensor.data};
    }
    DeviceArray<uint8_t> storage(backend, tensor.n_bytes);
    backend.upload(storage.data(), tensor.data, tensor.n_bytes);
    Matrix matrix{target, rows, cols, storage.data()};
    storage_.push_back(std::move(storage));
    return matrix;
  }

  // Convert row by row on the host: dequantize to fp32, then store in the target format.
  std::vector<uint8_t> host(dst_row_bytes * rows);
  int64_t bad_count = 0, bad_first = INT64_MAX;
#pragma omp parallel reduction(+ : bad_count) reduction(min : bad_first)
  {
    std::vector<float> row(cols);
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      dequantize_row(tensor.dtype, static_cast<const uint8_t*>(tensor.data) + size_t(r) * src_row_bytes, row.data(), cols);
      const NonFinite found = scan_row(row.data(), cols, int64_t(r) * cols, target);
      bad_count += found.count;
      bad_first = std::min(bad_first, found.first);
      quantize_row(target, row.data(), host.data() + size_t(r) * dst_row_bytes, cols);
    }
  }
  if (bad_count != 0) fail_non_finite(tensor, {bad_count, bad_first}, cols, target);
  if (backend.interleaves(target, cols)) return store_interleaved(target, rows, cols, host.data(), backend);
  DeviceArray<uint8_t> storage(backend, host.size());
  backend.upload(storage.data(), host.data(), host.size());
  Matrix matrix{target, rows, cols, storage.data()};
  resident_bytes_ += storage.bytes();
  storage_.push_back(std::move(storage));
  return matrix;
}

// The backend's compute layout (interleaved.h): 16 rows per group, the same bytes rearranged.
Matrix Weights::store_interleaved(DType type, int rows, int cols, const void* row_major, Backend& backend) {
  const InterleavedShape shape = interleaved_shape(type, rows, cols);
  std::vector<uint8_t> host(shape.total_bytes());
  interleave_rows(type, row_major, rows, cols, host.data());
  DeviceArray<uint8_t> storage(backend, host.size());
  backend.upload(storage.data(), host.data(), host.size());
  Matrix matrix{type, rows, cols, storage.data(), true};
  resident_bytes_ += storage.bytes();
  storage_.push_back(std::move(storage));
  return matrix;
}

DeviceArray<float> Weights::upload_vector(const TensorView& tensor, Backend& backend) {
  const auto n = tensor.n_elements();
  std::vector<float> host(n);
  dequantize_row(tensor.dtype, tensor.data, host.data(), n);
  if (const NonFinite found = scan_row(host.data(), n, 0, DType::F32); found.count != 0)
    fail_non_finite(tensor, found, n, DType::F32);
  DeviceArray<float> vector(backend, n);
  backend.upload(vector.data(), host.data(), vector.bytes());
  resident_bytes_ += vector.bytes();
  return vector;
}

Weights::Weights(const ModelFile& file, WeightFormat format, Backend& backend)
    : config_(file.config), format_(format), mapping_(file.mapping) {
  file.validate_llama_tensors();
  check_fits_in_memory(fmt::format("{}: the weights in {}", file.path, weight_format_name(format)),
                       resident_bytes_for(file, format, &backend), backend.available_memory(), backend.name());
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
