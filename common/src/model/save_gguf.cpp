// save_gguf.cpp: a model file written back as GGUF with its matrices in a chosen WeightFormat.
#include "infer/model/save_gguf.h"

#include "infer/core/error.h"
#include "infer/formats/gguf.h"
#include "infer/formats/synthetic.h"

#include <omp.h>

#include <cstring>
#include <optional>
#include <vector>

namespace infer {

namespace {

// llama.cpp's general.file_type (enum llama_ftype) for a file whose matrices are mostly `format`.
std::optional<int64_t> llama_file_type(WeightFormat format) {
  switch (format) {
    case WeightFormat::F32: return 0;
    case WeightFormat::F16: return 1;
    case WeightFormat::Q4_0: return 2;
    case WeightFormat::Q4_1: return 3;
    case WeightFormat::Q8_0: return 7;
    case WeightFormat::Q5_0: return 8;
    case WeightFormat::Q5_1: return 9;
    case WeightFormat::BF16: return 32;
    case WeightFormat::Native: return std::nullopt;  // unchanged
  }
  return std::nullopt;
}

DType stored_dtype(const TensorView& tensor, WeightFormat format) {
  if (tensor.shape.size() != 2) return tensor.dtype;
  return Weights::target_dtype(format, tensor.dtype, tensor.shape[1]);
}

// The tensor's bytes in `target`: a copy when unchanged, else each row dequantized and re-stored.
std::vector<uint8_t> convert_tensor(const TensorView& tensor, DType target) {
  if (target == tensor.dtype) {
    const auto* bytes = static_cast<const uint8_t*>(tensor.data);
    return std::vector<uint8_t>(bytes, bytes + tensor.n_bytes);
  }
  const int64_t cols = tensor.shape.back();
  const int64_t rows = tensor.n_elements() / cols;
  const size_t src_row = dtype_row_bytes(tensor.dtype, cols), dst_row = dtype_row_bytes(target, cols);
  std::vector<uint8_t> out(dst_row * size_t(rows));
#pragma omp parallel
  {
    std::vector<float> row(cols);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(tensor.dtype, static_cast<const uint8_t*>(tensor.data) + size_t(r) * src_row, row.data(), cols);
      quantize_row(target, row.data(), out.data() + size_t(r) * dst_row, cols);
    }
  }
  return out;
}

}  // namespace

void save_gguf(const ModelFile& file, WeightFormat format, const std::string& path) {
  if (file.format != "gguf") {
    // No GGUF metadata to carry: write the keys load_gguf reads, tensors through write_gguf.
    if (!file.tokenizer) fail("{}: --save-gguf needs a tokenizer to embed, and this {} model has none", file.path, file.format);
    if (format == WeightFormat::Native) fail("{}: --save-gguf of a {} model needs a weight format, not native", file.path, file.format);
    const DType target = Weights::target_dtype(format, DType::F32, 32);
    write_gguf(path, file.config, *file.tokenizer, [&](const std::string& name, std::vector<float>& out) {
      const TensorView& tensor = file.tensor(name);
      out.resize(size_t(tensor.n_elements()));
      dequantize_row(tensor.dtype, tensor.data, out.data(), tensor.n_elements());
    }, target);
    return;
  }

  const GgufFile source = parse_gguf(*file.mapping);
  GgufWriter writer(path, source.alignment);
  for (const auto& [key, value] : source.metadata) {
    if (key != "general.alignment") writer.set(key, value);
  }
  if (auto type = llama_file_type(format)) writer.set("general.file_type", GgufValue::make_int(GgufType::U32, *type));
  std::vector<const TensorView*> tensors;
  for (const GgufTensorInfo& info : source.tensors) {
    const TensorView& tensor = file.tensor(info.name);
    tensors.push_back(&tensor);
    writer.add_tensor(tensor.name, tensor.shape, stored_dtype(tensor, format));
  }
  writer.write_header();
  for (const TensorView* tensor : tensors) {
    const std::vector<uint8_t> bytes = convert_tensor(*tensor, stored_dtype(*tensor, format));
    writer.write_tensor_data(bytes.data(), bytes.size());
  }
  writer.finish();
}

}  // namespace infer
