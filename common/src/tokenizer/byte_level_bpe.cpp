// byte_level_bpe.cpp: GPT-2 style byte-level BPE (GGUF tokenizer.ggml.model = "gpt2": SmolLM2, Llama-3).
//
// Encoding, as Hugging Face `tokenizers` does for these models:
//   1. Special tokens written literally ("<|im_start|>") are cut out first and become their ids.
//   2. Pre-tokenize: regexes split the rest into chunks (words with their leading space, numbers,
//      punctuation runs, whitespace runs). Merges never cross a chunk boundary, so " the" is always
//      encoded the same way whatever surrounds it.
//   3. Each chunk's bytes become symbols: byte b is spelled by one printable code point (GPT-2's
//      bytes_to_unicode table: printable ASCII and Latin-1 map to themselves, the other 68 bytes to
//      U+0100..U+0143; space becomes "Ġ" U+0120). The vocabulary and merges are written in that alphabet.
//   4. Repeatedly apply the merge of lowest rank (its position in the merges list: earlier merges were
//      learned first, from more frequent pairs) among adjacent symbol pairs, the leftmost on ties.
//   5. Each final symbol is a vocabulary token.
// Decoding maps each code point of a token back to its byte.
//
// As in sentencepiece_bpe.cpp, symbols live in a linked list and candidate pairs in a heap, so a chunk
// of n bytes costs O(n log n).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "infer/core/error.h"
#include "tokenizer_internal.h"

#include <array>
#include <queue>
#include <unordered_map>

namespace infer::detail {
namespace {

// ==== GPT-2's byte <-> printable code point table ====================================================

constexpr bool is_printable_byte(int byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

std::string utf8_encode(uint32_t code_point) {
  std::string out;
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return out;
}

// byte -> the code point that spells it. Printable bytes spell themselves; the others take the code
// points 256, 257, ... in byte order.
const std::array<uint32_t, 256>& byte_code_points() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> code_points{};
    uint32_t next_unprintable = 256;
    for (int byte = 0; byte < 256; ++byte) {
      code_points[byte] = is_printable_byte(byte) ? byte : next_unprintable++;
    }
    return code_points;
  }();
  return table;
}

// The code point starting at text[at] and its length in bytes; invalid UTF-8 yields U+FFFD, length 1.
std::pair<uint32_t, size_t> next_code_point(std::string_view text, size_t at) {
  const size_t length = utf8_char_length(text.substr(at));
  const auto lead = static_cast<unsigned char>(text[at]);
  if (length == 1) return {lead < 0x80 ? lead : 0xFFFD, 1};
  uint32_t code_point = lead & (0x7F >> length);
  for (size_t i = 1; i < length; ++i) code_point = (code_point << 6) | (static_cast<unsigned char>(text[at + i]) & 0x3F);
  return {code_point, length};
}

// ==== Pre-tokenizer regexes ==========================================================================

// GPT-2: contractions, letters / numbers / other symbols with one optional leading space, and
// whitespace; "\s+(?!\S)" leaves the last space of a run to start the next word.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama-3: case-insensitive contractions, numbers in groups of at most three digits, newlines kept
// with the symbols before them.
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// SmolLM2 first isolates every digit (HF's Digits(individual_digits=true)), then applies GPT-2's pattern.
constexpr const char* kSingleDigitPattern = R"(\p{N})";

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

// One split step: cuts text into the regex's matches and the stretches between them, keeping both
// (HF's "Isolated" behaviour). For the patterns above the stretches are either non-digit runs (the
// digit pattern) or invalid UTF-8 bytes, which no pattern item matches.
class SplitRegex {
 public:
  SplitRegex(const char* pattern, const std::string& source) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    // UTF: match code points, not bytes. UCP: \s, \p{L} etc. use Unicode properties. MATCH_INVALID_UTF:
    // invalid UTF-8 in the input is simply never matched instead of making pcre2_match fail.
    code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code, &error_offset, nullptr));
    if (!code_) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error_code, message.data(), message.size());
      fail("{}: cannot compile pre-tokenizer regex at offset {}: {}", source, error_offset,
           reinterpret_cast<const char*>(message.data()));
    }
    pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);  // optional speed-up; pcre2_match works without it
  }

  void split(std::string_view text, pcre2_match_data* match_data, std::vector<std::string_view>& out) const {
    size_t position = 0;
    while (position < text.size()) {
      const int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), position, 0,
                                 match_data, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) fail("pre-tokenizer regex failed with PCRE2 error {}", rc);
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data);
      const size_t match_start = ovector[0];
      size_t match_end = ovector[1];
      if (match_start > position) out.push_back(text.substr(position, match_start - position));
      // None of our patterns matches the empty string; the guard keeps a bad one from looping forever.
      if (match_end == match_start) match_end = match_start + utf8_char_length(text.substr(match_start));
      out.push_back(text.substr(match_start, match_end - match_start));
      position = match_end;
    }
    if (position < text.size()) out.push_back(text.substr(position));
  }

 private:
  struct CodeDeleter {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  std::unique_ptr<pcre2_code, CodeDeleter> code_;
};

// ==== The tokenizer ==================================================================================

class ByteLevelBpe final : public BpeTokenizerBase {
 public:
  ByteLevelBpe(const TokenizerData& data, const std::string& source);

  std::vector<int> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string decode_token(int prev_token, int token, bool render_special) const override;

 private:
  struct Merge {
    int rank;       // position in the merges list: lower merges first
    int merged_id;  // the token the pair becomes
  };
  static uint64_t pair_key(int left_id, int right_id) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left_id)) << 32) | static_cast<uint32_t>(right_id);
  }
  void choose_pre_tokenizer(const std::string& pre, const std::string& source);
  // Steps 3-5 for one pre-tokenized chunk; appends ids to `out`.
  void encode_chunk(std::string_view chunk, std::vector<int>& out) const;

  // pieces_ (BpeTokenizerBase) are as stored: in the bytes_to_unicode alphabet, except specials.
  std::vector<int32_t> types_;       // kToken* per id; empty when the file has none
  std::vector<std::string> decoded_; // per id: the bytes the token stands for
  std::unordered_map<std::string, int, StringHash, std::equal_to<>> token_ids_;
  std::array<int, 256> byte_tokens_;  // per byte: the id of its one-symbol token
  std::unordered_map<uint64_t, Merge> merges_;  // pair_key(left id, right id) -> merge
  std::vector<SplitRegex> pre_tokenizer_;       // applied in order, each to every piece of the previous
  bool ignore_merges_ = false;  // Llama-3: a chunk that is already a token is taken whole
};

// ==== Construction ===================================================================================

ByteLevelBpe::ByteLevelBpe(const TokenizerData& data, const std::string& source)
    : BpeTokenizerBase(data, /*match_special_text=*/true, source), types_(data.token_types) {
  for (size_t id = 0; id < pieces_.size(); ++id) token_ids_.try_emplace(pieces_[id], static_cast<int>(id));

  // Every byte needs a token, or some text could not be encoded at all.
  const auto& code_points = byte_code_points();
  for (int byte = 0; byte < 256; ++byte) {
    const auto found = token_ids_.find(utf8_encode(code_points[byte]));
    byte_tokens_[byte] = found != token_ids_.end() ? found->second : unk_id_;
    if (byte_tokens_[byte] < 0) fail("{}: the vocabulary has no token for byte 0x{:02X} and no unknown token", source, byte);
  }

  // Merges are "left right": the vocabulary's alphabet spells a space as "Ġ", so the one raw space is the
  // separator.
  for (size_t rank = 0; rank < data.merges.size(); ++rank) {
    const std::string& merge = data.merges[rank];
    const size_t space = merge.find(' ');
    if (space == std::string::npos || merge.find(' ', space + 1) != std::string::npos) {
      fail("{}: merge {} '{}' is not two tokens separated by one space", source, rank, merge);
    }
    const auto left = token_ids_.find(std::string_view(merge).substr(0, space));
    const auto right = token_ids_.find(std::string_view(merge).substr(space + 1));
    const auto merged = token_ids_.find(merge.substr(0, space) + merge.substr(space + 1));
    if (left == token_ids_.end() || right == token_ids_.end() || merged == token_ids_.end()) {
      fail("{}: merge {} '{}' names a token that is not in the vocabulary", source, rank, merge);
    }
    // try_emplace keeps the earlier (higher-priority) rank of a duplicated merge.
    merges_.try_emplace(pair_key(left->second, right->second), Merge{static_cast<int>(rank), merged->second});
  }

  // What each token decodes to: normal tokens map code points back to bytes; control and user-defined
  // tokens are stored as plain text, not in the byte alphabet.
  std::vector<int> code_point_bytes(256 + 256, -1);  // the table's code points are all below 512
  for (int byte = 0; byte < 256; ++byte) code_point_bytes[code_points[byte]] = byte;
  decoded_.resize(pieces_.size());
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const std::string& piece = pieces_[id];
    const int32_t type = types_.empty() ? kTokenNormal : types_[id];
    if (type == kTokenControl || type == kTokenUserDefined) {
      decoded_[id] = piece;
      continue;
    }
    for (size_t at = 0; at < piece.size();) {
      const auto [code_point, length] = next_code_point(piece, at);
      if (code_point < code_point_bytes.size() && code_point_bytes[code_point] >= 0) {
        decoded_[id] += static_cast<char>(code_point_bytes[code_point]);
      } else {
        decoded_[id] += piece.substr(at, length);  // not in the byte alphabet: keep the text as written
      }
      at += length;
    }
  }
  choose_pre_tokenizer(data.pre, source);
}

void ByteLevelBpe::choose_pre_tokenizer(const std::string& pre, const std::string& source) {
  if (pre == "smollm") {
    pre_tokenizer_.emplace_back(kSingleDigitPattern, source);
    pre_tokenizer_.emplace_back(kGpt2Pattern, source);
  } else if (pre == "llama-bpe" || pre == "llama3") {
    pre_tokenizer_.emplace_back(kLlama3Pattern, source);
    ignore_merges_ = true;  // HF's Llama-3 tokenizer.json sets "ignore_merges": true
  } else {
    // "gpt2", "default", "" and any name we do not know: GPT-2's pattern. An unknown name is usually a
    // GPT-2 variant; its ids may differ from the reference on digits or newlines, never on plain words.
    pre_tokenizer_.emplace_back(kGpt2Pattern, source);
  }
}

// ==== Encoding =======================================================================================

std::vector<int> ByteLevelBpe::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int> ids;
  const std::vector<TextFragment> fragments = begin_encode(text, add_bos, parse_special, ids);  // step 1
  // One match buffer per call (not per tokenizer) keeps encode() safe to call from several threads.
  MatchData match_data(pcre2_match_data_create(1, nullptr));
  if (!match_data) fail("out of memory allocating PCRE2 match data");
  std::vector<std::string_view> chunks, next_chunks;
  for (const TextFragment& fragment : fragments) {
    if (fragment.special_id >= 0) {
      ids.push_back(fragment.special_id);
      continue;
    }
    // Step 2: each regex splits every chunk the previous one produced.
    chunks.assign(1, fragment.text);
    for (const SplitRegex& regex : pre_tokenizer_) {
      next_chunks.clear();
      for (std::string_view chunk : chunks) regex.split(chunk, match_data.get(), next_chunks);
      chunks.swap(next_chunks);
    }
    for (std::string_view chunk : chunks) encode_chunk(chunk, ids);
  }
  return ids;
}

void ByteLevelBpe::encode_chunk(std::string_view chunk, std::vector<int>& out) const {
  if (chunk.empty()) return;
  if (ignore_merges_) {
    std::string spelled;
    for (char c : chunk) spelled += utf8_encode(byte_code_points()[static_cast<unsigned char>(c)]);
    if (const auto found = token_ids_.find(spelled); found != token_ids_.end()) {
      out.push_back(found->second);
      return;
    }
  }

  // Step 3: one symbol per byte. A merged symbol keeps the left index; the right one dies (id -1).
  struct Symbol {
    int id;    // token id, -1 once merged into its left neighbour
    int prev;  // previous live symbol, -1 at the start
    int next;  // next live symbol, -1 at the end
  };
  std::vector<Symbol> symbols(chunk.size());
  for (size_t i = 0; i < chunk.size(); ++i) {
    symbols[i] = {byte_tokens_[static_cast<unsigned char>(chunk[i])], static_cast<int>(i) - 1,
                  i + 1 < chunk.size() ? static_cast<int>(i) + 1 : -1};
  }

  // Step 4: lowest rank first, then leftmost.
  struct Candidate {
    int rank;
    int left, right;           // symbol indices
    int left_id, right_id;     // the ids the pair had when pushed, to spot stale candidates
    int merged_id;
  };
  auto lower_priority = [](const Candidate& a, const Candidate& b) {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower_priority)> candidates(lower_priority);
  auto consider_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const auto found = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (found == merges_.end()) return;
    candidates.push({found->second.rank, left, right, symbols[left].id, symbols[right].id, found->second.merged_id});
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider_pair(static_cast<int>(i), static_cast<int>(i) + 1);

  while (!candidates.empty()) {
    const Candidate best = candidates.top();
    candidates.pop();
    Symbol& left = symbols[best.left];
    Symbol& right = symbols[best.right];
    // Stale if either side has since been merged into something else or they are no longer neighbours.
    if (left.id != best.left_id || right.id != best.right_id || left.next != best.right) continue;
    left.id = best.merged_id;
    right.id = -1;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.left;
    consider_pair(left.prev, best.left);
    consider_pair(best.left, left.next);
  }

  // Step 5.
  for (int index = 0; index >= 0; index = symbols[index].next) out.push_back(symbols[index].id);
}

// ==== Decoding =======================================================================================

std::string ByteLevelBpe::decode_token(int prev_token, int token, bool render_special) const {
  check_token(token);
  if (!types_.empty() && types_[token] == kTokenControl && !render_special) return {};
  return decoded_[token];
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_bpe(const TokenizerData& data, const std::string& source) {
  return std::make_unique<ByteLevelBpe>(data, source);
}

}  // namespace infer::detail
