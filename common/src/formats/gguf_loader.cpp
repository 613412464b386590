// gguf_loader.cpp: parsing GGUF v2/v3 (metadata, tensor infos) and building a ModelFile from it.
//
// A GGUF file is untrusted input: every count, length and offset is checked against the bytes that
// remain before it is used, so a corrupt file produces an infer::Error naming the file, never a huge
// allocation or a read out of bounds.
#include "infer/core/error.h"
#include "infer/formats/gguf.h"
#include "infer/formats/model_file.h"

#include <limits>
#include <set>

namespace infer {

// ================================================================================================
// GgufValue and type ids
// ================================================================================================

GgufValue GgufValue::make_int(GgufType type, int64_t value) {
  GgufValue v;
  v.type = type;
  v.integer = value;
  return v;
}
GgufValue GgufValue::make_float(GgufType type, double value) {
  GgufValue v;
  v.type = type;
  v.real = value;
  return v;
}
GgufValue GgufValue::make_string(std::string value) {
  GgufValue v;
  v.type = GgufType::STRING;
  v.text = std::move(value);
  return v;
}
GgufValue GgufValue::make_array(GgufType element_type, std::vector<GgufValue> elements) {
  GgufValue v;
  v.type = GgufType::ARRAY;
  v.element_type = element_type;
  v.elements = std::move(elements);
  return v;
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::BOOL: return true;
    default: return false;
  }
}

bool GgufValue::operator==(const GgufValue& other) const {
  if (type != other.type) return false;
  if (is_integer()) return integer == other.integer;
  if (is_float()) return real == other.real;
  if (type == GgufType::STRING) return text == other.text;
  return element_type == other.element_type && elements == other.elements;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [name, value] : metadata) {
    if (name == key) return &value;
  }
  return nullptr;
}

uint32_t ggml_type_id(DType type) {
  switch (type) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 8;
    case DType::BF16: return 30;
    case DType::Q5_0: return 6;
    case DType::Q5_1: return 7;
    case DType::Q4_K: return 12;
    case DType::Q5_K: return 13;
    case DType::Q6_K: return 14;
  }
  return 0;
}

std::optional<DType> dtype_from_ggml_type(uint32_t id) {
  switch (id) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 2: return DType::Q4_0;
    case 3: return DType::Q4_1;
    case 6: return DType::Q5_0;
    case 7: return DType::Q5_1;
    case 8: return DType::Q8_0;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    case 30: return DType::BF16;
    default: return std::nullopt;
  }
}

// ================================================================================================
// Parsing: header, metadata, tensor infos
// ================================================================================================

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayNesting = 4;           // real files nest at most once; bounds the recursion
constexpr uint32_t kMaxDims = 4;              // ggml tensors have at most 4 dimensions

// Smallest encoding of one value of `type`, used to reject counts the remaining bytes cannot hold.
size_t min_value_bytes(GgufType type) {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::STRING: return 8;      // the u64 length
    case GgufType::ARRAY: return 4 + 8;   // element type + count
  }
  return 1;
}

bool known_type(uint32_t raw) { return raw <= uint32_t(GgufType::F64); }

class GgufParser {
 public:
  explicit GgufParser(const MappedFile& file) : path_(file.path()), reader_(file.data(), file.size(), file.path()) {}

  GgufFile parse() {
    GgufFile result;
    if (reader_.remaining() < 4) fail("{}: too short to be a GGUF file ({} bytes)", path_, reader_.remaining());
    const auto magic = reader_.read<uint32_t>("magic");
    if (magic != kGgufMagic) fail("{}: bad magic 0x{:08x}, not a GGUF file", path_, magic);
    result.version = reader_.read<uint32_t>("version");
    if (result.version == 1) {
      fail("{}: GGUF version 1 is not supported (it used 32-bit counts); re-convert the model to v3", path_);
    }
    if (result.version != 2 && result.version != 3) fail("{}: unsupported GGUF version {}", path_, result.version);

    // v2 and v3 both use 64-bit counts (v3 only added big-endian support, which we do not accept).
    const auto tensor_count = reader_.read<uint64_t>("tensor_count");
    const auto metadata_count = reader_.read<uint64_t>("metadata_kv_count");
    check_count(metadata_count, 8 + 4 + 1, "metadata_kv_count");

    std::set<std::string> keys;
    for (uint64_t i = 0; i < metadata_count; ++i) {
      std::string key = read_string("metadata key");
      const uint32_t raw_type = reader_.read<uint32_t>("metadata value type");
      if (!known_type(raw_type)) fail("{}: metadata '{}' has unknown value type {}", path_, key, raw_type);
      GgufValue value = read_value(GgufType(raw_type), key, 0);
      if (!keys.insert(key).second) fail("{}: metadata key '{}' appears twice", path_, key);
      result.metadata.emplace_back(std::move(key), std::move(value));
    }

    if (const GgufValue* alignment = result.find("general.alignment")) {
      if (!alignment->is_integer() || alignment->integer <= 0 || alignment->integer > (1 << 20) ||
          (alignment->integer & (alignment->integer - 1)) != 0) {
        fail("{}: general.alignment must be a power of two integer, got {}", path_, alignment->integer);
      }
      result.alignment = uint64_t(alignment->integer);
    }

    // Each tensor info takes at least: name length 8, n_dims 4, one dim 8, type 4, offset 8.
    check_count(tensor_count, 8 + 4 + 8 + 4 + 8, "tensor_count");
    std::set<std::string> names;
    result.tensors.reserve(size_t(tensor_count));
    for (uint64_t i = 0; i < tensor_count; ++i) {
      GgufTensorInfo info = read_tensor_info();
      if (!names.insert(info.name).second) fail("{}: tensor '{}' appears twice", path_, info.name);
      result.tensors.push_back(std::move(info));
    }

    // The data section starts at the next multiple of the alignment.
    const uint64_t end_of_infos = reader_.offset();
    const uint64_t data_offset = (end_of_infos + result.alignment - 1) / result.alignment * result.alignment;
    if (data_offset > reader_.offset() + reader_.remaining() && !result.tensors.empty()) {
      fail("{}: truncated: the data section would start at offset {} past the end of the file", path_, data_offset);
    }
    result.data_offset = size_t(data_offset);
    return result;
  }

 private:
  void check_count(uint64_t count, size_t min_bytes_each, std::string_view field) {
    if (count > reader_.remaining() / min_bytes_each) {
      fail("{}: {} = {} at offset {} is impossible: only {} bytes remain", path_, field, count, reader_.offset(),
           reader_.remaining());
    }
  }

  std::string read_string(std::string_view field) {
    const auto length = reader_.read<uint64_t>(field);
    if (length > reader_.remaining()) {
      fail("{}: {} length {} at offset {} exceeds the {} bytes that remain", path_, field, length,
           reader_.offset() - 8, reader_.remaining());
    }
    const uint8_t* bytes = reader_.take(size_t(length), field);
    return std::string(reinterpret_cast<const char*>(bytes), size_t(length));
  }

  GgufValue read_value(GgufType type, const std::string& key, int depth) {
    switch (type) {
      case GgufType::U8: return GgufValue::make_int(type, reader_.read<uint8_t>(key));
      case GgufType::I8: return GgufValue::make_int(type, reader_.read<int8_t>(key));
      case GgufType::U16: return GgufValue::make_int(type, reader_.read<uint16_t>(key));
      case GgufType::I16: return GgufValue::make_int(type, reader_.read<int16_t>(key));
      case GgufType::U32: return GgufValue::make_int(type, reader_.read<uint32_t>(key));
      case GgufType::I32: return GgufValue::make_int(type, reader_.read<int32_t>(key));
      case GgufType::U64: return GgufValue::make_int(type, int64_t(reader_.read<uint64_t>(key)));
      case GgufType::I64: return GgufValue::make_int(type, reader_.read<int64_t>(key));
      case GgufType::F32: return GgufValue::make_float(type, reader_.read<float>(key));
      case GgufType::F64: return GgufValue::make_float(type, reader_.read<double>(key));
      case GgufType::BOOL: {
        const auto byte = reader_.read<uint8_t>(key);
        if (byte > 1) fail("{}: metadata '{}' bool has value {} (must be 0 or 1)", path_, key, byte);
        return GgufValue::make_int(type, byte);
      }
      case GgufType::STRING: return GgufValue::make_string(read_string(key));
      case GgufType::ARRAY: {
        if (depth >= kMaxArrayNesting) fail("{}: metadata '{}' nests arrays too deeply", path_, key);
        const uint32_t raw_element = reader_.read<uint32_t>(key);
        if (!known_type(raw_element)) fail("{}: metadata '{}' array has unknown element type {}", path_, key, raw_element);
        const auto element_type = GgufType(raw_element);
        const auto count = reader_.read<uint64_t>(key);
        check_count(count, min_value_bytes(element_type), "array count of metadata '" + key + "'");
        std::vector<GgufValue> elements;
        elements.reserve(size_t(count));
        for (uint64_t i = 0; i < count; ++i) elements.push_back(read_value(element_type, key, depth + 1));
        return GgufValue::make_array(element_type, std::move(elements));
      }
    }
    fail("{}: metadata '{}' has unknown value type {}", path_, key, uint32_t(type));
  }

  GgufTensorInfo read_tensor_info() {
    GgufTensorInfo info;
    info.name = read_string("tensor name");
    const auto n_dims = reader_.read<uint32_t>("tensor n_dims");
    if (n_dims == 0 || n_dims > kMaxDims) fail("{}: tensor '{}' has {} dimensions (1 to {} allowed)", path_, info.name, n_dims, kMaxDims);
    // Element counts stay below 2^56 so that any byte size computed from them fits in 64 bits.
    constexpr uint64_t kMaxElements = uint64_t(1) << 56;
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto extent = reader_.read<uint64_t>("tensor dim");
      if (extent == 0 || extent > kMaxElements / n_elements) {
        fail("{}: tensor '{}' has invalid dimension {} = {}", path_, info.name, d, extent);
      }
      n_elements *= extent;
      info.dims.push_back(extent);
    }
    info.type_id = reader_.read<uint32_t>("tensor type");
    info.offset = reader_.read<uint64_t>("tensor offset");
    return info;
  }

  std::string path_;
  ByteReader reader_;
};

}  // namespace

GgufFile parse_gguf(const MappedFile& file) { return GgufParser(file).parse(); }

// ================================================================================================
// load_gguf: metadata -> ModelConfig / TokenizerData, tensor infos -> TensorViews
// ================================================================================================

namespace {

class MetadataReader {
 public:
  MetadataReader(const GgufFile& gguf, const std::string& path) : gguf_(gguf), path_(path) {}

  const GgufValue* find(const std::string& key) const { return gguf_.find(key); }

  std::optional<int64_t> integer(const std::string& key, int64_t lo, int64_t hi) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_integer()) fail("{}: metadata '{}' should be an integer", path_, key);
    if (value->integer < lo || value->integer > hi) fail("{}: metadata '{}' = {} is out of range", path_, key, value->integer);
    return value->integer;
  }
  int required_int(const std::string& key) const {
    auto value = integer(key, 1, std::numeric_limits<int32_t>::max());
    if (!value) fail("{}: required metadata '{}' is missing", path_, key);
    return int(*value);
  }
  std::optional<double> real(const std::string& key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_float()) fail("{}: metadata '{}' should be a float", path_, key);
    return value->real;
  }
  std::optional<std::string> text(const std::string& key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (value->type != GgufType::STRING) fail("{}: metadata '{}' should be a string", path_, key);
    return value->text;
  }
  std::optional<bool> boolean(const std::string& key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (value->type != GgufType::BOOL) fail("{}: metadata '{}' should be a bool", path_, key);
    return value->integer != 0;
  }
  // An array whose elements all have `element_type` (else nullptr when absent).
  const std::vector<GgufValue>* array(const std::string& key, GgufType element_type) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return nullptr;
    if (value->type != GgufType::ARRAY || value->element_type != element_type) {
      fail("{}: metadata '{}' should be an array of type {}", path_, key, uint32_t(element_type));
    }
    return &value->elements;
  }

 private:
  const GgufFile& gguf_;
  const std::string& path_;
};

TokenizerData read_tokenizer(const MetadataReader& meta, const std::string& path) {
  TokenizerData data;
  data.model = *meta.text("tokenizer.ggml.model");
  data.pre = meta.text("tokenizer.ggml.pre").value_or("");
  const auto* tokens = meta.array("tokenizer.ggml.tokens", GgufType::STRING);
  if (tokens == nullptr) fail("{}: tokenizer.ggml.tokens is missing", path);
  for (const auto& token : *tokens) data.tokens.push_back(token.text);
  const size_t n_tokens = data.tokens.size();

  if (const auto* scores = meta.array("tokenizer.ggml.scores", GgufType::F32)) {
    if (scores->size() != n_tokens) fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", path, scores->size(), n_tokens);
    for (const auto& score : *scores) data.scores.push_back(float(score.real));
  }
  if (const auto* types = meta.array("tokenizer.ggml.token_type", GgufType::I32)) {
    if (types->size() != n_tokens) fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", path, types->size(), n_tokens);
    for (const auto& type : *types) data.token_types.push_back(int32_t(type.integer));
  }
  if (const auto* merges = meta.array("tokenizer.ggml.merges", GgufType::STRING)) {
    for (const auto& merge : *merges) data.merges.push_back(merge.text);
  }
  auto token_id = [&](const std::string& key) {
    return int(meta.integer(key, 0, int64_t(n_tokens) - 1).value_or(-1));  // out of vocab -> error
  };
  data.bos_id = token_id("tokenizer.ggml.bos_token_id");
  data.eos_id = token_id("tokenizer.ggml.eos_token_id");
  data.unk_id = token_id("tokenizer.ggml.unknown_token_id");
  data.add_bos = meta.boolean("tokenizer.ggml.add_bos_token").value_or(data.add_bos);
  data.add_space_prefix = meta.boolean("tokenizer.ggml.add_space_prefix").value_or(data.add_space_prefix);
  data.chat_template = meta.text("tokenizer.chat_template").value_or("");
  return data;
}

}  // namespace

ModelFile load_gguf(const std::string& path) {
  ModelFile file;
  file.path = path;
  file.format = "gguf";
  file.mapping = MappedFile::open(path);
  const GgufFile gguf = parse_gguf(*file.mapping);
  const MetadataReader meta(gguf, path);

  // ---- architecture first: the llama.* keys only make sense for a Llama ------------------------
  const auto architecture = meta.text("general.architecture");
  if (!architecture) fail("{}: general.architecture is missing", path);
  if (*architecture != "llama") {
    fail("{}: unsupported architecture '{}' (this engine runs the Llama family)", path, *architecture);
  }

  // ---- tensors: types, sizes and data ranges ------------------------------------------------------
  const size_t data_size = file.mapping->size() - std::min(file.mapping->size(), gguf.data_offset);
  for (const GgufTensorInfo& info : gguf.tensors) {
    const auto dtype = dtype_from_ggml_type(info.type_id);
    if (!dtype) fail("{}: tensor '{}' has unknown dtype id {}", path, info.name, info.type_id);
    if (info.dims[0] % uint64_t(dtype_block_size(*dtype)) != 0) {
      fail("{}: tensor '{}' ({}) has rows of {} elements, not a multiple of the block size {}", path, info.name,
           dtype_name(*dtype), info.dims[0], dtype_block_size(*dtype));
    }
    TensorView view;
    view.name = info.name;
    view.dtype = *dtype;
    for (auto it = info.dims.rbegin(); it != info.dims.rend(); ++it) view.shape.push_back(int64_t(*it));  // ggml lists innermost first
    view.n_bytes = dtype_row_bytes(*dtype, view.n_elements());  // < 2^56 elements: cannot overflow
    if (info.offset % gguf.alignment != 0) {
      fail("{}: tensor '{}' data offset {} is not a multiple of the alignment {}", path, info.name, info.offset, gguf.alignment);
    }
    if (info.offset > data_size || view.n_bytes > data_size - info.offset) {
      fail("{}: tensor '{}' data [{}, {}) lies past the end of the file's data section ({} bytes)", path, info.name,
           info.offset, info.offset + view.n_bytes, data_size);
    }
    view.data = file.mapping->data() + gguf.data_offset + info.offset;
    file.tensors.emplace(info.name, std::move(view));
  }

  // ---- ModelConfig from llama.* ---------------------------------------------------------------
  ModelConfig& config = file.config;
  config.architecture = *architecture;
  config.dim = meta.required_int("llama.embedding_length");
  config.n_layers = meta.required_int("llama.block_count");
  config.n_heads = meta.required_int("llama.attention.head_count");
  config.n_kv_heads = int(meta.integer("llama.attention.head_count_kv", 1, 1 << 20).value_or(config.n_heads));
  config.hidden_dim = meta.required_int("llama.feed_forward_length");
  config.max_seq_len = meta.required_int("llama.context_length");
  config.rope_theta = float(meta.real("llama.rope.freq_base").value_or(10000.0));
  config.norm_eps = float(meta.real("llama.attention.layer_norm_rms_epsilon").value_or(1e-5));
  // The head width: key_length when given, else the rotary width, else dim / n_heads.
  if (auto key_length = meta.integer("llama.attention.key_length", 1, 1 << 20)) {
    config.head_dim = int(*key_length);
  } else if (auto rope_dims = meta.integer("llama.rope.dimension_count", 1, 1 << 20)) {
    config.head_dim = int(*rope_dims);
  } else {
    if (config.dim % config.n_heads != 0) fail("{}: embedding_length {} is not a multiple of head_count {}", path, config.dim, config.n_heads);
    config.head_dim = config.dim / config.n_heads;
  }
  // The GGUF converter permuted HF's Q/K rows so that RoPE rotates adjacent pairs.
  config.rope_layout = RopeLayout::Interleaved;
  config.tied_embeddings = !file.has("output.weight");

  if (meta.find("tokenizer.ggml.model") != nullptr) file.tokenizer = read_tokenizer(meta, path);

  if (auto vocab = meta.integer("llama.vocab_size", 1, 1 << 30)) {
    config.vocab_size = int(*vocab);
  } else if (file.tokenizer && !file.tokenizer->tokens.empty()) {
    config.vocab_size = int(file.tokenizer->tokens.size());
  } else if (file.has("token_embd.weight") && file.tensor("token_embd.weight").shape.size() == 2) {
    config.vocab_size = int(std::min<int64_t>(file.tensor("token_embd.weight").shape[0], 1 << 30));
  }

  config.validate(path);
  file.validate_llama_tensors();
  return file;
}

}  // namespace infer
