// tokenizer.cpp: what both tokenizer algorithms share: decode(), the choice of algorithm for a GGUF
// vocabulary, special-token splitting, validation, their common base class, and the ChatML chat template.
#include "infer/tokenizer/tokenizer.h"

#include "infer/core/error.h"
#include "tokenizer_internal.h"

#include <algorithm>
#include <array>

namespace infer {

// ==== Tokenizer::decode ==============================================================================

std::string Tokenizer::decode(const std::vector<int>& tokens, bool render_special) const {
  std::string text;
  int prev_token = -1;  // start of sequence: SentencePiece drops the dummy-prefix space here too
  for (int token : tokens) {
    text += decode_token(prev_token, token, render_special);
    prev_token = token;
  }
  return text;
}

// ==== make_tokenizer =================================================================================

std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerData& data) {
  const std::string source = fmt::format("tokenizer (tokenizer.ggml.model = '{}')", data.model);
  if (data.model == "llama") {
    // GGUF pieces spell a space as U+2581 "▁", like SentencePiece's own model files.
    return detail::make_sentencepiece_bpe(data, "\xE2\x96\x81", /*match_special_text=*/true, source);
  }
  if (data.model == "gpt2") return detail::make_byte_level_bpe(data, source);
  fail("{}: unsupported tokenizer model (supported: 'llama', 'gpt2')", source);
}

// ==== apply_chat_template ============================================================================

namespace {

// SmolLM2's template inserts a default system turn when the conversation has none:
//   {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}
// We do not run Jinja; we take the text between "<|im_start|>system" + newline and "<|im_end|>" when it is a
// plain literal. Templates that build the system turn from variables (Qwen's "' + message['content'] + '")
// give a Jinja expression there, which we recognise and ignore.
std::string default_system_message(std::string_view chat_template) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  constexpr std::string_view kClose = "<|im_end|>";
  const size_t open = chat_template.find(kOpen);
  if (open == std::string_view::npos) return "";
  size_t start = open + kOpen.size();
  // The newline is a real one or, when the template's string literal escapes it, the two characters "\n".
  bool escaped_newlines = false;
  if (chat_template.substr(start, 1) == "\n") {
    start += 1;
  } else if (chat_template.substr(start, 2) == "\\n") {
    start += 2;
    escaped_newlines = true;
  } else {
    return "";
  }
  const size_t close = chat_template.find(kClose, start);
  if (close == std::string_view::npos) return "";
  std::string message(chat_template.substr(start, close - start));
  for (std::string_view jinja_marker : {"{", "}", "' +", "'+", "+ '", "+'", "\" +", "\"+", "+ \"", "+\""}) {
    if (message.find(jinja_marker) != std::string::npos) return "";
  }
  if (!escaped_newlines) return message;
  std::string unescaped;
  for (size_t at = 0; at < message.size(); ++at) {
    if (message.compare(at, 2, "\\n") == 0) {
      unescaped += '\n';
      ++at;
    } else {
      unescaped += message[at];
    }
  }
  return unescaped;
}

}  // namespace

std::string chat_template_default_system(std::string_view chat_template) {
  return default_system_message(chat_template);
}

std::string apply_chat_template(const TokenizerData& data, std::string_view user_prompt,
                                std::string_view system_prompt) {
  if (data.chat_template.find("<|im_start|>") == std::string::npos) return std::string(user_prompt);
  // ChatML: every turn is "<|im_start|>{role}\n{content}<|im_end|>\n"; the open assistant turn at the
  // end is the generation prompt.
  const std::string system =
      system_prompt.empty() ? default_system_message(data.chat_template) : std::string(system_prompt);
  std::string text;
  if (!system.empty()) text += fmt::format("<|im_start|>system\n{}<|im_end|>\n", system);
  text += fmt::format("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", user_prompt);
  return text;
}

namespace detail {

// ==== UTF-8 ==========================================================================================

size_t utf8_char_length(std::string_view text) {
  const auto lead = static_cast<unsigned char>(text[0]);
  size_t length = 0;
  uint32_t min_code_point = 0;
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, min_code_point = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, min_code_point = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, min_code_point = 0x10000;
  } else {
    return 1;  // a continuation byte or 0xF8..0xFF cannot start a character
  }
  if (text.size() < length) return 1;
  uint32_t code_point = lead & (0x7F >> length);
  for (size_t i = 1; i < length; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if ((byte & 0xC0) != 0x80) return 1;
    code_point = (code_point << 6) | (byte & 0x3F);
  }
  // Overlong encodings, UTF-16 surrogates and values past U+10FFFF are not valid UTF-8.
  if (code_point < min_code_point || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 1;
  }
  return length;
}

// ==== SpecialTokenSplitter ===========================================================================

SpecialTokenSplitter::SpecialTokenSplitter(const TokenizerData& data) {
  for (size_t id = 0; id < data.token_types.size() && id < data.tokens.size(); ++id) {
    const int32_t type = data.token_types[id];
    const std::string& text = data.tokens[id];
    if ((type != kTokenControl && type != kTokenUserDefined) || text.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(text[0])].push_back({text, static_cast<int>(id)});
    ++by_first_byte_count_;
  }
  for (auto& candidates : by_first_byte_) {
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Special& a, const Special& b) { return a.text.size() > b.text.size(); });
  }
}

std::vector<TextFragment> SpecialTokenSplitter::split(std::string_view text) const {
  std::vector<TextFragment> fragments;
  size_t raw_start = 0;  // start of the raw text not yet emitted
  size_t position = 0;
  while (position < text.size()) {
    const Special* match = nullptr;
    for (const Special& candidate : by_first_byte_[static_cast<unsigned char>(text[position])]) {
      if (text.substr(position).starts_with(candidate.text)) {
        match = &candidate;
        break;  // sorted longest first
      }
    }
    if (match == nullptr) {
      ++position;
      continue;
    }
    if (position > raw_start) fragments.push_back({text.substr(raw_start, position - raw_start), -1});
    fragments.push_back({{}, match->id});
    position += match->text.size();
    raw_start = position;
  }
  if (raw_start < text.size()) fragments.push_back({text.substr(raw_start), -1});
  return fragments;
}

// ==== Shared vocabulary facts ========================================================================

std::vector<int> end_of_generation_ids(const TokenizerData& data) {
  std::vector<int> ids;
  if (data.eos_id >= 0) ids.push_back(data.eos_id);
  // Chat models end a turn with these; their metadata's eos is often a different token.
  constexpr std::array<std::string_view, 3> kTurnEnds = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>"};
  for (size_t id = 0; id < data.tokens.size(); ++id) {
    if (std::find(kTurnEnds.begin(), kTurnEnds.end(), data.tokens[id]) != kTurnEnds.end()) {
      ids.push_back(static_cast<int>(id));
    }
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// ==== BpeTokenizerBase ===============================================================================

namespace {
// Lets the constructor validate the data before its members copy it.
const TokenizerData& validated(const TokenizerData& data, const std::string& source) {
  validate_tokenizer_data(data, source);
  return data;
}
}  // namespace

BpeTokenizerBase::BpeTokenizerBase(const TokenizerData& data, bool match_special_text, const std::string& source)
    : pieces_(validated(data, source).tokens),
      add_bos_by_default_(data.add_bos),
      bos_id_(data.bos_id),
      eos_id_(data.eos_id),
      unk_id_(data.unk_id),
      end_of_generation_(end_of_generation_ids(data)),
      specials_(match_special_text ? SpecialTokenSplitter(data) : SpecialTokenSplitter()) {}

bool BpeTokenizerBase::is_end_of_generation(int token) const {
  return std::find(end_of_generation_.begin(), end_of_generation_.end(), token) != end_of_generation_.end();
}

void BpeTokenizerBase::check_token(int token) const {
  if (token < 0 || token >= vocab_size()) fail("token id {} is outside the vocabulary of {}", token, vocab_size());
}

std::vector<TextFragment> BpeTokenizerBase::begin_encode(std::string_view text, bool add_bos, bool parse_special,
                                                         std::vector<int>& ids) const {
  if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
  std::vector<TextFragment> fragments;
  if (parse_special && !specials_.empty()) {
    fragments = specials_.split(text);
  } else if (!text.empty()) {
    fragments.push_back({text, -1});
  }
  return fragments;
}

void validate_tokenizer_data(const TokenizerData& data, const std::string& source) {
  const size_t n_tokens = data.tokens.size();
  // 2^22 is far above any real vocabulary (Llama-3: 128256); it catches garbage before big allocations.
  if (n_tokens == 0 || n_tokens > (size_t{1} << 22)) fail("{}: invalid vocabulary size {}", source, n_tokens);
  if (!data.token_types.empty() && data.token_types.size() != n_tokens) {
    fail("{}: {} token types for {} tokens", source, data.token_types.size(), n_tokens);
  }
  if (!data.scores.empty() && data.scores.size() != n_tokens) {
    fail("{}: {} scores for {} tokens", source, data.scores.size(), n_tokens);
  }
  auto check_id = [&](int id, const char* what) {
    if (id < -1 || id >= static_cast<int>(n_tokens)) {
      fail("{}: {} = {} is outside the vocabulary of {} tokens", source, what, id, n_tokens);
    }
  };
  check_id(data.bos_id, "bos_id");
  check_id(data.eos_id, "eos_id");
  check_id(data.unk_id, "unk_id");
}

}  // namespace detail
}  // namespace infer
