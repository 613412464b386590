// tokenizer_fuzz.h: the one check both tokenizer targets run on a fuzz input.
//
// Input: byte 0 holds flags, the rest is text (valid UTF-8 or not).
//   bit 0: add_bos            bit 1: parse_special        bit 2: decode mode (below)
// Encode mode: every id lies in the vocabulary, and decoding the ids gives the text back (with
// control tokens rendered when they were parsed from the text). `round_trips(text)` says whether
// the tokenizer promises that for this text.
// Decode mode: the bytes are little-endian u16 ids (taken modulo the vocabulary); decoding any
// sequence of valid ids must succeed.
#pragma once

#include "fuzz_util.h"

#include <functional>

namespace infer::fuzz {

inline void check_tokenizer(const Tokenizer& tokenizer, const uint8_t* data, size_t size,
                            const std::function<bool(std::string_view)>& round_trips) {
  if (size == 0) return;
  const bool add_bos = data[0] & 1, parse_special = data[0] & 2, decode_mode = data[0] & 4;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const int vocab = tokenizer.vocab_size();
  if (decode_mode) {
    std::vector<int> ids;
    for (size_t i = 0; i + 1 < text.size(); i += 2)
      ids.push_back(int((uint8_t(text[i]) | (uint8_t(text[i + 1]) << 8)) % vocab));
    (void)tokenizer.decode(ids, /*render_special=*/parse_special);
    return;
  }
  const std::vector<int> ids = tokenizer.encode(text, add_bos, parse_special);
  for (int id : ids) FUZZ_REQUIRE(id >= 0 && id < vocab, "id %d outside [0, %d)", id, vocab);
  if (add_bos && tokenizer.bos_id() >= 0)
    FUZZ_REQUIRE(!ids.empty() && ids[0] == tokenizer.bos_id(), "add_bos but the first id is not BOS");
  if (!round_trips(text)) return;
  // Drop the BOS the encoder added (decode renders it only when asked for control tokens).
  std::vector<int> body = ids;
  if (add_bos && tokenizer.bos_id() >= 0 && !body.empty()) body.erase(body.begin());
  const std::string decoded = tokenizer.decode(body, /*render_special=*/parse_special);
  FUZZ_REQUIRE(decoded == text, "round trip changed %zu bytes of text into %zu bytes", text.size(), decoded.size());
}

}  // namespace infer::fuzz
