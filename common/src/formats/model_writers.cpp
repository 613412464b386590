// model_writers.cpp: writing a Llama (config + fp32 tensors from a TensorSource) as GGUF,
// HF safetensors or llama2.c .bin. Each writer lays out the header from the config alone, then asks
// for one tensor at a time, converts it and writes it, so a model of any size streams through a
// buffer of one tensor.
#include "infer/core/error.h"
#include "infer/formats/gguf.h"
#include "infer/formats/safetensors.h"
#include "infer/formats/synthetic.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace infer {

namespace {

// ================================================================================================
// Shared helpers
// ================================================================================================

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t extent : shape) n *= extent;
  return n;
}

// Asks the source for `name` and checks it returned the declared number of values.
void fetch(const TensorSource& source, const std::string& name, const std::vector<int64_t>& shape, std::vector<float>& out) {
  out.clear();
  source(name, out);
  if (int64_t(out.size()) != element_count(shape)) {
    fail("model writer: tensor '{}' has {} values but its shape needs {}", name, out.size(), element_count(shape));
  }
}

// Converts (rows, cols) fp32 values to `dtype`, rows in parallel (conversion dominates big writes).
std::vector<uint8_t> convert_rows(DType dtype, const std::vector<float>& values, int64_t cols) {
  const int64_t rows = int64_t(values.size()) / cols;
  const size_t row_bytes = dtype_row_bytes(dtype, cols);
  std::vector<uint8_t> out(size_t(rows) * row_bytes);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    quantize_row(dtype, values.data() + row * cols, out.data() + size_t(row) * row_bytes, cols);
  }
  return out;
}

void write_bytes(std::ofstream& out, const void* data, size_t n) { out.write(static_cast<const char*>(data), std::streamsize(n)); }

std::ofstream create_file(const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot create file", path);
  return out;
}
void close_file(std::ofstream& out, const std::string& path) {
  out.close();
  if (!out) fail("{}: write failed (disk full?)", path);
}

}  // namespace

// ================================================================================================
// GGUF
// ================================================================================================

void write_gguf(const std::string& path, const ModelConfig& config, const TokenizerData& tokenizer,
                const TensorSource& source, DType dtype) {
  GgufWriter writer(path);
  auto u32 = [](int64_t value) { return GgufValue::make_int(GgufType::U32, value); };
  auto f32 = [](double value) { return GgufValue::make_float(GgufType::F32, value); };
  auto text = [](std::string value) { return GgufValue::make_string(std::move(value)); };
  auto flag = [](bool value) { return GgufValue::make_int(GgufType::BOOL, value ? 1 : 0); };

  // ---- metadata: what load_gguf reads -------------------------------------------------------------
  writer.set("general.architecture", text("llama"));
  writer.set("general.name", text("synthetic"));
  writer.set("llama.context_length", u32(config.max_seq_len));
  writer.set("llama.embedding_length", u32(config.dim));
  writer.set("llama.block_count", u32(config.n_layers));
  writer.set("llama.feed_forward_length", u32(config.hidden_dim));
  writer.set("llama.attention.head_count", u32(config.n_heads));
  writer.set("llama.attention.head_count_kv", u32(config.n_kv_heads));
  writer.set("llama.attention.key_length", u32(config.head_dim));
  writer.set("llama.attention.value_length", u32(config.head_dim));
  writer.set("llama.rope.dimension_count", u32(config.head_dim));
  writer.set("llama.rope.freq_base", f32(config.rope_theta));
  writer.set("llama.attention.layer_norm_rms_epsilon", f32(config.norm_eps));
  writer.set("llama.vocab_size", u32(config.vocab_size));

  writer.set("tokenizer.ggml.model", text(tokenizer.model));
  if (!tokenizer.pre.empty()) writer.set("tokenizer.ggml.pre", text(tokenizer.pre));
  std::vector<GgufValue> tokens, scores, types, merges;
  for (const auto& token : tokenizer.tokens) tokens.push_back(text(token));
  for (float score : tokenizer.scores) scores.push_back(f32(score));
  for (int32_t type : tokenizer.token_types) types.push_back(GgufValue::make_int(GgufType::I32, type));
  for (const auto& merge : tokenizer.merges) merges.push_back(text(merge));
  writer.set("tokenizer.ggml.tokens", GgufValue::make_array(GgufType::STRING, std::move(tokens)));
  if (!scores.empty()) writer.set("tokenizer.ggml.scores", GgufValue::make_array(GgufType::F32, std::move(scores)));
  if (!types.empty()) writer.set("tokenizer.ggml.token_type", GgufValue::make_array(GgufType::I32, std::move(types)));
  if (!merges.empty()) writer.set("tokenizer.ggml.merges", GgufValue::make_array(GgufType::STRING, std::move(merges)));
  if (tokenizer.bos_id >= 0) writer.set("tokenizer.ggml.bos_token_id", u32(tokenizer.bos_id));
  if (tokenizer.eos_id >= 0) writer.set("tokenizer.ggml.eos_token_id", u32(tokenizer.eos_id));
  if (tokenizer.unk_id >= 0) writer.set("tokenizer.ggml.unknown_token_id", u32(tokenizer.unk_id));
  writer.set("tokenizer.ggml.add_bos_token", flag(tokenizer.add_bos));
  writer.set("tokenizer.ggml.add_space_prefix", flag(tokenizer.add_space_prefix));
  if (!tokenizer.chat_template.empty()) writer.set("tokenizer.chat_template", text(tokenizer.chat_template));

  // ---- tensor infos: norms stay F32 (as llama.cpp writes them); block formats need whole blocks per row
  const auto shapes = llama_tensor_shapes(config);
  std::vector<DType> stored;
  for (const auto& [name, shape] : shapes) {
    DType type = dtype;
    if (shape.size() == 1 || shape.back() % dtype_block_size(dtype) != 0) type = DType::F32;
    stored.push_back(type);
    writer.add_tensor(name, shape, type);
  }
  writer.write_header();

  // ---- tensor data, one at a time -----------------------------------------------------------------
  std::vector<float> values;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto& [name, shape] = shapes[i];
    fetch(source, name, shape, values);
    const std::vector<uint8_t> bytes = convert_rows(stored[i], values, shape.back());
    writer.write_tensor_data(bytes.data(), bytes.size());
  }
  writer.finish();
}

// ================================================================================================
// Hugging Face safetensors + config.json
// ================================================================================================

namespace {
const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    default: return nullptr;
  }
}
}  // namespace

void write_safetensors(const std::string& dir, const ModelConfig& config, const TensorSource& source, DType dtype) {
  const char* dtype_text = safetensors_dtype_name(dtype);
  if (dtype_text == nullptr) fail("{}: safetensors stores F32, F16 or BF16, not {}", dir, dtype_name(dtype));
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) fail("{}: cannot create directory: {}", dir, error.message());

  // ---- config.json ----------------------------------------------------------------------------------
  nlohmann::ordered_json hf_config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", config.dim},
      {"intermediate_size", config.hidden_dim},
      {"num_hidden_layers", config.n_layers},
      {"num_attention_heads", config.n_heads},
      {"num_key_value_heads", config.n_kv_heads},
      {"head_dim", config.head_dim},
      {"vocab_size", config.vocab_size},
      {"max_position_embeddings", config.max_seq_len},
      {"rope_theta", double(config.rope_theta)},
      {"rms_norm_eps", double(config.norm_eps)},
      {"tie_word_embeddings", config.tied_embeddings},
      {"hidden_act", "silu"},
      {"torch_dtype", dtype == DType::F32 ? "float32" : dtype == DType::F16 ? "float16" : "bfloat16"},
  };
  const std::string config_path = dir + "/config.json";
  std::ofstream config_file = create_file(config_path);
  config_file << hf_config.dump(2) << "\n";
  close_file(config_file, config_path);

  // ---- header: every tensor's HF name, dtype, shape and byte range ---------------------------------
  const auto shapes = llama_tensor_shapes(config);
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const auto& [name, shape] : shapes) {
    const uint64_t n_bytes = dtype_row_bytes(dtype, element_count(shape));
    header[hf_name_from_canonical(name)] = {{"dtype", dtype_text}, {"shape", shape}, {"data_offsets", {offset, offset + n_bytes}}};
    offset += n_bytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned

  const std::string path = dir + "/model.safetensors";
  std::ofstream out = create_file(path);
  const uint64_t header_length = header_text.size();
  write_bytes(out, &header_length, 8);
  write_bytes(out, header_text.data(), header_text.size());

  // ---- data: Q/K rows reordered from Interleaved (canonical) to HF's HalfSplit ------------------------
  std::vector<float> values;
  for (const auto& [name, shape] : shapes) {
    fetch(source, name, shape, values);
    std::vector<uint8_t> bytes = convert_rows(dtype, values, shape.back());
    const bool is_q = name.ends_with(".attn_q.weight"), is_k = name.ends_with(".attn_k.weight");
    if (is_q || is_k) {
      bytes = permute_rows_interleaved_to_half_split(bytes.data(), shape[0], int64_t(dtype_row_bytes(dtype, shape[1])), config.head_dim);
    }
    write_bytes(out, bytes.data(), bytes.size());
  }
  close_file(out, path);
}

// ================================================================================================
// llama2.c .bin (float32 only)
// ================================================================================================
// Version 0 ("legacy"): 7 x int32 header (vocab_size negative when the classifier is not shared),
//   token_embedding, rms_att (all layers), wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
//   freq_cis_real (seq, head_dim/2), freq_cis_imag (seq, head_dim/2), wcls when not shared.
// Version 1: 256-byte header (u32 magic "ak42", i32 version, 7 x int32, u8 shared_classifier, zero
//   padding), rms_att, rms_ffn, rms_final, token_embedding, wq, wk, wv, wo, w1, w2, w3, wcls when
//   not shared. (w1 = ffn_gate, w2 = ffn_down, w3 = ffn_up; Q/K rows in Interleaved order.)

void write_llama2c(const std::string& path, const ModelConfig& config, const TensorSource& source, int version) {
  if (version != 0 && version != 1) fail("{}: llama2.c version must be 0 (legacy) or 1, not {}", path, version);
  if (config.n_heads * config.head_dim != config.dim) {
    fail("{}: llama2.c files cannot store head_dim {} != dim / n_heads ({} / {})", path, config.head_dim, config.dim, config.n_heads);
  }
  const auto shapes = llama_tensor_shapes(config);
  auto shape_of = [&](const std::string& name) -> const std::vector<int64_t>& {
    for (const auto& [tensor, shape] : shapes) {
      if (tensor == name) return shape;
    }
    fail("{}: no tensor '{}'", path, name);
  };

  std::ofstream out = create_file(path);
  std::vector<float> values;
  auto write_tensor = [&](const std::string& name) {
    fetch(source, name, shape_of(name), values);
    write_bytes(out, values.data(), values.size() * sizeof(float));
  };
  auto write_all_layers = [&](const std::string& suffix) {
    for (int layer = 0; layer < config.n_layers; ++layer) write_tensor("blk." + std::to_string(layer) + "." + suffix);
  };

  const int32_t fields[7] = {config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads,
                             config.vocab_size, config.max_seq_len};
  if (version == 0) {
    int32_t header[7];
    std::copy(std::begin(fields), std::end(fields), header);
    if (!config.tied_embeddings) header[5] = -config.vocab_size;  // negative vocab: wcls follows
    write_bytes(out, header, sizeof(header));
    write_tensor("token_embd.weight");
    write_all_layers("attn_norm.weight");
  } else {
    uint8_t header[256] = {};
    const uint32_t magic = 0x616b3432;
    const int32_t file_version = 1;
    std::memcpy(header, &magic, 4);
    std::memcpy(header + 4, &file_version, 4);
    std::memcpy(header + 8, fields, sizeof(fields));
    header[8 + sizeof(fields)] = config.tied_embeddings ? 1 : 0;
    write_bytes(out, header, sizeof(header));
    write_all_layers("attn_norm.weight");
    write_all_layers("ffn_norm.weight");
    write_tensor("output_norm.weight");
    write_tensor("token_embd.weight");
  }
  for (const char* matrix : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight"}) write_all_layers(matrix);
  if (version == 0) write_all_layers("ffn_norm.weight");
  for (const char* matrix : {"ffn_gate.weight", "ffn_down.weight", "ffn_up.weight"}) write_all_layers(matrix);
  if (version == 0) {
    write_tensor("output_norm.weight");
    // RoPE tables: position p, pair i rotates by p * theta^(-2i / head_dim).
    const int half = config.head_dim / 2;
    std::vector<float> real(size_t(config.max_seq_len) * half), imaginary(real.size());
    for (int position = 0; position < config.max_seq_len; ++position) {
      for (int i = 0; i < half; ++i) {
        const double frequency = std::pow(double(config.rope_theta), -2.0 * i / config.head_dim);
        real[size_t(position) * half + i] = float(std::cos(position * frequency));
        imaginary[size_t(position) * half + i] = float(std::sin(position * frequency));
      }
    }
    write_bytes(out, real.data(), real.size() * sizeof(float));
    write_bytes(out, imaginary.data(), imaginary.size() * sizeof(float));
  }
  if (!config.tied_embeddings) write_tensor("output.weight");
  close_file(out, path);
}

}  // namespace infer
