// sentencepiece_bpe.cpp: SentencePiece-style BPE with byte fallback (Llama-2, TinyLlama, llama2.c models).
//
// Encoding follows SentencePiece's BPE model (bpe_model.cc) for these vocabularies:
//   1. Normalize: prepend the "dummy prefix" space to non-empty text, and spell every space with the
//      vocabulary's space marker (U+2581 "▁" in GGUF, a plain " " in llama2.c's tokenizer.bin).
//   2. Split into symbols, one per UTF-8 character.
//   3. Repeatedly merge the adjacent pair whose concatenation is a vocabulary piece with the highest
//      score (the leftmost pair on ties). Scores are the pieces' log-probabilities from training, so
//      this greedily builds the likeliest pieces first.
//   4. Each final symbol becomes its piece id; a symbol with no piece (a rare CJK character, an emoji)
//      becomes one <0xNN> token per UTF-8 byte ("byte fallback"), so no text is ever lost.
//
// Symbols are (offset, length) slices of the normalized text in a doubly linked list, and candidate
// pairs wait in a max-heap: each merge costs O(log n) and no strings are copied, so encoding is
// O(n log n) in the text length (a naive "scan all pairs, merge the best" loop is O(n^2)).
#include "infer/core/error.h"
#include "tokenizer_internal.h"

#include <array>
#include <queue>
#include <unordered_map>

namespace infer::detail {
namespace {

// "<0x41>" -> 0x41; -1 if the piece is not of that form.
int parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    value *= 16;
    if (c >= '0' && c <= '9') {
      value += c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value += c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value += c - 'a' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

class SentencePieceBpe final : public BpeTokenizerBase {
 public:
  SentencePieceBpe(const TokenizerData& data, std::string_view space_marker, bool match_special_text,
                   const std::string& source);

  std::vector<int> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string decode_token(int prev_token, int token, bool render_special) const override;

 private:
  // Steps 2-4 for one normalized stretch of text; appends ids to `out`.
  void encode_normalized(std::string_view text, std::vector<int>& out) const;

  // pieces_ (BpeTokenizerBase) are as stored, with the space marker.
  std::vector<float> scores_;
  std::vector<int32_t> types_;       // kToken* per id
  std::vector<int> byte_values_;     // per id: the byte of a <0xNN> token, else -1
  std::array<int, 256> byte_tokens_; // per byte: the id of its <0xNN> token, else -1
  // Pieces that merging may produce: normal, user-defined and unused ones, as in SentencePiece
  // (control, unknown and byte pieces are never spelled by text).
  std::unordered_map<std::string, int, StringHash, std::equal_to<>> mergeable_;
  std::string space_marker_;
  bool add_dummy_prefix_;
};

// ==== Construction ===================================================================================

SentencePieceBpe::SentencePieceBpe(const TokenizerData& data, std::string_view space_marker,
                                   bool match_special_text, const std::string& source)
    : BpeTokenizerBase(data, match_special_text, source),
      scores_(data.scores),
      space_marker_(space_marker),
      add_dummy_prefix_(data.add_space_prefix) {
  if (scores_.size() != pieces_.size()) {
    fail("{}: SentencePiece BPE needs one score per token ({} scores for {} tokens)", source, scores_.size(),
         pieces_.size());
  }
  // Without stored types, infer them the way llama2.c's files are laid out: special ids, <0xNN> pieces,
  // everything else normal.
  types_ = data.token_types;
  if (types_.empty()) {
    types_.assign(pieces_.size(), kTokenNormal);
    for (size_t id = 0; id < pieces_.size(); ++id) {
      if (parse_byte_piece(pieces_[id]) >= 0) types_[id] = kTokenByte;
    }
    if (unk_id_ >= 0) types_[unk_id_] = kTokenUnknown;
    if (bos_id_ >= 0) types_[bos_id_] = kTokenControl;
    if (eos_id_ >= 0) types_[eos_id_] = kTokenControl;
  }

  byte_values_.assign(pieces_.size(), -1);
  byte_tokens_.fill(-1);
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const int32_t type = types_[id];
    if (type == kTokenByte) {
      const int byte = parse_byte_piece(pieces_[id]);
      if (byte < 0) fail("{}: byte token {} is '{}', not of the form <0xNN>", source, id, pieces_[id]);
      byte_values_[id] = byte;
      byte_tokens_[byte] = static_cast<int>(id);
    } else if (type == kTokenNormal || type == kTokenUserDefined || type == kTokenUnused) {
      // try_emplace keeps the first id of a duplicated piece, as SentencePiece's lookup would.
      mergeable_.try_emplace(pieces_[id], static_cast<int>(id));
    }
  }
}

// ==== Encoding =======================================================================================

std::vector<int> SentencePieceBpe::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int> ids;
  const std::vector<TextFragment> fragments = begin_encode(text, add_bos, parse_special, ids);
  std::string normalized;
  for (size_t i = 0; i < fragments.size(); ++i) {
    if (fragments[i].special_id >= 0) {
      ids.push_back(fragments[i].special_id);
      continue;
    }
    // Step 1. The dummy prefix makes a word at the start of the text look like the same word in the
    // middle of a sentence (" time" and "time" get the same piece "▁time"). SentencePiece adds it once,
    // at the start of the text, so only a leading raw fragment gets it.
    normalized.clear();
    if (add_dummy_prefix_ && i == 0) normalized += space_marker_;
    for (char c : fragments[i].text) {
      if (c == ' ') {
        normalized += space_marker_;
      } else {
        normalized += c;
      }
    }
    encode_normalized(normalized, ids);
  }
  return ids;
}

void SentencePieceBpe::encode_normalized(std::string_view text, std::vector<int>& out) const {
  if (text.empty()) return;

  // Step 2. One symbol per UTF-8 character, linked to its neighbours. A merged symbol keeps the index of
  // its left part; the right part is emptied (length 0) and unlinked.
  struct Symbol {
    int offset;  // into text
    int length;  // bytes; 0 once merged into its left neighbour
    int prev;    // index of the previous live symbol, -1 at the start
    int next;    // index of the next live symbol, -1 at the end
  };
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t offset = 0; offset < text.size();) {
    const size_t length = utf8_char_length(text.substr(offset));
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({static_cast<int>(offset), static_cast<int>(length), index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
    offset += length;
  }

  // Step 3. A candidate is an adjacent pair whose concatenation is a piece. The heap orders by score,
  // then by the left symbol's index (its position in the text) so that ties go to the leftmost pair.
  struct Candidate {
    float score;
    int left;
    int right;
    int merged_length;  // to recognise a candidate made stale by an earlier merge
  };
  auto lower_priority = [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower_priority)> candidates(lower_priority);
  auto consider_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int merged_length = symbols[left].length + symbols[right].length;
    const auto found = mergeable_.find(text.substr(symbols[left].offset, merged_length));
    if (found == mergeable_.end()) return;
    candidates.push({scores_[found->second], left, right, merged_length});
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider_pair(static_cast<int>(i), static_cast<int>(i) + 1);

  while (!candidates.empty()) {
    const Candidate best = candidates.top();
    candidates.pop();
    Symbol& left = symbols[best.left];
    Symbol& right = symbols[best.right];
    // Stale if either side was merged away or has grown since the candidate was pushed. (If both still
    // have the lengths they had, they are still neighbours: only merges change adjacency.)
    if (left.length == 0 || right.length == 0 || left.length + right.length != best.merged_length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.left;
    // The merged symbol forms new pairs with both neighbours.
    consider_pair(left.prev, best.left);
    consider_pair(best.left, left.next);
  }

  // Step 4. Pieces to ids, with byte fallback for symbols the vocabulary lacks.
  for (int index = 0; index >= 0; index = symbols[index].next) {
    const std::string_view symbol = text.substr(symbols[index].offset, symbols[index].length);
    const auto found = mergeable_.find(symbol);
    if (found != mergeable_.end()) {
      out.push_back(found->second);
      continue;
    }
    for (char c : symbol) {
      const int byte_token = byte_tokens_[static_cast<unsigned char>(c)];
      if (byte_token >= 0) {
        out.push_back(byte_token);
      } else if (unk_id_ >= 0) {
        out.push_back(unk_id_);  // a vocabulary without byte fallback
      }
    }
  }
}

// ==== Decoding =======================================================================================

std::string SentencePieceBpe::decode_token(int prev_token, int token, bool render_special) const {
  check_token(token);
  const int32_t type = types_[token];
  if (type == kTokenControl || type == kTokenUnknown) return render_special ? pieces_[token] : std::string();
  if (type == kTokenByte) return std::string(1, static_cast<char>(byte_values_[token]));

  std::string text;
  const std::string& piece = pieces_[token];
  for (size_t at = 0; at < piece.size();) {
    if (piece.compare(at, space_marker_.size(), space_marker_) == 0) {
      text += ' ';
      at += space_marker_.size();
    } else {
      text += piece[at++];
    }
  }
  // Undo the dummy prefix: the first piece of the text (right after BOS, or at the very start of a
  // sequence) carries the space that encode() added.
  const bool starts_text = prev_token < 0 || prev_token == bos_id_;
  if (add_dummy_prefix_ && starts_text && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return text;
}

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_bpe(const TokenizerData& data, std::string_view space_marker,
                                                  bool match_special_text, const std::string& source) {
  return std::make_unique<SentencePieceBpe>(data, space_marker, match_special_text, source);
}

}  // namespace infer::detail
