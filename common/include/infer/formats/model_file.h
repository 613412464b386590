// model_file.h: what every loader produces: the config, the raw tensors, and the embedded tokenizer.
//
// Tensors keep the on-disk dtype and point into the memory map; nothing is converted here.
// Canonical names (GGUF's), with shapes written outermost first, row-major, y = W x:
//   token_embd.weight        (vocab_size, dim)
//   blk.{i}.attn_norm.weight (dim)
//   blk.{i}.attn_q.weight    (n_heads * head_dim, dim)
//   blk.{i}.attn_k.weight    (n_kv_heads * head_dim, dim)
//   blk.{i}.attn_v.weight    (n_kv_heads * head_dim, dim)
//   blk.{i}.attn_output.weight (dim, n_heads * head_dim)
//   blk.{i}.ffn_norm.weight  (dim)
//   blk.{i}.ffn_gate.weight  (hidden_dim, dim)      w1
//   blk.{i}.ffn_up.weight    (hidden_dim, dim)      w3
//   blk.{i}.ffn_down.weight  (dim, hidden_dim)      w2
//   output_norm.weight       (dim)
//   output.weight            (vocab_size, dim)      absent when tied_embeddings
// Q/K rows are in the order of config.rope_layout (the forward pass applies the matching RoPE).
#pragma once

#include "infer/core/dtype.h"
#include "infer/core/mapped_file.h"
#include "infer/core/model_config.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace infer {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // outermost first: a matrix is {rows, cols}
  const void* data = nullptr;  // points into the mapped file (or into ModelFile::owned)
  size_t n_bytes = 0;

  int64_t n_elements() const;
};

// Vocabulary as stored in a model file (GGUF tokenizer.ggml.*), enough to build either tokenizer.
struct TokenizerData {
  std::string model;                 // "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE)
  std::string pre;                   // pre-tokenizer name for gpt2 (e.g. "smollm", "llama-bpe", "gpt2")
  std::vector<std::string> tokens;   // piece text per id (SentencePiece uses U+2581 for space)
  std::vector<float> scores;         // merge scores (llama); may be empty for gpt2
  std::vector<int32_t> token_types;  // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  std::vector<std::string> merges;   // "a b" pairs in priority order (gpt2)
  int bos_id = -1;
  int eos_id = -1;
  int unk_id = -1;
  bool add_bos = true;               // tokenizer.ggml.add_bos_token
  bool add_space_prefix = true;      // tokenizer.ggml.add_space_prefix (llama)
  std::string chat_template;         // tokenizer.chat_template (Jinja text), may be empty
};

struct ModelFile {
  std::string path;
  std::string format;                 // "llama2c", "gguf", "safetensors"
  ModelConfig config;
  std::map<std::string, TensorView> tensors;
  std::optional<TokenizerData> tokenizer;  // GGUF embeds one; llama2.c and safetensors do not
  std::shared_ptr<MappedFile> mapping;     // keeps tensor data alive
  std::vector<std::vector<uint8_t>> owned; // storage for tensors that had to be copied

  // Throws infer::Error naming the file if `name` is missing.
  const TensorView& tensor(const std::string& name) const;
  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // Checks that every tensor the Llama forward pass needs is present with the shape the config implies.
  void validate_llama_tensors() const;
};

// Each loader validates every size and offset before use and throws infer::Error naming the file.
ModelFile load_llama2c(const std::string& path);
ModelFile load_gguf(const std::string& path);
// `path` is a .safetensors file (config.json beside it) or a directory holding model.safetensors
// (or model-0000x-of-0000y.safetensors shards) and config.json.
ModelFile load_safetensors(const std::string& path);
// Picks the loader from the file's magic bytes (never from its name).
ModelFile load_model_file(const std::string& path);

}  // namespace infer
