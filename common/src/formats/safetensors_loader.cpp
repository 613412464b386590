// safetensors_loader.cpp: Hugging Face checkpoints (config.json + one or more .safetensors shards).
//
// Tensors keep HF's row order; HF Llama Q/K rows are in the HalfSplit ("neox") RoPE order, so the
// config says so and the forward pass rotates (x[i], x[i + head_dim/2]) for these models.
#include "infer/core/error.h"
#include "infer/formats/model_file.h"
#include "infer/formats/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <sstream>

namespace infer {

namespace fs = std::filesystem;
using nlohmann::json;

// ================================================================================================
// Name mapping and the Q/K row permutation
// ================================================================================================

namespace {
// (HF suffix after "model.layers.{i}.", canonical suffix after "blk.{i}.")
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"self_attn.q_proj.weight", "attn_q.weight"},     {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},     {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},      {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},      {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
};
constexpr std::pair<const char*, const char*> kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// Splits "<prefix><digits>.<rest>" into (layer, rest); false if `name` does not have that form.
bool split_layer_name(const std::string& name, const std::string& prefix, int& layer, std::string& rest) {
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  size_t position = prefix.size();
  const size_t digits_begin = position;
  while (position < name.size() && std::isdigit(static_cast<unsigned char>(name[position]))) ++position;
  if (position == digits_begin || position - digits_begin > 6 || position >= name.size() || name[position] != '.') return false;
  layer = std::stoi(name.substr(digits_begin, position - digits_begin));
  rest = name.substr(position + 1);
  return true;
}

std::vector<uint8_t> permute_rows(const void* rows, int64_t n_rows, int64_t row_bytes, int head_dim, bool to_half_split) {
  if (head_dim <= 0 || head_dim % 2 != 0 || n_rows % head_dim != 0) {
    fail("Q/K row permutation: {} rows do not split into heads of even size {}", n_rows, head_dim);
  }
  const auto* src = static_cast<const uint8_t*>(rows);
  std::vector<uint8_t> out(size_t(n_rows * row_bytes));
  const int half = head_dim / 2;
  for (int64_t head = 0; head < n_rows / head_dim; ++head) {
    const int64_t base = head * head_dim;
    for (int j = 0; j < half; ++j) {
      // HalfSplit rows (j, j + half) <-> Interleaved rows (2j, 2j + 1).
      const int64_t half_split_rows[2] = {base + j, base + j + half};
      const int64_t interleaved_rows[2] = {base + 2 * j, base + 2 * j + 1};
      for (int k = 0; k < 2; ++k) {
        const int64_t to = to_half_split ? half_split_rows[k] : interleaved_rows[k];
        const int64_t from = to_half_split ? interleaved_rows[k] : half_split_rows[k];
        std::memcpy(out.data() + to * row_bytes, src + from * row_bytes, size_t(row_bytes));
      }
    }
  }
  return out;
}
}  // namespace

std::optional<std::string> canonical_name_from_hf(const std::string& hf_name) {
  for (const auto& [hf, canonical] : kGlobalNames) {
    if (hf_name == hf) return std::string(canonical);
  }
  int layer = 0;
  std::string rest;
  if (split_layer_name(hf_name, "model.layers.", layer, rest)) {
    for (const auto& [hf, canonical] : kLayerNames) {
      if (rest == hf) return "blk." + std::to_string(layer) + "." + canonical;
    }
  }
  return std::nullopt;  // e.g. model.layers.0.self_attn.rotary_emb.inv_freq (a recomputable buffer)
}

std::string hf_name_from_canonical(const std::string& canonical_name) {
  for (const auto& [hf, canonical] : kGlobalNames) {
    if (canonical_name == canonical) return hf;
  }
  int layer = 0;
  std::string rest;
  if (split_layer_name(canonical_name, "blk.", layer, rest)) {
    for (const auto& [hf, canonical] : kLayerNames) {
      if (rest == canonical) return "model.layers." + std::to_string(layer) + "." + hf;
    }
  }
  fail("no Hugging Face name for tensor '{}'", canonical_name);
}

std::vector<uint8_t> permute_rows_interleaved_to_half_split(const void* rows, int64_t n_rows, int64_t row_bytes, int head_dim) {
  return permute_rows(rows, n_rows, row_bytes, head_dim, true);
}
std::vector<uint8_t> permute_rows_half_split_to_interleaved(const void* rows, int64_t n_rows, int64_t row_bytes, int head_dim) {
  return permute_rows(rows, n_rows, row_bytes, head_dim, false);
}

// ================================================================================================
// config.json -> ModelConfig
// ================================================================================================

namespace {

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

ModelConfig read_hf_config(const fs::path& path) {
  const std::string where = path.string();
  const json root = json::parse(read_text_file(path), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) fail("{}: not a valid JSON object", where);

  auto integer = [&](const char* key, std::optional<int64_t> fallback) -> int {
    if (!root.contains(key) || root[key].is_null()) {
      if (!fallback) fail("{}: required field '{}' is missing", where, key);
      return int(*fallback);
    }
    const json& value = root[key];
    if (!value.is_number_integer()) fail("{}: field '{}' must be an integer", where, key);
    const auto number = value.get<int64_t>();
    if (number < 0 || number > std::numeric_limits<int32_t>::max()) fail("{}: field '{}' = {} is out of range", where, key, number);
    return int(number);
  };
  auto real = [&](const char* key, double fallback) -> float {
    if (!root.contains(key) || root[key].is_null()) return float(fallback);
    if (!root[key].is_number()) fail("{}: field '{}' must be a number", where, key);
    return float(root[key].get<double>());
  };

  // Architecture: model_type "llama", or LlamaForCausalLM among "architectures".
  std::string architecture;
  if (root.contains("model_type") && root["model_type"].is_string()) {
    architecture = root["model_type"].get<std::string>();
  } else if (root.contains("architectures") && root["architectures"].is_array()) {
    for (const json& name : root["architectures"]) {
      if (name.is_string()) architecture = name.get<std::string>() == "LlamaForCausalLM" ? "llama" : name.get<std::string>();
    }
  }
  if (architecture != "llama") {
    fail("{}: unsupported architecture '{}' (this engine runs the Llama family)", where, architecture);
  }

  ModelConfig config;
  config.architecture = "llama";
  config.dim = integer("hidden_size", std::nullopt);
  config.n_layers = integer("num_hidden_layers", std::nullopt);
  config.n_heads = integer("num_attention_heads", std::nullopt);
  config.n_kv_heads = integer("num_key_value_heads", config.n_heads);
  config.hidden_dim = integer("intermediate_size", std::nullopt);
  config.vocab_size = integer("vocab_size", std::nullopt);
  config.max_seq_len = integer("max_position_embeddings", std::nullopt);
  config.rope_theta = real("rope_theta", 10000.0);
  config.norm_eps = real("rms_norm_eps", 1e-6);  // transformers' LlamaConfig default
  if (config.n_heads <= 0) fail("{}: num_attention_heads must be positive", where);
  config.head_dim = integer("head_dim", config.dim / config.n_heads);
  config.rope_layout = RopeLayout::HalfSplit;
  config.tied_embeddings = false;
  if (root.contains("tie_word_embeddings")) {
    if (!root["tie_word_embeddings"].is_boolean()) fail("{}: field 'tie_word_embeddings' must be a bool", where);
    config.tied_embeddings = root["tie_word_embeddings"].get<bool>();
  }
  return config;
}

// ================================================================================================
// One .safetensors shard -> TensorViews
// ================================================================================================

struct SafetensorsDType {
  const char* name;
  DType dtype;
};
constexpr SafetensorsDType kSupportedDTypes[] = {{"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}};

constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // real headers are well under 10 MB

void read_shard(const std::shared_ptr<MappedFile>& mapping, ModelFile& file) {
  const std::string& where = mapping->path();
  ByteReader reader(mapping->data(), mapping->size(), where);
  const auto header_length = reader.read<uint64_t>("header length");
  if (header_length > reader.remaining() || header_length > kMaxHeaderBytes) {
    fail("{}: header length {} is impossible for a file of {} bytes", where, header_length, mapping->size());
  }
  const auto* header_bytes = reinterpret_cast<const char*>(reader.take(size_t(header_length), "JSON header"));
  const json header = json::parse(header_bytes, header_bytes + header_length, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) fail("{}: the header is not a valid JSON object", where);

  const size_t data_begin = reader.offset();
  const size_t data_size = reader.remaining();
  for (const auto& [hf_name, entry] : header.items()) {
    if (hf_name == "__metadata__") continue;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
        !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array()) {
      fail("{}: tensor '{}' needs string 'dtype', array 'shape' and array 'data_offsets'", where, hf_name);
    }
    const std::string dtype_text = entry["dtype"].get<std::string>();
    const auto* supported = std::find_if(std::begin(kSupportedDTypes), std::end(kSupportedDTypes),
                                         [&](const SafetensorsDType& d) { return dtype_text == d.name; });
    if (supported == std::end(kSupportedDTypes)) fail("{}: tensor '{}' has unsupported dtype '{}' (F32, F16, BF16 are read)", where, hf_name, dtype_text);

    TensorView view;
    view.dtype = supported->dtype;
    constexpr int64_t kMaxElements = int64_t(1) << 56;  // keeps byte sizes far from overflow
    int64_t n_elements = 1;
    for (const json& extent : entry["shape"]) {
      if (!extent.is_number_unsigned() || extent.get<uint64_t>() > uint64_t(kMaxElements)) {
        fail("{}: tensor '{}' has an invalid shape entry {}", where, hf_name, extent.dump());
      }
      const auto value = int64_t(extent.get<uint64_t>());
      if (value != 0 && n_elements > kMaxElements / value) fail("{}: tensor '{}' shape is too large", where, hf_name);
      n_elements *= value;
      view.shape.push_back(value);
    }
    if (view.shape.size() > 4) fail("{}: tensor '{}' has {} dimensions (at most 4)", where, hf_name, view.shape.size());

    const json& offsets = entry["data_offsets"];
    if (offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      fail("{}: tensor '{}' data_offsets must be two non-negative integers", where, hf_name);
    }
    const auto begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      fail("{}: tensor '{}' data_offsets [{}, {}) lie outside the {} data bytes", where, hf_name, begin, end, data_size);
    }
    view.n_bytes = dtype_row_bytes(view.dtype, n_elements);
    if (end - begin != view.n_bytes) {
      fail("{}: tensor '{}' data_offsets span {} bytes but its shape and dtype need {}", where, hf_name, end - begin, view.n_bytes);
    }

    const auto canonical = canonical_name_from_hf(hf_name);
    if (!canonical) continue;  // not a weight the Llama forward pass uses (e.g. rotary inv_freq)
    view.name = *canonical;
    const uint8_t* data = mapping->data() + data_begin + begin;
    // The header length is arbitrary, so data may be misaligned for its element type: copy it then.
    if (reinterpret_cast<uintptr_t>(data) % dtype_block_bytes(view.dtype) != 0) {
      file.owned.emplace_back(data, data + view.n_bytes);
      data = file.owned.back().data();
    }
    view.data = data;
    if (file.tensors.count(view.name) != 0) fail("{}: tensor '{}' ({}) appears twice", where, hf_name, view.name);
    file.tensors.emplace(view.name, std::move(view));
  }
}

// The shard files of a checkpoint directory, in name order.
std::vector<fs::path> find_shards(const fs::path& dir) {
  if (fs::is_regular_file(dir / "model.safetensors")) return {dir / "model.safetensors"};
  std::set<fs::path> shards;
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::is_regular_file(index)) {
    const json root = json::parse(read_text_file(index), nullptr, false);
    if (root.is_discarded() || !root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
      fail("{}: expected a JSON object with a 'weight_map' object", index.string());
    }
    for (const auto& [name, shard] : root["weight_map"].items()) {
      if (!shard.is_string()) fail("{}: weight_map['{}'] must be a file name", index.string(), name);
      const fs::path shard_name = shard.get<std::string>();
      if (shard_name.has_parent_path() || shard_name.empty()) fail("{}: shard '{}' must be a plain file name", index.string(), shard_name.string());
      shards.insert(dir / shard_name);
    }
  } else {
    const std::regex pattern(R"(model-\d+-of-\d+\.safetensors)");
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file() && std::regex_match(entry.path().filename().string(), pattern)) shards.insert(entry.path());
    }
  }
  if (shards.empty()) fail("{}: no model.safetensors or model-0000x-of-0000y.safetensors shards found", dir.string());
  return {shards.begin(), shards.end()};
}

}  // namespace

// ================================================================================================
// load_safetensors
// ================================================================================================

ModelFile load_safetensors(const std::string& path) {
  ModelFile file;
  file.path = path;
  file.format = "safetensors";
  try {
    std::vector<fs::path> shards;
    fs::path config_path;
    if (fs::is_directory(path)) {
      shards = find_shards(path);
      config_path = fs::path(path) / "config.json";
    } else {
      shards = {fs::path(path)};
      const fs::path parent = fs::path(path).parent_path();
      config_path = (parent.empty() ? fs::path(".") : parent) / "config.json";
    }
    if (!fs::is_regular_file(config_path)) fail("{}: config.json not found at {}", path, config_path.string());
    file.config = read_hf_config(config_path);

    auto mappings = std::make_shared<std::vector<std::shared_ptr<MappedFile>>>();
    for (const fs::path& shard : shards) {
      mappings->push_back(MappedFile::open(shard.string()));
      read_shard(mappings->back(), file);
    }
    // ModelFile holds one mapping; an aliasing shared_ptr keeps every shard mapped while pointing at the first.
    file.mapping = std::shared_ptr<MappedFile>(mappings, mappings->front().get());
  } catch (const json::exception& error) {
    fail("{}: malformed JSON: {}", path, error.what());  // nlohmann's own type errors become infer::Error
  } catch (const fs::filesystem_error& error) {
    fail("{}: {}", path, error.what());
  }

  // lm_head is absent when the classifier shares the embedding.
  if (!file.has("output.weight")) file.config.tied_embeddings = true;
  file.config.validate(path);
  file.validate_llama_tensors();
  return file;
}

}  // namespace infer
