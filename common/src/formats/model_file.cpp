// model_file.cpp: tensor lookup, the Llama tensor checklist, and format detection by magic bytes.
#include "infer/formats/model_file.h"

#include "infer/core/error.h"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace infer {

// ================================================================================================
// TensorView / ModelFile
// ================================================================================================

int64_t TensorView::n_elements() const {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;  // loaders check for overflow before building views
  return count;
}

const TensorView& ModelFile::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("{}: tensor '{}' not found", path, name);
  return it->second;
}

namespace {
std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + ")";
}
}  // namespace

void ModelFile::validate_llama_tensors() const {
  const ModelConfig& c = config;
  auto check = [&](const std::string& name, std::vector<int64_t> expected) {
    const TensorView& view = tensor(name);
    if (view.shape != expected) {
      fail("{}: tensor '{}' has shape {} but the config implies {}", path, name, shape_string(view.shape),
           shape_string(expected));
    }
    // Block formats quantize along a row, so a row must hold whole blocks.
    const int64_t row_length = expected.back();
    if (row_length % dtype_block_size(view.dtype) != 0) {
      fail("{}: tensor '{}' ({}) has rows of {} elements, not a multiple of the block size {}", path, name,
           dtype_name(view.dtype), row_length, dtype_block_size(view.dtype));
    }
    const size_t expected_bytes = dtype_row_bytes(view.dtype, view.n_elements());
    if (view.n_bytes != expected_bytes) {
      fail("{}: tensor '{}' holds {} bytes but {} {} elements need {}", path, name, view.n_bytes,
           view.n_elements(), dtype_name(view.dtype), expected_bytes);
    }
    if (view.data == nullptr) fail("{}: tensor '{}' has no data", path, name);
  };

  check("token_embd.weight", {c.vocab_size, c.dim});
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const std::string prefix = "blk." + std::to_string(layer) + ".";
    check(prefix + "attn_norm.weight", {c.dim});
    check(prefix + "attn_q.weight", {c.q_dim(), c.dim});
    check(prefix + "attn_k.weight", {c.kv_dim(), c.dim});
    check(prefix + "attn_v.weight", {c.kv_dim(), c.dim});
    check(prefix + "attn_output.weight", {c.dim, c.q_dim()});
    check(prefix + "ffn_norm.weight", {c.dim});
    check(prefix + "ffn_gate.weight", {c.hidden_dim, c.dim});
    check(prefix + "ffn_up.weight", {c.hidden_dim, c.dim});
    check(prefix + "ffn_down.weight", {c.dim, c.hidden_dim});
  }
  check("output_norm.weight", {c.dim});
  if (!c.tied_embeddings) check("output.weight", {c.vocab_size, c.dim});
}

// ================================================================================================
// Format detection
// ================================================================================================

ModelFile load_model_file(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) return load_safetensors(path);  // an HF checkpoint dir

  uint8_t head[9] = {};
  size_t got = 0;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open model file", path);
    in.read(reinterpret_cast<char*>(head), sizeof(head));
    got = size_t(in.gcount());
  }
  if (got >= 4 && std::memcmp(head, "GGUF", 4) == 0) return load_gguf(path);
  uint32_t magic = 0;
  if (got >= 4) std::memcpy(&magic, head, 4);
  if (magic == 0x616b3432u) return load_llama2c(path);  // llama2.c v1+ ("ak42")
  // safetensors: u64 little-endian JSON header length, then the JSON object itself.
  if (got == 9 && head[8] == '{') return load_safetensors(path);
  // The legacy llama2.c header is seven int32 with no magic; its loader validates them.
  return load_llama2c(path);
}

}  // namespace infer
