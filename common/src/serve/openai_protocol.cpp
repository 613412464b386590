// openai_protocol.cpp: request validation and response JSON of the OpenAI API (openai_protocol.h).
#include "infer/serve/openai_protocol.h"

#include "infer/serve/text_stream.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

namespace infer::serve {

using nlohmann::json;

// ==== errors ==============================================================================================

namespace {

std::string error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

ApiError::ApiError(int status_, std::string message, std::string param_, std::string code_)
    : std::runtime_error(std::move(message)),
      status(status_),
      type(error_type(status_)),
      param(std::move(param_)),
      code(std::move(code_)) {}

json error_body(const ApiError& error) {
  json body = {{"message", error.what()},
               {"type", error.type},
               {"param", error.param.empty() ? json(nullptr) : json(error.param)},
               {"code", error.code.empty() ? json(nullptr) : json(error.code)}};
  return json{{"error", body}};
}

std::string dump_json(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// ==== request validation ==================================================================================

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "") {
  throw ApiError(400, message, param, code);
}

// A JSON value's type in the words of the API reference, for error messages.
std::string type_name(const json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "number";
  if (value.is_string()) return "string";
  if (value.is_boolean()) return "boolean";
  if (value.is_array()) return "array";
  if (value.is_object()) return "object";
  return "null";
}

bool get_bool(const json& value, const std::string& name) {
  if (!value.is_boolean()) bad(name, fmt::format("'{}' must be a boolean, got {}", name, type_name(value)));
  return value.get<bool>();
}

// A finite number in [lo, hi] (integers accepted).
float get_number(const json& value, const std::string& name, double lo, double hi) {
  if (!value.is_number()) bad(name, fmt::format("'{}' must be a number, got {}", name, type_name(value)));
  const double x = value.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, value.dump()));
  }
  return static_cast<float>(x);
}

// An integer in [lo, hi]; 5.0 or "5" are refused (the API says integer).
int64_t get_integer(const json& value, const std::string& name, int64_t lo, int64_t hi) {
  if (!value.is_number_integer()) bad(name, fmt::format("'{}' must be an integer, got {}", name, type_name(value)));
  if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(INT64_MAX)) {
    bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, value.dump()));
  }
  const int64_t x = value.get<int64_t>();
  if (x < lo || x > hi) bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

std::string get_string(const json& value, const std::string& name) {
  if (!value.is_string()) bad(name, fmt::format("'{}' must be a string, got {}", name, type_name(value)));
  return value.get<std::string>();
}

void parse_prompt(const json& value, const RequestLimits& limits, GenerationRequest& request) {
  if (value.is_string()) {
    request.prompt_text = value.get<std::string>();
  } else if (value.is_array() && !value.empty() && value.size() == 1 && value[0].is_string()) {
    request.prompt_text = value[0].get<std::string>();  // a batch of one prompt
  } else if (value.is_array() && !value.empty() && value[0].is_number()) {
    if (value.size() > limits.max_prompt_tokens) {
      bad("prompt", fmt::format("'prompt' has {} token ids, more than the limit of {}", value.size(),
                                limits.max_prompt_tokens), "context_length_exceeded");
    }
    const int64_t max_id = limits.vocab_size > 0 ? limits.vocab_size - 1 : INT32_MAX;
    for (size_t i = 0; i < value.size(); ++i) {
      request.prompt_tokens.push_back(int(get_integer(value[i], fmt::format("prompt[{}]", i), 0, max_id)));
    }
    request.prompt_is_tokens = true;
  } else if (value.is_array() && value.size() > 1) {
    bad("prompt", fmt::format("'prompt' holds {} prompts; this server takes one per request", value.size()));
  } else {
    bad("prompt", fmt::format("'prompt' must be a string or an array of token ids, got {}",
                              value.is_array() ? "an empty array" : type_name(value)));
  }
  if (request.prompt_text.size() > limits.max_prompt_chars) {
    bad("prompt", fmt::format("'prompt' is {} bytes, more than the limit of {}", request.prompt_text.size(),
                              limits.max_prompt_chars), "context_length_exceeded");
  }
}

// "content" is a string, or an array of {"type": "text", "text": ...} parts (joined), or null for an
// assistant turn.
std::string message_content(const json& value, const std::string& name) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "";
  if (!value.is_array()) bad(name, fmt::format("'{}' must be a string or an array of text parts, got {}", name, type_name(value)));
  std::string text;
  for (size_t i = 0; i < value.size(); ++i) {
    const json& part = value[i];
    const std::string part_name = fmt::format("{}[{}]", name, i);
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") || !part["text"].is_string()) {
      bad(part_name, fmt::format("'{}' must be {{\"type\": \"text\", \"text\": ...}} (only text content is supported)", part_name));
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

void parse_messages(const json& value, const RequestLimits& limits, GenerationRequest& request) {
  if (!value.is_array() || value.empty()) bad("messages", "'messages' must be a non-empty array of messages");
  if (value.size() > limits.max_messages) {
    bad("messages", fmt::format("'messages' has {} messages, more than the limit of {}", value.size(), limits.max_messages));
  }
  size_t chars = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    const json& message = value[i];
    const std::string name = fmt::format("messages[{}]", i);
    if (!message.is_object()) bad(name, fmt::format("'{}' must be an object, got {}", name, type_name(message)));
    for (const auto& [key, field] : message.items()) {
      if (key != "role" && key != "content" && key != "name") {
        bad(name + "." + key, fmt::format("Unrecognized field '{}.{}'", name, key));
      }
    }
    if (!message.contains("role")) bad(name + ".role", fmt::format("'{}.role' is required", name));
    ChatMessage chat;
    chat.role = get_string(message["role"], name + ".role");
    if (chat.role == "developer") chat.role = "system";  // the newer name of the system role
    if (chat.role != "system" && chat.role != "user" && chat.role != "assistant") {
      bad(name + ".role", fmt::format("'{}.role' must be 'system', 'user' or 'assistant', got '{}'", name, chat.role));
    }
    if (!message.contains("content")) bad(name + ".content", fmt::format("'{}.content' is required", name));
    chat.content = message_content(message["content"], name + ".content");
    chars += chat.content.size();
    request.messages.push_back(std::move(chat));
  }
  if (chars > limits.max_prompt_chars) {
    bad("messages", fmt::format("'messages' hold {} bytes of text, more than the limit of {}", chars,
                                limits.max_prompt_chars), "context_length_exceeded");
  }
}

void parse_stop(const json& value, GenerationRequest& request) {
  if (value.is_null()) return;
  std::vector<std::string> stops;
  if (value.is_string()) {
    stops.push_back(value.get<std::string>());
  } else if (value.is_array()) {
    if (value.size() > kMaxStopStrings) {
      bad("stop", fmt::format("'stop' has {} strings, at most {} are allowed", value.size(), kMaxStopStrings));
    }
    for (size_t i = 0; i < value.size(); ++i) stops.push_back(get_string(value[i], fmt::format("stop[{}]", i)));
  } else {
    bad("stop", fmt::format("'stop' must be a string or an array of strings, got {}", type_name(value)));
  }
  for (const std::string& stop : stops) {
    if (stop.empty()) bad("stop", "'stop' strings must not be empty");
    if (stop.size() > kMaxStopLength) {
      bad("stop", fmt::format("a 'stop' string is {} bytes, more than the limit of {}", stop.size(), kMaxStopLength));
    }
  }
  request.stop = std::move(stops);
}

}  // namespace

GenerationRequest parse_generation_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits) {
  json root;
  try {
    root = json::parse(body);
  } catch (const json::exception& error) {
    // nlohmann rejects NaN/Infinity literals, trailing garbage, invalid UTF-8 in strings and numbers
    // beyond a double (1e999: out_of_range) here.
    bad("", fmt::format("The request body is not valid JSON: {}", error.what()), "invalid_json");
  }
  if (!root.is_object()) bad("", fmt::format("The request body must be a JSON object, got {}", type_name(root)), "invalid_json");

  const bool chat = endpoint == Endpoint::chat_completions;
  GenerationRequest request;
  request.endpoint = endpoint;
  static const std::set<std::string> kCommonFields = {
      "model", "max_tokens", "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "stop",
      "stream", "stream_options", "n", "logprobs", "top_logprobs", "user", "logit_bias", "ignore_eos"};
  static const std::set<std::string> kCompletionFields = {"prompt", "echo", "best_of", "suffix"};
  static const std::set<std::string> kChatFields = {"messages", "max_completion_tokens", "response_format", "tools",
                                                    "tool_choice", "parallel_tool_calls"};
  for (const auto& [key, value] : root.items()) {
    if (!kCommonFields.count(key) && !(chat ? kChatFields : kCompletionFields).count(key)) {
      bad(key, fmt::format("Unrecognized request argument supplied: {}", key), "unknown_parameter");
    }
  }
  // A field set to null means "the default", as in the OpenAI API.
  auto field = [&](const char* name) -> const json* {
    auto it = root.find(name);
    return it == root.end() || it->is_null() ? nullptr : &*it;
  };

  if (const json* model = field("model")) request.model = get_string(*model, "model");
  else bad("model", "'model' is required");

  if (chat) {
    if (const json* messages = field("messages")) parse_messages(*messages, limits, request);
    else bad("messages", "'messages' is required");
  } else {
    if (const json* prompt = field("prompt")) parse_prompt(*prompt, limits, request);
    else bad("prompt", "'prompt' is required");
  }

  constexpr int64_t kMaxTokensCap = 1 << 20;  // far above any context; the server checks the real limit
  if (const json* v = field("max_tokens")) request.max_tokens = int(get_integer(*v, "max_tokens", 1, kMaxTokensCap));
  if (const json* v = field("max_completion_tokens")) {
    request.max_tokens = int(get_integer(*v, "max_completion_tokens", 1, kMaxTokensCap));
  }
  if (const json* v = field("temperature")) request.temperature = get_number(*v, "temperature", 0.0, 2.0);
  if (const json* v = field("top_p")) {
    request.top_p = get_number(*v, "top_p", 0.0, 1.0);
    if (request.top_p <= 0.0f) bad("top_p", "'top_p' must be greater than 0");
  }
  if (const json* v = field("seed")) request.seed = get_integer(*v, "seed", INT64_MIN, INT64_MAX);
  if (const json* v = field("presence_penalty")) request.presence_penalty = get_number(*v, "presence_penalty", -2.0, 2.0);
  if (const json* v = field("frequency_penalty")) request.frequency_penalty = get_number(*v, "frequency_penalty", -2.0, 2.0);
  if (const json* v = field("stop")) parse_stop(*v, request);
  if (const json* v = field("stream")) request.stream = get_bool(*v, "stream");
  if (const json* v = field("stream_options")) {
    if (!v->is_object()) bad("stream_options", fmt::format("'stream_options' must be an object, got {}", type_name(*v)));
    if (!request.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    for (const auto& [key, option] : v->items()) {
      if (key != "include_usage") bad("stream_options." + key, fmt::format("Unrecognized field 'stream_options.{}'", key));
      if (!option.is_null()) request.include_usage = get_bool(option, "stream_options.include_usage");
    }
  }
  if (const json* v = field("n")) {
    const int64_t n = get_integer(*v, "n", INT64_MIN, INT64_MAX);
    if (n != 1) bad("n", fmt::format("'n' must be 1 (one choice per request), got {}", n));
  }
  if (chat) {
    if (const json* v = field("logprobs")) request.logprobs = get_bool(*v, "logprobs");
    if (const json* v = field("top_logprobs")) {
      request.top_logprobs = int(get_integer(*v, "top_logprobs", 0, 20));
      if (!request.logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
  } else {
    // The legacy completions API: logprobs is the number of alternatives, 0..5.
    if (const json* v = field("logprobs")) {
      request.top_logprobs = int(get_integer(*v, "logprobs", 0, 5));
      request.logprobs = true;
    }
    if (field("top_logprobs")) bad("top_logprobs", "'top_logprobs' belongs to /v1/chat/completions; use 'logprobs': N here");
    if (const json* v = field("echo"); v && get_bool(*v, "echo")) bad("echo", "'echo': true is not supported");
    if (const json* v = field("best_of"); v && get_integer(*v, "best_of", INT64_MIN, INT64_MAX) != 1) {
      bad("best_of", "'best_of' must be 1");
    }
    if (const json* v = field("suffix"); v && !(v->is_string() && v->get<std::string>().empty())) {
      bad("suffix", "'suffix' is not supported");
    }
  }
  if (const json* v = field("user")) get_string(*v, "user");  // accepted and unused, as an end-user id
  if (const json* v = field("logit_bias")) {
    if (!v->is_object()) bad("logit_bias", fmt::format("'logit_bias' must be an object, got {}", type_name(*v)));
    if (!v->empty()) bad("logit_bias", "'logit_bias' is not supported");
  }
  if (const json* v = field("ignore_eos")) request.ignore_eos = get_bool(*v, "ignore_eos");
  if (chat) {
    for (const char* name : {"tools", "tool_choice", "parallel_tool_calls"}) {
      if (field(name)) bad(name, fmt::format("'{}' is not supported (no tool calling)", name));
    }
    if (const json* v = field("response_format")) {
      if (!v->is_object() || v->value("type", json()) != "text") {
        bad("response_format", "'response_format' must be {\"type\": \"text\"} (no JSON mode)");
      }
    }
  }
  return request;
}

SamplerConfig sampler_config(const GenerationRequest& request, uint64_t seed) {
  SamplerConfig config;
  config.temperature = request.temperature;
  config.top_p = request.top_p;
  config.presence_penalty = request.presence_penalty;
  config.frequency_penalty = request.frequency_penalty;
  config.seed = seed;
  return config;
}

// ==== responses ===========================================================================================

json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

namespace {

json header_json(const ResponseHeader& header, bool chunk) {
  const bool chat = header.endpoint == Endpoint::chat_completions;
  return {{"id", header.id},
          {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", header.created},
          {"model", header.model},
          {"system_fingerprint", nullptr}};
}

json finish_json(const std::optional<std::string>& reason) { return reason ? json(*reason) : json(nullptr); }

}  // namespace

namespace {

json byte_values(const std::string& bytes) {
  json out = json::array();
  for (unsigned char c : bytes) out.push_back(int(c));
  return out;
}

}  // namespace

json chat_logprobs_json(const std::vector<LogprobToken>& tokens) {
  json content = json::array();
  for (const LogprobToken& token : tokens) {
    json top = json::array();
    for (const auto& [bytes, logprob] : token.top) {
      top.push_back({{"token", sanitize_utf8(bytes)}, {"logprob", logprob}, {"bytes", byte_values(bytes)}});
    }
    content.push_back({{"token", sanitize_utf8(token.bytes)},
                       {"logprob", token.logprob},
                       {"bytes", byte_values(token.bytes)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_logprobs_json(const std::vector<LogprobToken>& tokens, size_t first_offset) {
  json strings = json::array(), logprobs = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = first_offset;
  for (const LogprobToken& token : tokens) {
    strings.push_back(sanitize_utf8(token.bytes));
    logprobs.push_back(token.logprob);
    json top = json::object();
    // Two alternatives that decode to the same text share a key (as in the OpenAI API): the more likely stays.
    for (const auto& [bytes, logprob] : token.top) {
      const std::string key = sanitize_utf8(bytes);
      if (!top.contains(key)) top[key] = logprob;
    }
    tops.push_back(top);
    offsets.push_back(offset);
    offset += token.bytes.size();
  }
  return {{"tokens", strings}, {"token_logprobs", logprobs}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json completion_response(const ResponseHeader& header, const std::string& text, const std::string& finish_reason,
                         const Usage& usage, const json& logprobs) {
  json response = header_json(header, false);
  json choice = {{"index", 0}};
  if (header.endpoint == Endpoint::chat_completions) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish_reason;
  response["choices"] = json::array({choice});
  response["usage"] = usage_json(usage);
  return response;
}

json stream_chunk(const ResponseHeader& header, const std::string& text, const std::optional<std::string>& finish_reason,
                  bool first, const json& logprobs) {
  json chunk = header_json(header, true);
  json choice = {{"index", 0}};
  if (header.endpoint == Endpoint::chat_completions) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || !finish_reason) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish_json(finish_reason);
  chunk["choices"] = json::array({choice});
  return chunk;
}

json usage_chunk(const ResponseHeader& header, const Usage& usage) {
  json chunk = header_json(header, true);
  chunk["choices"] = json::array();
  chunk["usage"] = usage_json(usage);
  return chunk;
}

std::string sse_event(const json& chunk) { return "data: " + dump_json(chunk) + "\n\n"; }

}  // namespace infer::serve
