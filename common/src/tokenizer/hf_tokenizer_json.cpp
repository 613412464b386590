// hf_tokenizer_json.cpp: a Hugging Face tokenizer.json as TokenizerData, so that a safetensors
// checkpoint directory (config.json + model.safetensors + tokenizer.json) runs with no other file.
//
// Supported: byte-level BPE ("model": {"type": "BPE"} with a ByteLevel pre-tokenizer or decoder), the
// tokenizer of GPT-2, SmolLM2, Llama-3 and most recent models. Its vocabulary and merges are the
// same data GGUF stores under tokenizer.ggml.* with model "gpt2", so the ByteLevelBpe tokenizer
// runs it unchanged. The pre-tokenizer is recognised from its description:
//   Sequence[Digits(individual_digits), ByteLevel]           -> "smollm"
//   Split with the Llama-3 regex (contains "\p{N}{1,3}")      -> "llama-bpe"
//   anything else ByteLevel                                   -> "gpt2"
// SentencePiece-style tokenizer.json files (Metaspace pre-tokenizer, byte_fallback) rank merges
// instead of scoring pieces; they are refused with a message pointing to --tokenizer.
#include "infer/core/error.h"
#include "infer/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace infer {

namespace {

using Json = nlohmann::json;

bool contains_type(const Json& node, const std::string& type) {
  if (node.is_object()) {
    if (node.contains("type") && node["type"] == type) return true;
    for (const auto& [key, value] : node.items())
      if (contains_type(value, type)) return true;
  } else if (node.is_array()) {
    for (const auto& value : node)
      if (contains_type(value, type)) return true;
  }
  return false;
}

// tokenizer_config.json, when it sits beside tokenizer.json, names BOS/EOS, whether to add BOS, and
// the chat template: it overrides the guesses made from the vocabulary.
void apply_tokenizer_config(const std::filesystem::path& config_path, TokenizerData& data) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_path, ec)) return;
  std::ifstream in(config_path);
  const Json config = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) fail("{}: not a JSON object", config_path.string());
  auto token_id = [&](const char* key) {
    if (!config.contains(key)) return -2;
    const Json& value = config[key];
    const std::string text = value.is_string() ? value.get<std::string>()
                             : value.is_object() ? value.value("content", std::string()) : std::string();
    for (size_t id = 0; id < data.tokens.size(); ++id)
      if (data.tokens[id] == text) return int(id);
    return -1;
  };
  if (const int bos = token_id("bos_token"); bos != -2) data.bos_id = bos;
  if (const int eos = token_id("eos_token"); eos != -2) data.eos_id = eos;
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) data.add_bos = config["add_bos_token"].get<bool>();
  if (config.contains("chat_template") && config["chat_template"].is_string()) data.chat_template = config["chat_template"].get<std::string>();
}

std::string pre_tokenizer_name(const Json& pre) {
  const std::string text = pre.dump();
  if (text.find("\\\\p{N}{1,3}") != std::string::npos || text.find("\\p{N}{1,3}") != std::string::npos) return "llama-bpe";
  if (contains_type(pre, "Digits") && text.find("\"individual_digits\":true") != std::string::npos) return "smollm";
  return "gpt2";
}

}  // namespace

TokenizerData load_hf_tokenizer_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  Json root;
  try {
    root = Json::parse(in);
  } catch (const Json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  try {
    const Json& model = root.at("model");
    if (model.value("type", std::string("BPE")) != "BPE")
      fail("{}: tokenizer model type '{}' is not supported (only BPE)", path, model.value("type", std::string("?")));
    const Json pre = root.value("pre_tokenizer", Json());
    const Json decoder = root.value("decoder", Json());
    if (!contains_type(pre, "ByteLevel") && !contains_type(decoder, "ByteLevel"))
      fail("{}: only byte-level BPE tokenizer.json files are supported (this one looks SentencePiece-style); "
           "pass --tokenizer with a GGUF of the same model or a llama2.c tokenizer.bin", path);

    TokenizerData data;
    data.model = "gpt2";
    data.pre = pre_tokenizer_name(pre);
    data.add_space_prefix = false;

    // Vocabulary: {"piece": id}. Ids must be dense: every id in [0, n) exactly once.
    const Json& vocab = model.at("vocab");
    const Json added_tokens = root.value("added_tokens", Json::array());
    // Dense ids can be no larger than the number of entries: a bound before any allocation.
    const size_t max_tokens = vocab.size() + added_tokens.size();
    std::vector<std::string> tokens(vocab.size());
    std::vector<bool> seen(vocab.size(), false);
    auto place = [&](const std::string& piece, int64_t id) {
      if (id < 0 || size_t(id) >= max_tokens)
        fail("{}: token '{}' has id {}, outside [0, {}) (ids must be dense)", path, piece, id, max_tokens);
      if (size_t(id) >= tokens.size()) {
        tokens.resize(size_t(id) + 1);
        seen.resize(size_t(id) + 1, false);
      }
      tokens[size_t(id)] = piece;
      seen[size_t(id)] = true;
    };
    for (const auto& [piece, id] : vocab.items()) place(piece, id.get<int64_t>());
    // Added tokens (specials such as <|im_start|>) may lie inside or beyond the BPE vocabulary.
    std::vector<int32_t> types;
    std::vector<std::pair<int64_t, bool>> added;
    for (const Json& token : added_tokens) {
      const int64_t id = token.at("id").get<int64_t>();
      place(token.at("content").get<std::string>(), id);
      added.emplace_back(id, token.value("special", false));
    }
    for (size_t id = 0; id < seen.size(); ++id)
      if (!seen[id]) fail("{}: no token has id {} (ids must be dense)", path, id);
    data.tokens = std::move(tokens);
    data.token_types.assign(data.tokens.size(), 1);  // 1 = normal
    for (const auto& [id, special] : added) data.token_types[size_t(id)] = special ? 3 : 4;  // control / user-defined

    // Merges: "a b" strings (older files) or ["a", "b"] pairs (newer files).
    for (const Json& merge : model.value("merges", Json::array())) {
      if (merge.is_string()) {
        data.merges.push_back(merge.get<std::string>());
      } else if (merge.is_array() && merge.size() == 2) {
        data.merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
      } else {
        fail("{}: a merge is neither \"a b\" nor [\"a\", \"b\"]: {}", path, merge.dump());
      }
    }
    // BOS/EOS: tokenizer.json does not name them; the usual special tokens do.
    auto find = [&](std::initializer_list<const char*> names) {
      for (const char* name : names)
        for (size_t id = 0; id < data.tokens.size(); ++id)
          if (data.tokens[id] == name) return int(id);
      return -1;
    };
    data.bos_id = find({"<|begin_of_text|>", "<s>", "<|im_start|>", "<|endoftext|>"});
    data.eos_id = find({"<|end_of_text|>", "</s>", "<|im_end|>", "<|endoftext|>"});
    data.add_bos = find({"<|begin_of_text|>"}) >= 0;  // Llama-3 prepends BOS; GPT-2 style models do not
    apply_tokenizer_config(std::filesystem::path(path).parent_path() / "tokenizer_config.json", data);
    return data;
  } catch (const Json::exception& e) {
    fail("{}: unexpected tokenizer.json structure ({})", path, e.what());
  }
}

}  // namespace infer
