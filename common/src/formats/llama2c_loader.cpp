// llama2c_loader.cpp: llama2.c checkpoints (Karpathy's run.c export formats).
//
// Legacy (version 0): 28-byte header of 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
//   vocab_size, seq_len; vocab_size < 0 means an unshared classifier is stored at the end), then
//   fp32 tensors: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
//   freq_cis_real, freq_cis_imag (seq_len * head_dim/2 each, unused), [wcls].
// Version 1: 256-byte header: uint32 magic 0x616b3432 ("ak42"), int32 version = 1, the same 7 int32,
//   uint8 shared_classifier, zero padding; then rms_att, rms_ffn, rms_final, token_embedding, wq, wk,
//   wv, wo, w1, w2, w3, [wcls]. Version 2 (int8 groups) is refused.
// Per-layer tensors are stored stacked (n_layers, ...); we hand out one view per layer. RoPE rotates
// adjacent pairs (Interleaved).
#include "infer/core/error.h"
#include "infer/formats/model_file.h"

#include <cstdlib>

namespace infer {

namespace {

constexpr uint32_t kLlama2cMagic = 0x616b3432;

struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Hands out consecutive fp32 tensors from the data section, checking each fits in the file.
class TensorCursor {
 public:
  TensorCursor(ModelFile& file, size_t offset) : file_(file), offset_(offset) {}

  // A stacked tensor (n_layers, rows, cols) or (n_layers, rows) becomes one view per layer named
  // blk.{i}.{name}.weight; a plain tensor becomes one view named `name`.
  void stacked(const std::string& name, int n_layers, std::vector<int64_t> per_layer_shape) {
    int64_t per_layer = 1;
    for (auto d : per_layer_shape) per_layer *= d;
    const size_t layer_bytes = size_t(per_layer) * sizeof(float);
    require(layer_bytes * size_t(n_layers), name);
    for (int i = 0; i < n_layers; ++i) {
      add(fmt::format("blk.{}.{}.weight", i, name), per_layer_shape, offset_);
      offset_ += layer_bytes;
    }
  }
  void single(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    require(size_t(n) * sizeof(float), name);
    add(name, shape, offset_);
    offset_ += size_t(n) * sizeof(float);
  }
  void skip(size_t bytes, const std::string& what) {
    require(bytes, what);
    offset_ += bytes;
  }

 private:
  void require(size_t bytes, const std::string& name) {
    if (offset_ + bytes > file_.mapping->size())
      fail("{}: file is truncated: tensor '{}' needs bytes [{}, {}) but the file has {} bytes", file_.path, name,
           offset_, offset_ + bytes, file_.mapping->size());
  }
  void add(const std::string& name, std::vector<int64_t> shape, size_t offset) {
    TensorView view;
    view.name = name;
    view.dtype = DType::F32;
    view.shape = std::move(shape);
    view.data = file_.mapping->data() + offset;
    view.n_bytes = size_t(view.n_elements()) * sizeof(float);
    file_.tensors[name] = std::move(view);
  }
  ModelFile& file_;
  size_t offset_;
};

ModelConfig config_from_header(const Llama2cHeader& h, const std::string& path) {
  ModelConfig c;
  c.architecture = "llama";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.vocab_size = h.vocab_size == INT32_MIN ? 0 : std::abs(h.vocab_size);
  c.max_seq_len = h.seq_len;
  c.head_dim = h.n_heads > 0 && h.dim % h.n_heads == 0 ? h.dim / h.n_heads : 0;
  if (h.n_heads > 0 && h.dim % h.n_heads != 0) fail("{}: dim {} is not a multiple of n_heads {}", path, h.dim, h.n_heads);
  c.rope_theta = 10000.0f;
  c.rope_layout = RopeLayout::Interleaved;
  c.norm_eps = 1e-5f;
  c.validate(path);
  return c;
}

}  // namespace

ModelFile load_llama2c(const std::string& path) {
  ModelFile file;
  file.path = path;
  file.format = "llama2c";
  file.mapping = MappedFile::open(path);
  ByteReader reader(file.mapping->data(), file.mapping->size(), path);

  const bool versioned = file.mapping->size() >= 4 && reader.read<uint32_t>("magic") == kLlama2cMagic;
  int version = 0;
  size_t data_offset = 28;
  bool shared_classifier = true;
  Llama2cHeader h{};
  if (versioned) {
    version = reader.read<int32_t>("version");
    if (version != 1)
      fail("{}: llama2.c checkpoint version {} is not supported (only 0 = legacy fp32 and 1 = fp32)", path, version);
  } else {
    reader.seek(0);
  }
  h.dim = reader.read<int32_t>("dim");
  h.hidden_dim = reader.read<int32_t>("hidden_dim");
  h.n_layers = reader.read<int32_t>("n_layers");
  h.n_heads = reader.read<int32_t>("n_heads");
  h.n_kv_heads = reader.read<int32_t>("n_kv_heads");
  h.vocab_size = reader.read<int32_t>("vocab_size");
  h.seq_len = reader.read<int32_t>("seq_len");
  if (versioned) {
    shared_classifier = reader.read<uint8_t>("shared_classifier") != 0;
    data_offset = 256;
    if (file.mapping->size() < data_offset) fail("{}: file is truncated: the version-1 header needs 256 bytes", path);
  } else {
    shared_classifier = h.vocab_size > 0;
  }
  file.config = config_from_header(h, path);
  file.config.tied_embeddings = shared_classifier;
  const ModelConfig& c = file.config;
  const int64_t dim = c.dim, hidden = c.hidden_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim(), vocab = c.vocab_size;
  const int layers = c.n_layers;

  TensorCursor cursor(file, data_offset);
  if (version == 0) {
    cursor.single("token_embd.weight", {vocab, dim});
    cursor.stacked("attn_norm", layers, {dim});
    cursor.stacked("attn_q", layers, {q_dim, dim});
    cursor.stacked("attn_k", layers, {kv_dim, dim});
    cursor.stacked("attn_v", layers, {kv_dim, dim});
    cursor.stacked("attn_output", layers, {dim, q_dim});
    cursor.stacked("ffn_norm", layers, {dim});
    cursor.stacked("ffn_gate", layers, {hidden, dim});
    cursor.stacked("ffn_down", layers, {dim, hidden});
    cursor.stacked("ffn_up", layers, {hidden, dim});
    cursor.single("output_norm.weight", {dim});
    // freq_cis_real and freq_cis_imag: precomputed RoPE tables we recompute instead.
    cursor.skip(2 * size_t(c.max_seq_len) * size_t(c.head_dim / 2) * sizeof(float), "freq_cis");
  } else {
    cursor.stacked("attn_norm", layers, {dim});
    cursor.stacked("ffn_norm", layers, {dim});
    cursor.single("output_norm.weight", {dim});
    cursor.single("token_embd.weight", {vocab, dim});
    cursor.stacked("attn_q", layers, {q_dim, dim});
    cursor.stacked("attn_k", layers, {kv_dim, dim});
    cursor.stacked("attn_v", layers, {kv_dim, dim});
    cursor.stacked("attn_output", layers, {dim, q_dim});
    cursor.stacked("ffn_gate", layers, {hidden, dim});
    cursor.stacked("ffn_down", layers, {dim, hidden});
    cursor.stacked("ffn_up", layers, {hidden, dim});
  }
  if (!shared_classifier) cursor.single("output.weight", {vocab, dim});
  file.validate_llama_tensors();
  return file;
}

}  // namespace infer
