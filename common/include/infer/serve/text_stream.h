// text_stream.h: turning a stream of tokens into a stream of text a client can be sent chunk by chunk.
//
//   IncrementalDetokenizer: token ids in, text out, never half a UTF-8 character (a byte-level or
//     byte-fallback tokenizer splits one character over several tokens; JSON and browsers need whole ones).
//   StopMatcher: the OpenAI `stop` strings, matched in the text (so across token boundaries) and never sent:
//     text that could be the start of a stop string is held back until the next chunk decides.
#pragma once

#include "infer/tokenizer/tokenizer.h"

#include <string>
#include <string_view>
#include <vector>

namespace infer::serve {

// Length of the longest prefix of `bytes` that does not end inside an unfinished UTF-8 sequence: a lead
// byte followed by fewer continuation bytes than it announces is held back (at most 3 bytes).
size_t utf8_complete_prefix(std::string_view bytes);
// `bytes` with every invalid UTF-8 sequence (stray continuation, overlong form, surrogate, > U+10FFFF)
// replaced by U+FFFD, so the text can go into JSON.
std::string sanitize_utf8(std::string_view bytes);

class IncrementalDetokenizer {
 public:
  // `previous_token`: the token before the first one pushed (the prompt's last token; -1: none), which
  // decides e.g. whether SentencePiece keeps the first piece's leading space.
  IncrementalDetokenizer(const Tokenizer& tokenizer, int previous_token);
  // The text that became complete with `token` (may be empty while a character is unfinished).
  std::string push(int token);
  // At the end of generation: an unfinished character left over becomes U+FFFD.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  int previous_token_;
  std::string pending_;  // bytes of an unfinished character
};

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Appends generated text; returns the text that is now safe to send. When a stop string appears, the
  // text before it is returned, stopped() becomes true and everything after is dropped. The stop string
  // completed first wins, as if the text had been checked one byte at a time.
  std::string push(std::string_view text);
  // At the end of generation (no stop string can complete any more): the held-back text.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;  // text not yet sent: a suffix that is a prefix of some stop string
  bool stopped_ = false;
};

}  // namespace infer::serve
