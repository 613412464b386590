// gguf_writer.cpp: GgufWriter, a streaming GGUF v3 writer (used by the synthetic models and tests).
//
// Offsets in the tensor infos are computed from the declared sizes, so the header can be written
// before any tensor exists; each tensor is then generated, written and freed in turn.
#include "infer/core/error.h"
#include "infer/formats/gguf.h"

#include <algorithm>

namespace infer {

namespace {
void write_bytes(std::ofstream& out, const void* data, size_t n) { out.write(static_cast<const char*>(data), std::streamsize(n)); }
template <typename T>
void write_pod(std::ofstream& out, T value) { write_bytes(out, &value, sizeof(T)); }
void write_string(std::ofstream& out, const std::string& text) {
  write_pod<uint64_t>(out, text.size());
  write_bytes(out, text.data(), text.size());
}

void write_value(std::ofstream& out, const GgufValue& value) {
  switch (value.type) {
    case GgufType::U8: write_pod(out, uint8_t(value.integer)); return;
    case GgufType::I8: write_pod(out, int8_t(value.integer)); return;
    case GgufType::U16: write_pod(out, uint16_t(value.integer)); return;
    case GgufType::I16: write_pod(out, int16_t(value.integer)); return;
    case GgufType::U32: write_pod(out, uint32_t(value.integer)); return;
    case GgufType::I32: write_pod(out, int32_t(value.integer)); return;
    case GgufType::U64: write_pod(out, uint64_t(value.integer)); return;
    case GgufType::I64: write_pod(out, int64_t(value.integer)); return;
    case GgufType::BOOL: write_pod(out, uint8_t(value.integer != 0)); return;
    case GgufType::F32: write_pod(out, float(value.real)); return;
    case GgufType::F64: write_pod(out, double(value.real)); return;
    case GgufType::STRING: write_string(out, value.text); return;
    case GgufType::ARRAY:
      write_pod(out, uint32_t(value.element_type));
      write_pod<uint64_t>(out, value.elements.size());
      for (const GgufValue& element : value.elements) write_value(out, element);
      return;
  }
}

void write_padding(std::ofstream& out, uint64_t position, uint64_t alignment) {
  static const char zeros[64] = {};
  uint64_t pad = (alignment - position % alignment) % alignment;
  while (pad > 0) {
    const uint64_t chunk = std::min<uint64_t>(pad, sizeof(zeros));
    write_bytes(out, zeros, size_t(chunk));
    pad -= chunk;
  }
}
}  // namespace

GgufWriter::GgufWriter(std::string path, uint64_t alignment) : path_(std::move(path)), alignment_(alignment) {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) fail("{}: GGUF alignment {} is not a power of two", path_, alignment_);
  if (alignment_ != 32) set("general.alignment", GgufValue::make_int(GgufType::U32, int64_t(alignment_)));
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& [existing, old] : metadata_) {
    if (existing == key) {
      old = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype) {
  std::vector<uint64_t> dims(shape.rbegin(), shape.rend());  // ggml order: innermost first
  int64_t n_elements = 1;
  for (int64_t extent : shape) n_elements *= extent;
  add_tensor_raw(name, std::move(dims), ggml_type_id(dtype), dtype_row_bytes(dtype, n_elements));
}

void GgufWriter::add_tensor_raw(const std::string& name, std::vector<uint64_t> dims, uint32_t type_id, uint64_t n_bytes) {
  if (out_.is_open()) fail("{}: tensor '{}' declared after the header was written", path_, name);
  GgufTensorInfo info;
  info.name = name;
  info.dims = std::move(dims);
  info.type_id = type_id;
  info.offset = next_offset_;
  tensors_.push_back(std::move(info));
  tensor_bytes_.push_back(n_bytes);
  next_offset_ += (n_bytes + alignment_ - 1) / alignment_ * alignment_;  // each tensor starts aligned
}

void GgufWriter::write_header() {
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) fail("{}: cannot create file", path_);
  write_pod<uint32_t>(out_, 0x46554747);  // "GGUF"
  write_pod<uint32_t>(out_, 3);
  write_pod<uint64_t>(out_, tensors_.size());
  write_pod<uint64_t>(out_, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    write_string(out_, key);
    write_pod(out_, uint32_t(value.type));
    write_value(out_, value);
  }
  for (const GgufTensorInfo& info : tensors_) {
    write_string(out_, info.name);
    write_pod<uint32_t>(out_, uint32_t(info.dims.size()));
    for (uint64_t extent : info.dims) write_pod(out_, extent);
    write_pod(out_, info.type_id);
    write_pod(out_, info.offset);
  }
  write_padding(out_, uint64_t(out_.tellp()), alignment_);
}

void GgufWriter::write_tensor_data(const void* data, size_t n_bytes) {
  if (!out_.is_open()) fail("{}: tensor data written before the header", path_);
  if (tensors_written_ >= tensors_.size()) fail("{}: more tensor data than declared tensors", path_);
  const GgufTensorInfo& info = tensors_[tensors_written_];
  if (n_bytes != tensor_bytes_[tensors_written_]) {
    fail("{}: tensor '{}' declared {} bytes but {} were given", path_, info.name, tensor_bytes_[tensors_written_], n_bytes);
  }
  write_bytes(out_, data, n_bytes);
  data_written_ = info.offset + n_bytes;
  write_padding(out_, data_written_, alignment_);
  data_written_ += (alignment_ - data_written_ % alignment_) % alignment_;
  ++tensors_written_;
}

void GgufWriter::finish() {
  if (tensors_written_ != tensors_.size()) {
    fail("{}: {} tensors declared but {} written", path_, tensors_.size(), tensors_written_);
  }
  out_.close();
  if (!out_) fail("{}: write failed", path_);
}

}  // namespace infer
