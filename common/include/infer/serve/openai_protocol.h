// openai_protocol.h: the OpenAI HTTP API as pure functions (no sockets): a request body in, a validated
// GenerationRequest or an ApiError out; the response and stream-chunk JSON built from what was generated.
//
//   POST /v1/completions       {"model", "prompt": "text" | [token ids] | ["text"], ...}
//   POST /v1/chat/completions  {"model", "messages": [{"role", "content"}], ...}
//
// Every field is checked for type and range before anything is queued; an unknown field is refused (as the
// OpenAI API does), so a misspelt parameter is never silently ignored. What needs the model (the prompt's
// token count against the context, token ids against the vocabulary, the chat template) is checked by the
// server, which knows the model. Errors use OpenAI's body: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include "infer/engine/sampler.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace infer::serve {

// An HTTP error with OpenAI's error body. `param` names the offending field (empty: none).
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = "", std::string code = "");
  int status;
  std::string type;   // "invalid_request_error", "authentication_error", "not_found_error", ...
  std::string param;
  std::string code;
};
// {"error": {"message": ..., "type": ..., "param": ... | null, "code": ... | null}}
nlohmann::json error_body(const ApiError& error);
// The body as text; invalid UTF-8 in a message (echoing a bad field) is replaced, never thrown on.
std::string dump_json(const nlohmann::json& value);

enum class Endpoint { completions, chat_completions };

struct ChatMessage {
  std::string role;     // system, user or assistant
  std::string content;
};

struct GenerationRequest {
  Endpoint endpoint = Endpoint::completions;
  std::string model;
  // completions: the prompt as text, or as token ids (prompt_is_tokens); chat: the messages.
  std::string prompt_text;
  std::vector<int> prompt_tokens;
  bool prompt_is_tokens = false;
  std::vector<ChatMessage> messages;
  std::optional<int> max_tokens;       // max_completion_tokens wins over max_tokens; none: the server's default
  float temperature = 1.0f;            // OpenAI's default
  float top_p = 1.0f;
  std::optional<int64_t> seed;         // none: the server picks one
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::string> stop;       // up to kMaxStopStrings non-empty strings
  bool stream = false;
  bool include_usage = false;          // stream_options.include_usage
  bool logprobs = false;               // completions: logprobs >= 0 given; chat: logprobs: true
  int top_logprobs = 0;
  bool ignore_eos = false;             // extension (as in vLLM): keep generating past end-of-text (benchmarks)
};

struct RequestLimits {
  size_t max_prompt_chars = 1 << 20;   // text of one prompt or of all messages together
  size_t max_prompt_tokens = 1 << 16;  // length of a token-id prompt
  size_t max_messages = 256;
  int vocab_size = 0;                  // token-id prompts must be in [0, vocab_size) (0: not checked here)
};
inline constexpr size_t kMaxStopStrings = 4;
inline constexpr size_t kMaxStopLength = 256;

// Parses and validates a request body; throws ApiError (status 400) naming the field and the problem.
GenerationRequest parse_generation_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits);

// The engine's sampler settings for a request (top_k, min_p and repetition penalty stay off: the OpenAI API
// has no such fields). `seed` is the request's seed or the server's choice.
SamplerConfig sampler_config(const GenerationRequest& request, uint64_t seed);

// ---- responses -----------------------------------------------------------------------------------------
struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};
nlohmann::json usage_json(const Usage& usage);

// What every response and chunk of one request shares.
struct ResponseHeader {
  Endpoint endpoint = Endpoint::completions;
  std::string id;      // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0; // unix seconds
  std::string model;
};

// ---- logprobs ----------------------------------------------------------------------------------------------
// One generated token as the client sees it: its bytes (decode_token of the id; may be part of a UTF-8
// character), its log-probability and the most likely alternatives (bytes, logprob), most likely first.
struct LogprobToken {
  std::string bytes;
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;
};
// Chat: {"content": [{"token", "logprob", "bytes": [ints], "top_logprobs": [{"token", "logprob", "bytes"}]}]}
// ("token" is the bytes as valid UTF-8, an unfinished character replaced by U+FFFD; "bytes" the exact bytes).
nlohmann::json chat_logprobs_json(const std::vector<LogprobToken>& tokens);
// Legacy completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}, the
// offsets in bytes from the start of the generated text, `first_offset` being the first token's (streamed
// chunks continue where the previous chunk ended).
nlohmann::json completion_logprobs_json(const std::vector<LogprobToken>& tokens, size_t first_offset);

// The whole (non-streamed) response. finish_reason: "stop" or "length". `logprobs`: the choice's logprobs
// (null when the request did not ask; chat_logprobs_json / completion_logprobs_json otherwise).
nlohmann::json completion_response(const ResponseHeader& header, const std::string& text,
                                   const std::string& finish_reason, const Usage& usage,
                                   const nlohmann::json& logprobs = nullptr);
// One streamed chunk carrying `text` (may be empty) and, on the last chunk, the finish reason. For chat,
// `first` adds the assistant role to the delta (the first chunk of a reply). `logprobs`: those of the tokens
// that arrived since the previous chunk (null when not asked for).
nlohmann::json stream_chunk(const ResponseHeader& header, const std::string& text,
                            const std::optional<std::string>& finish_reason, bool first,
                            const nlohmann::json& logprobs = nullptr);
// The usage chunk sent before [DONE] when stream_options.include_usage is set: empty choices, usage filled.
nlohmann::json usage_chunk(const ResponseHeader& header, const Usage& usage);

// ---- Server-Sent Events ---------------------------------------------------------------------------------
// "data: <json>\n\n": one event per chunk (the JSON is one line, so one data field).
std::string sse_event(const nlohmann::json& chunk);
// The stream's terminator, as OpenAI sends it.
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace infer::serve
