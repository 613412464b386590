// text_stream.cpp: incremental UTF-8-safe detokenization and stop-string matching (text_stream.h).
#include "infer/serve/text_stream.h"

#include <algorithm>
#include <cstdint>

namespace infer::serve {

// ==== UTF-8 ===============================================================================================

namespace {

// The length a lead byte announces (1..4), or 0 for a byte that cannot start a character.
size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;  // C0/C1 only start overlong forms
  if ((lead & 0xF0) == 0xE0) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;  // F5.. would be above U+10FFFF
  return 0;
}

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// Whether bytes[0..length) is a valid character (the lead byte already gave `length`).
bool valid_sequence(std::string_view bytes, size_t length) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  for (size_t i = 1; i < length; ++i) {
    if (!is_continuation(byte(i))) return false;
  }
  if (length == 3) {
    if (byte(0) == 0xE0 && byte(1) < 0xA0) return false;  // overlong
    if (byte(0) == 0xED && byte(1) >= 0xA0) return false;  // UTF-16 surrogates
  }
  if (length == 4) {
    if (byte(0) == 0xF0 && byte(1) < 0x90) return false;  // overlong
    if (byte(0) == 0xF4 && byte(1) >= 0x90) return false;  // above U+10FFFF
  }
  return true;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

size_t utf8_complete_prefix(std::string_view bytes) {
  // Look back over at most 3 bytes for the start of the last character.
  const size_t n = bytes.size();
  for (size_t back = 1; back <= std::min<size_t>(n, 4); ++back) {
    const auto byte = static_cast<unsigned char>(bytes[n - back]);
    if (is_continuation(byte)) continue;
    const size_t length = sequence_length(byte);
    // Unfinished only if the lead announces more bytes than are there and those present are continuations.
    if (length > back) return n - back;
    return n;
  }
  return n;  // only continuation bytes at the end: invalid, not unfinished
}

std::string sanitize_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t at = 0;
  while (at < bytes.size()) {
    const size_t length = sequence_length(static_cast<unsigned char>(bytes[at]));
    if (length != 0 && at + length <= bytes.size() && valid_sequence(bytes.substr(at), length)) {
      out.append(bytes.substr(at, length));
      at += length;
    } else {
      out.append(kReplacement);
      at += 1;
    }
  }
  return out;
}

// ==== IncrementalDetokenizer ==============================================================================

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, int previous_token)
    : tokenizer_(tokenizer), previous_token_(previous_token) {}

std::string IncrementalDetokenizer::push(int token) {
  pending_ += tokenizer_.decode_token(previous_token_, token);
  previous_token_ = token;
  const size_t complete = utf8_complete_prefix(pending_);
  std::string text = sanitize_utf8(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return text;
}

std::string IncrementalDetokenizer::flush() {
  std::string text = sanitize_utf8(pending_);
  pending_.clear();
  return text;
}

// ==== StopMatcher =========================================================================================

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& stop) { return stop.empty(); });
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return "";
  held_ += text;
  // Generation stops at the first stop string to be completed (the one whose first occurrence ends
  // earliest; of two ending together, the longer), and the text ends where that occurrence starts. This
  // is what a token-by-token check would find, so the answer does not depend on how the text was chunked.
  size_t best_end = std::string::npos, best_start = std::string::npos;
  for (const std::string& stop : stops_) {
    const size_t start = held_.find(stop);
    if (start == std::string::npos) continue;
    const size_t end = start + stop.size();
    if (end < best_end || (end == best_end && start < best_start)) best_end = end, best_start = start;
  }
  if (best_start != std::string::npos) {
    std::string out = held_.substr(0, best_start);
    held_.clear();
    stopped_ = true;
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string: the next text may complete it.
  // Any occurrence that starts earlier would already have been found above, so what is sent is final.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    for (size_t length = std::min(stop.size() - 1, held_.size()); length > hold; --length) {
      if (held_.compare(held_.size() - length, length, stop, 0, length) == 0) {
        hold = length;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopMatcher::flush() {
  if (stopped_) return "";
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace infer::serve
