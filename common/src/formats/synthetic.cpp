// synthetic.cpp: random-weight Llama models of real shapes (presets, deterministic weights, a small
// byte-level vocabulary). The format writers are in gguf/safetensors/llama2c_writer.cpp.
#include "infer/formats/synthetic.h"

#include "infer/core/error.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

namespace infer {

// ================================================================================================
// Presets
// ================================================================================================

namespace {
ModelConfig make_config(int dim, int hidden_dim, int n_layers, int n_heads, int n_kv_heads, int head_dim,
                        int vocab_size, int max_seq_len, float rope_theta, bool tied) {
  ModelConfig config;
  config.dim = dim;
  config.hidden_dim = hidden_dim;
  config.n_layers = n_layers;
  config.n_heads = n_heads;
  config.n_kv_heads = n_kv_heads;
  config.head_dim = head_dim;
  config.vocab_size = vocab_size;
  config.max_seq_len = max_seq_len;
  config.rope_theta = rope_theta;
  config.norm_eps = 1e-5f;
  config.rope_layout = RopeLayout::Interleaved;  // canonical order: Q/K rows as GGUF and llama2.c store them
  config.tied_embeddings = tied;
  return config;
}
}  // namespace

ModelConfig synthetic_preset(const std::string& name) {
  //                        dim  hidden layers heads kv head_dim  vocab   seq   theta    tied
  // "tiny": hidden 96 is not a multiple of 64 and it is untied, so tests cover output.weight.
  if (name == "tiny") return make_config(64, 96, 2, 4, 2, 16, 300, 256, 10000.0f, false);
  // "micro": the loader fuzz tests and fuzz seeds write thousands of variants of it. dim 32 is one
  // block of the 32-wide quantized formats per row; vocab 279 is the smallest synthetic_tokenizer allows.
  if (name == "micro") return make_config(32, 32, 1, 2, 1, 16, 279, 16, 10000.0f, false);
  if (name == "stories260k") return make_config(64, 172, 5, 8, 4, 8, 512, 512, 10000.0f, true);
  if (name == "smollm2-135m") return make_config(576, 1536, 30, 9, 3, 64, 49152, 8192, 100000.0f, true);
  if (name == "tinyllama-1.1b") return make_config(2048, 5632, 22, 32, 4, 64, 32000, 2048, 10000.0f, false);
  if (name == "llama3-8b") return make_config(4096, 14336, 32, 32, 8, 128, 128256, 8192, 500000.0f, false);
  fail("unknown synthetic preset '{}' (micro, tiny, stories260k, smollm2-135m, tinyllama-1.1b, llama3-8b)", name);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> llama_tensor_shapes(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  shapes.push_back({"token_embd.weight", {c.vocab_size, c.dim}});
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const std::string prefix = "blk." + std::to_string(layer) + ".";
    shapes.push_back({prefix + "attn_norm.weight", {c.dim}});
    shapes.push_back({prefix + "attn_q.weight", {c.q_dim(), c.dim}});
    shapes.push_back({prefix + "attn_k.weight", {c.kv_dim(), c.dim}});
    shapes.push_back({prefix + "attn_v.weight", {c.kv_dim(), c.dim}});
    shapes.push_back({prefix + "attn_output.weight", {c.dim, c.q_dim()}});
    shapes.push_back({prefix + "ffn_norm.weight", {c.dim}});
    shapes.push_back({prefix + "ffn_gate.weight", {c.hidden_dim, c.dim}});
    shapes.push_back({prefix + "ffn_up.weight", {c.hidden_dim, c.dim}});
    shapes.push_back({prefix + "ffn_down.weight", {c.dim, c.hidden_dim}});
  }
  shapes.push_back({"output_norm.weight", {c.dim}});
  if (!c.tied_embeddings) shapes.push_back({"output.weight", {c.vocab_size, c.dim}});
  return shapes;
}

// ================================================================================================
// Deterministic weights
// ================================================================================================
// Every tensor has its own seed (the model seed mixed with a hash of its name), and each chunk of
// kChunk values its own generator, so tensors can be generated alone, in any order, on any number
// of threads, and always come out the same. Values are uniform in [-a, a] with a = sqrt(3) * std
// (the variance of that uniform is a^2 / 3): no std::normal_distribution, whose output differs
// between standard libraries.

namespace {
constexpr int64_t kChunk = 1 << 16;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

// out[i] = center + half_width * u, u uniform in [-1, 1).
void fill_uniform(std::vector<float>& out, uint64_t tensor_seed, float center, float half_width) {
  const int64_t n = int64_t(out.size());
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
    std::mt19937_64 rng(splitmix64(tensor_seed + uint64_t(chunk)));
    const int64_t end = std::min(n, (chunk + 1) * kChunk);
    for (int64_t i = chunk * kChunk; i < end; ++i) {
      const double unit = double(rng() >> 11) * 0x1.0p-53;  // [0, 1) with 53 random bits
      out[size_t(i)] = center + half_width * float(2.0 * unit - 1.0);
    }
  }
}

const std::vector<int64_t>& shape_of(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                                     const std::string& name) {
  for (const auto& [tensor, shape] : shapes) {
    if (tensor == name) return shape;
  }
  fail("synthetic model: no tensor named '{}' in this config", name);
}

std::vector<float> generate(const std::string& name, const std::vector<int64_t>& shape, uint64_t seed) {
  int64_t n = 1;
  for (int64_t extent : shape) n *= extent;
  std::vector<float> values(static_cast<size_t>(n));
  const uint64_t tensor_seed = splitmix64(seed ^ fnv1a(name));
  if (shape.size() == 1) {
    fill_uniform(values, tensor_seed, 1.0f, 0.1f);  // RMSNorm gains: near 1 like trained models
  } else {
    // std = 1/sqrt(fan_in) keeps W x at the scale of x (fan_in = the row length, y = W x).
    const float std_dev = 1.0f / std::sqrt(float(shape.back()));
    fill_uniform(values, tensor_seed, 0.0f, std::sqrt(3.0f) * std_dev);
  }
  return values;
}
}  // namespace

std::vector<float> synthetic_tensor(const ModelConfig& config, uint64_t seed, const std::string& name) {
  const auto shapes = llama_tensor_shapes(config);
  return generate(name, shape_of(shapes, name), seed);
}

SyntheticModel make_synthetic_model(const ModelConfig& config, uint64_t seed) {
  config.validate("synthetic model config");
  SyntheticModel model;
  model.config = config;
  model.tokenizer = synthetic_tokenizer(config.vocab_size);
  for (const auto& [name, shape] : llama_tensor_shapes(config)) {
    model.tensors[name] = generate(name, shape, seed);
    model.shapes[name] = shape;
  }
  return model;
}

// ================================================================================================
// Byte-level vocabulary (GPT-2 style)
// ================================================================================================
// Layout: 3 control tokens, the 256 byte symbols (in byte order), the merged tokens, then unused
// filler tokens up to vocab_size. Byte-level BPE never sees raw bytes: GPT-2's bytes_to_unicode
// maps each byte to a printable code point (printable ASCII and Latin-1 map to themselves, the
// rest to U+0100 onwards, so a space becomes "Ġ" U+0120).

namespace {
std::string utf8(uint32_t code_point) {
  std::string out;
  if (code_point < 0x80) {
    out += char(code_point);
  } else if (code_point < 0x800) {
    out += char(0xc0 | (code_point >> 6));
    out += char(0x80 | (code_point & 0x3f));
  } else {
    out += char(0xe0 | (code_point >> 12));
    out += char(0x80 | ((code_point >> 6) & 0x3f));
    out += char(0x80 | (code_point & 0x3f));
  }
  return out;
}

// GPT-2's bytes_to_unicode, as code points indexed by byte.
std::vector<uint32_t> byte_symbols() {
  std::vector<uint32_t> symbols(256);
  uint32_t next_extra = 256;
  for (uint32_t byte = 0; byte < 256; ++byte) {
    const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae);
    symbols[byte] = printable ? byte : next_extra++;
  }
  return symbols;
}

// Merges of common English pairs, in priority order; each names two existing tokens.
constexpr const char* kMerges[] = {"Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t",
                                   "Ġ w", "o u", "a n", "Ġ o", "i s", "e n", "Ġ b", "Ġ c", "in g", "e d"};
constexpr const char* kSpecialTokens[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

constexpr const char* kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

constexpr int32_t kTypeNormal = 1, kTypeControl = 3, kTypeUnused = 5;
}  // namespace

TokenizerData synthetic_tokenizer(int vocab_size) {
  const int n_merges = int(std::size(kMerges)), n_special = int(std::size(kSpecialTokens));
  const int needed = n_special + 256 + n_merges;
  if (vocab_size < needed) {
    fail("synthetic tokenizer: vocab_size {} is too small; the byte-level vocabulary needs at least {} "
         "({} special + 256 bytes + {} merges)", vocab_size, needed, n_special, n_merges);
  }
  TokenizerData data;
  data.model = "gpt2";
  data.pre = "gpt2";
  for (const char* special : kSpecialTokens) {
    data.tokens.push_back(special);
    data.token_types.push_back(kTypeControl);
  }
  for (uint32_t symbol : byte_symbols()) {
    data.tokens.push_back(utf8(symbol));
    data.token_types.push_back(kTypeNormal);
  }
  for (const char* merge : kMerges) {
    const std::string pair = merge;
    const size_t space = pair.find(' ');
    data.merges.push_back(pair);
    data.tokens.push_back(pair.substr(0, space) + pair.substr(space + 1));  // the merged token
    data.token_types.push_back(kTypeNormal);
  }
  while (int(data.tokens.size()) < vocab_size) {
    data.tokens.push_back("<|filler_" + std::to_string(data.tokens.size()) + "|>");
    data.token_types.push_back(kTypeUnused);
  }
  data.bos_id = 1;  // <|im_start|>, as in SmolLM2-Instruct
  data.eos_id = 2;  // <|im_end|>
  data.unk_id = -1; // byte-level BPE covers every byte: no unknown token
  data.add_bos = false;
  data.add_space_prefix = false;
  data.chat_template = kChatMlTemplate;
  return data;
}

// ================================================================================================
// Writers from a SyntheticModel, and the streaming variants
// ================================================================================================

namespace {
TensorSource model_source(const SyntheticModel& model) {
  return [&model](const std::string& name, std::vector<float>& out) {
    auto it = model.tensors.find(name);
    if (it == model.tensors.end()) fail("synthetic model: tensor '{}' is missing", name);
    out = it->second;
  };
}
TensorSource seeded_source(const ModelConfig& config, uint64_t seed) {
  auto shapes = std::make_shared<std::vector<std::pair<std::string, std::vector<int64_t>>>>(llama_tensor_shapes(config));
  return [shapes, seed](const std::string& name, std::vector<float>& out) { out = generate(name, shape_of(*shapes, name), seed); };
}
}  // namespace

void write_gguf(const std::string& path, const SyntheticModel& model, DType dtype) {
  write_gguf(path, model.config, model.tokenizer, model_source(model), dtype);
}
void write_safetensors(const std::string& dir, const SyntheticModel& model, DType dtype) {
  write_safetensors(dir, model.config, model_source(model), dtype);
}
void write_llama2c(const std::string& path, const SyntheticModel& model, int version) {
  write_llama2c(path, model.config, model_source(model), version);
}

void write_synthetic_gguf(const std::string& path, const ModelConfig& config, uint64_t seed, DType dtype) {
  config.validate("synthetic model config");
  write_gguf(path, config, synthetic_tokenizer(config.vocab_size), seeded_source(config, seed), dtype);
}
void write_synthetic_safetensors(const std::string& dir, const ModelConfig& config, uint64_t seed, DType dtype) {
  config.validate("synthetic model config");
  write_safetensors(dir, config, seeded_source(config, seed), dtype);
}
void write_synthetic_llama2c(const std::string& path, const ModelConfig& config, uint64_t seed, int version) {
  config.validate("synthetic model config");
  write_llama2c(path, config, seeded_source(config, seed), version);
}

}  // namespace infer
