// Tests of the serving layer's pure parts (common/src/serve/): OpenAI request validation and response JSON,
// SSE framing, the stop-string matcher, incremental UTF-8-safe detokenization, chat templates and the
// Prometheus text format. The HTTP server itself is tested over loopback in ch09_production/tests/.
#include "infer/core/error.h"
#include "infer/serve/chat_template.h"
#include "infer/serve/metrics.h"
#include "infer/serve/openai_protocol.h"
#include "infer/serve/text_stream.h"
#include "test_util.h"

#include <random>

using namespace infer;
using namespace infer::serve;
using nlohmann::json;

namespace {

// Parses and expects a 400 ApiError naming `param`; returns its message.
std::string expect_bad(const std::string& body, Endpoint endpoint, const std::string& param) {
  RequestLimits limits;
  limits.vocab_size = 100;
  try {
    parse_generation_request(body, endpoint, limits);
  } catch (const ApiError& error) {
    CHECK(error.status == 400);
    CHECK_MESSAGE(error.param == param, body << " -> param '" << error.param << "': " << error.what());
    const json error_json = error_body(error);
    CHECK(error_json["error"]["type"] == "invalid_request_error");
    CHECK(error_json["error"]["message"].get<std::string>() == error.what());
    return error.what();
  }
  FAIL("no error for " << body);
  return "";
}

}  // namespace

TEST_CASE("serve protocol: a completions request with every field") {
  const auto request = parse_generation_request(
      R"({"model": "m", "prompt": "Hello", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": -3,
          "presence_penalty": 0.5, "frequency_penalty": -1, "stop": ["\n", "END"], "stream": true,
          "stream_options": {"include_usage": true}, "n": 1, "user": "u", "logit_bias": {}, "ignore_eos": true})",
      Endpoint::completions, {});
  CHECK(request.model == "m");
  CHECK(request.prompt_text == "Hello");
  CHECK(!request.prompt_is_tokens);
  CHECK(request.max_tokens == 7);
  CHECK(request.temperature == doctest::Approx(0.5));
  CHECK(request.top_p == doctest::Approx(0.9));
  CHECK(request.seed == -3);
  CHECK(request.stop == std::vector<std::string>{"\n", "END"});
  CHECK(request.stream);
  CHECK(request.include_usage);
  CHECK(request.ignore_eos);
  const SamplerConfig sampler = sampler_config(request, 99);
  CHECK(sampler.temperature == doctest::Approx(0.5));
  CHECK(sampler.presence_penalty == doctest::Approx(0.5));
  CHECK(sampler.frequency_penalty == doctest::Approx(-1.0));
  CHECK(sampler.seed == 99);
  CHECK(sampler.top_k == 0);

  // Defaults (OpenAI's): temperature 1, no stop, no stream; a token-id prompt; null means default.
  const auto tokens = parse_generation_request(R"({"model": "m", "prompt": [1, 2, 3], "temperature": null})",
                                               Endpoint::completions, {});
  CHECK(tokens.prompt_is_tokens);
  CHECK(tokens.prompt_tokens == std::vector<int>{1, 2, 3});
  CHECK(tokens.temperature == 1.0f);
  CHECK(!tokens.max_tokens);
  CHECK(!tokens.stream);
}

TEST_CASE("serve protocol: a chat request, max_completion_tokens winning, content parts") {
  const auto request = parse_generation_request(
      R"({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
          {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
          "max_tokens": 5, "max_completion_tokens": 9, "logprobs": false})",
      Endpoint::chat_completions, {});
  REQUIRE(request.messages.size() == 2);
  CHECK(request.messages[0].role == "system");
  CHECK(request.messages[1].content == "Hi there");
  CHECK(request.max_tokens == 9);
}

TEST_CASE("serve protocol: the bad-request corpus, each a 400 naming the field") {
  const Endpoint C = Endpoint::completions, H = Endpoint::chat_completions;
  expect_bad(R"({"model": "m", "prompt": "x")", C, "");                       // malformed JSON
  expect_bad(R"([1, 2])", C, "");                                              // not an object
  expect_bad(R"({"model": "m", "prompt": "x", "max_tokens": NaN})", C, "");    // NaN is not JSON
  expect_bad("{\"model\": \"m\", \"prompt\": \"\xC3\x28\"}", C, "");           // invalid UTF-8
  expect_bad(R"({"prompt": "x"})", C, "model");
  expect_bad(R"({"model": 3, "prompt": "x"})", C, "model");
  expect_bad(R"({"model": "m"})", C, "prompt");
  expect_bad(R"({"model": "m", "prompt": 5})", C, "prompt");
  expect_bad(R"({"model": "m", "prompt": []})", C, "prompt");
  expect_bad(R"({"model": "m", "prompt": ["a", "b"]})", C, "prompt");
  expect_bad(R"({"model": "m", "prompt": [1, 100]})", C, "prompt[1]");         // beyond the vocabulary
  expect_bad(R"({"model": "m", "prompt": [1, -1]})", C, "prompt[1]");
  expect_bad(R"({"model": "m", "prompt": "x", "max_tokens": "5"})", C, "max_tokens");
  expect_bad(R"({"model": "m", "prompt": "x", "max_tokens": 5.5})", C, "max_tokens");
  expect_bad(R"({"model": "m", "prompt": "x", "max_tokens": -1})", C, "max_tokens");
  expect_bad(R"({"model": "m", "prompt": "x", "max_tokens": 0})", C, "max_tokens");
  expect_bad(R"({"model": "m", "prompt": "x", "max_tokens": 1e300})", C, "max_tokens");
  expect_bad(R"({"model": "m", "prompt": "x", "max_tokens": 99999999999999999999999})", C, "max_tokens");
  expect_bad(R"({"model": "m", "prompt": "x", "temperature": -0.1})", C, "temperature");
  expect_bad(R"({"model": "m", "prompt": "x", "temperature": 1e999})", C, "");  // beyond a double
  expect_bad(R"({"model": "m", "prompt": "x", "temperature": "hot"})", C, "temperature");
  expect_bad(R"({"model": "m", "prompt": "x", "top_p": 0})", C, "top_p");
  expect_bad(R"({"model": "m", "prompt": "x", "top_p": 1.5})", C, "top_p");
  expect_bad(R"({"model": "m", "prompt": "x", "presence_penalty": 3})", C, "presence_penalty");
  expect_bad(R"({"model": "m", "prompt": "x", "frequency_penalty": -2.5})", C, "frequency_penalty");
  expect_bad(R"({"model": "m", "prompt": "x", "seed": 1.5})", C, "seed");
  expect_bad(R"({"model": "m", "prompt": "x", "stop": 3})", C, "stop");
  expect_bad(R"({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", C, "stop");
  expect_bad(R"({"model": "m", "prompt": "x", "stop": [""]})", C, "stop");
  expect_bad(R"({"model": "m", "prompt": "x", "stop": [1]})", C, "stop[0]");
  expect_bad(R"({"model": "m", "prompt": "x", "stream": "yes"})", C, "stream");
  expect_bad(R"({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}})", C, "stream_options");
  expect_bad(R"({"model": "m", "prompt": "x", "stream": true, "stream_options": {"foo": 1}})", C, "stream_options.foo");
  CHECK(expect_bad(R"({"model": "m", "prompt": "x", "n": 2})", C, "n").find("'n' must be 1") != std::string::npos);
  CHECK(expect_bad(R"({"model": "m", "prompt": "x", "temprature": 1})", C, "temprature").find("temprature") != std::string::npos);
  expect_bad(R"({"model": "m", "prompt": "x", "messages": []})", C, "messages");  // a chat field on completions
  expect_bad(R"({"model": "m", "prompt": "x", "logprobs": 6})", C, "logprobs");
  expect_bad(R"({"model": "m", "prompt": "x", "echo": true})", C, "echo");
  expect_bad(R"({"model": "m", "prompt": "x", "logit_bias": {"1": 5}})", C, "logit_bias");
  expect_bad(R"({"model": "m"})", H, "messages");
  expect_bad(R"({"model": "m", "messages": []})", H, "messages");
  expect_bad(R"({"model": "m", "messages": ["hi"]})", H, "messages[0]");
  expect_bad(R"({"model": "m", "messages": [{"content": "hi"}]})", H, "messages[0].role");
  expect_bad(R"({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]})", H, "messages[0].role");
  expect_bad(R"({"model": "m", "messages": [{"role": "user"}]})", H, "messages[0].content");
  expect_bad(R"({"model": "m", "messages": [{"role": "user", "content": 5}]})", H, "messages[0].content");
  expect_bad(R"({"model": "m", "messages": [{"role": "user", "content": "x", "extra": 1}]})", H, "messages[0].extra");
  expect_bad(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "prompt": "x"})", H, "prompt");
  expect_bad(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", H, "top_logprobs");
  expect_bad(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": []})", H, "tools");

  RequestLimits small;
  small.max_prompt_chars = 4;
  CHECK_THROWS_AS(parse_generation_request(R"({"model": "m", "prompt": "12345"})", C, small), ApiError);
}

TEST_CASE("serve protocol: response, chunk and usage JSON, SSE framing, error body") {
  ResponseHeader completion{Endpoint::completions, "cmpl-1", 1700000000, "m"};
  const json response = completion_response(completion, "Paris", "stop", {5, 1});
  CHECK(response["object"] == "text_completion");
  CHECK(response["choices"][0]["text"] == "Paris");
  CHECK(response["choices"][0]["finish_reason"] == "stop");
  CHECK(response["usage"] == json{{"prompt_tokens", 5}, {"completion_tokens", 1}, {"total_tokens", 6}});

  ResponseHeader chat{Endpoint::chat_completions, "chatcmpl-1", 1700000000, "m"};
  CHECK(completion_response(chat, "Hi", "length", {3, 2})["choices"][0]["message"] ==
        json{{"role", "assistant"}, {"content", "Hi"}});
  const json first = stream_chunk(chat, "He", std::nullopt, true);
  CHECK(first["object"] == "chat.completion.chunk");
  CHECK(first["choices"][0]["delta"] == json{{"role", "assistant"}, {"content", "He"}});
  CHECK(first["choices"][0]["finish_reason"].is_null());
  const json last = stream_chunk(chat, "", std::string("stop"), false);
  CHECK(last["choices"][0]["delta"] == json::object());
  CHECK(last["choices"][0]["finish_reason"] == "stop");
  const json usage = usage_chunk(chat, {3, 2});
  CHECK(usage["choices"].empty());
  CHECK(usage["usage"]["total_tokens"] == 5);

  // One event per chunk: "data: " + one line of JSON + a blank line; the JSON has no raw newline.
  const std::string event = sse_event(stream_chunk(completion, "a\nb", std::nullopt, false));
  CHECK(event.rfind("data: {", 0) == 0);
  CHECK(event.substr(event.size() - 2) == "\n\n");
  CHECK(event.find('\n') == event.size() - 2);
  CHECK(json::parse(event.substr(6))["choices"][0]["text"] == "a\nb");
  CHECK(kSseDone == "data: [DONE]\n\n");

  const ApiError not_found(404, "The model 'x' does not exist", "model", "model_not_found");
  const json body = error_body(not_found);
  CHECK(body["error"]["type"] == "not_found_error");
  CHECK(body["error"]["param"] == "model");
  CHECK(body["error"]["code"] == "model_not_found");
  CHECK(error_body(ApiError(400, "bad"))["error"]["param"].is_null());
  // Invalid UTF-8 in a message is replaced, not thrown on.
  CHECK(dump_json(json{{"text", std::string("\xFF")}}) == "{\"text\":\"\xEF\xBF\xBD\"}");
}

TEST_CASE("serve protocol: logprobs JSON, chat and legacy completions shapes, in responses and chunks") {
  // Two tokens: " Paris" and the first byte of a two-byte character (half of "é": its text is U+FFFD).
  const std::vector<LogprobToken> tokens = {
      {" Paris", -0.25f, {{" Paris", -0.25f}, {" Lyon", -2.5f}}},
      {std::string("\xC3"), -1.5f, {{"!", -0.5f}, {"!", -0.75f}, {std::string("\xC3"), -1.5f}}},
  };
  const json chat = chat_logprobs_json(tokens);
  REQUIRE(chat["content"].size() == 2);
  CHECK(chat["content"][0] == json{{"token", " Paris"}, {"logprob", -0.25f}, {"bytes", {32, 80, 97, 114, 105, 115}},
                                   {"top_logprobs", {{{"token", " Paris"}, {"logprob", -0.25f}, {"bytes", {32, 80, 97, 114, 105, 115}}},
                                                     {{"token", " Lyon"}, {"logprob", -2.5f}, {"bytes", {32, 76, 121, 111, 110}}}}}});
  CHECK(chat["content"][1]["token"] == "\xEF\xBF\xBD");  // the exact byte is in "bytes"
  CHECK(chat["content"][1]["bytes"] == json{0xC3});
  CHECK(chat["content"][1]["top_logprobs"].size() == 3);

  const json legacy = completion_logprobs_json(tokens, 10);
  CHECK(legacy["tokens"] == json{" Paris", "\xEF\xBF\xBD"});
  CHECK(legacy["token_logprobs"] == json{-0.25f, -1.5f});
  CHECK(legacy["text_offset"] == json{10, 16});  // bytes: " Paris" is 6
  CHECK(legacy["top_logprobs"][0] == json{{" Paris", -0.25f}, {" Lyon", -2.5f}});
  CHECK(legacy["top_logprobs"][1]["!"] == -0.5f);  // two alternatives with the same text: the more likely
  CHECK(legacy["top_logprobs"][1].size() == 2);

  ResponseHeader header{Endpoint::chat_completions, "chatcmpl-1", 1700000000, "m"};
  CHECK(completion_response(header, "Hi", "stop", {1, 2}, chat)["choices"][0]["logprobs"] == chat);
  CHECK(completion_response(header, "Hi", "stop", {1, 2})["choices"][0]["logprobs"].is_null());
  CHECK(stream_chunk(header, "", std::nullopt, false, chat)["choices"][0]["logprobs"] == chat);
  CHECK(stream_chunk(header, "x", std::nullopt, false)["choices"][0]["logprobs"].is_null());
}

// ==== stop strings =========================================================================================

namespace {

// The reference, checking one byte at a time as a token-by-token server would: at the first length at
// which some stop string ends, the text is cut where the (longest) stop string ending there starts.
std::string reference_stop(const std::string& text, const std::vector<std::string>& stops, bool& stopped) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t cut = std::string::npos;
    for (const auto& stop : stops) {
      if (stop.size() <= end && text.compare(end - stop.size(), stop.size(), stop) == 0) {
        cut = std::min(cut, end - stop.size());
      }
    }
    if (cut != std::string::npos) {
      stopped = true;
      return text.substr(0, cut);
    }
  }
  stopped = false;
  return text;
}

}  // namespace

TEST_CASE("serve stop strings: matched across chunk boundaries, never sent (random splits vs the reference)") {
  std::mt19937 rng(1234);
  const std::string alphabet = "abc";  // a small alphabet makes partial matches frequent
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int length = std::uniform_int_distribution<int>(0, 30)(rng);
    for (int i = 0; i < length; ++i) text += alphabet[rng() % alphabet.size()];
    std::vector<std::string> stops;
    const int n_stops = std::uniform_int_distribution<int>(1, 3)(rng);
    for (int s = 0; s < n_stops; ++s) {
      std::string stop;
      const int stop_length = std::uniform_int_distribution<int>(1, 4)(rng);
      for (int i = 0; i < stop_length; ++i) stop += alphabet[rng() % alphabet.size()];
      stops.push_back(stop);
    }
    bool expect_stopped = false;
    const std::string expected = reference_stop(text, stops, expect_stopped);

    StopMatcher matcher(stops);
    std::string sent;
    size_t at = 0;
    while (at < text.size() && !matcher.stopped()) {
      const size_t chunk = std::min<size_t>(text.size() - at, std::uniform_int_distribution<int>(1, 5)(rng));
      sent += matcher.push(std::string_view(text).substr(at, chunk));
      at += chunk;
      // What was sent is always a prefix of the final answer (nothing is ever taken back).
      REQUIRE(expected.compare(0, sent.size(), sent) == 0);
    }
    sent += matcher.flush();
    CHECK_MESSAGE(sent == expected, "text '" << text << "'");
    CHECK(matcher.stopped() == expect_stopped);
  }
}

TEST_CASE("serve stop strings: a held-back partial match is released when it does not complete") {
  StopMatcher matcher({"</end>"});
  CHECK(matcher.push("Hello </e") == "Hello ");
  CHECK(matcher.push("xtra") == "</extra");
  CHECK(matcher.push("</") == "");
  CHECK(matcher.flush() == "</");
  StopMatcher across({"\n\n"});
  CHECK(across.push("one\n") == "one");
  CHECK(across.push("\ntwo") == "");
  CHECK(across.stopped());
}

// ==== incremental detokenization ===========================================================================

namespace {

// A tokenizer whose tokens are arbitrary byte strings (split anywhere, even inside a UTF-8 character), as
// byte-level BPE and SentencePiece byte fallback produce them.
class BytePiecesTokenizer : public Tokenizer {
 public:
  explicit BytePiecesTokenizer(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  std::vector<int> encode(std::string_view, bool, bool) const override { return {}; }
  std::string decode_token(int, int token, bool) const override { return pieces_.at(size_t(token)); }
  int vocab_size() const override { return int(pieces_.size()); }
  int bos_id() const override { return -1; }
  int eos_id() const override { return -1; }
  bool is_end_of_generation(int) const override { return false; }
  bool add_bos_by_default() const override { return false; }
  const std::string& piece(int token) const override { return pieces_.at(size_t(token)); }

 private:
  std::vector<std::string> pieces_;
};

bool valid_utf8(const std::string& text) { return sanitize_utf8(text) == text; }

}  // namespace

TEST_CASE("serve detokenizer: never emits half a UTF-8 character, whatever the token split") {
  const std::string text = "Größe 日本語 🦙🚀 ok \xC3\xA9";
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<std::string> pieces;
    for (size_t at = 0; at < text.size();) {
      const size_t n = std::min<size_t>(text.size() - at, std::uniform_int_distribution<int>(1, 4)(rng));
      pieces.push_back(text.substr(at, n));
      at += n;
    }
    BytePiecesTokenizer tokenizer(pieces);
    IncrementalDetokenizer detokenizer(tokenizer, -1);
    std::string out;
    for (int id = 0; id < tokenizer.vocab_size(); ++id) {
      const std::string chunk = detokenizer.push(id);
      REQUIRE(valid_utf8(chunk));
      out += chunk;
    }
    out += detokenizer.flush();
    CHECK(out == text);
  }
  // A character cut off at the end becomes U+FFFD; stray bytes too.
  BytePiecesTokenizer cut({"ab\xE6\x97"});
  IncrementalDetokenizer detokenizer(cut, -1);
  CHECK(detokenizer.push(0) == "ab");
  CHECK(detokenizer.flush() == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(sanitize_utf8("a\x80" "b\xC0\xAF" "c\xED\xA0\x80") ==
        "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(utf8_complete_prefix("ab\xF0\x9F\xA6") == 2);
  CHECK(utf8_complete_prefix("ab\xF0\x9F\xA6\x99") == 6);
}

// ==== chat templates =======================================================================================

TEST_CASE("serve chat templates: the four styles recognised and rendered, another refused by name") {
  const std::vector<ChatMessage> chat = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};
  // Each template text below is the distinctive part of a real GGUF's tokenizer.chat_template.
  CHECK(detect_chat_style("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' ...") == ChatStyle::chatml);
  CHECK(detect_chat_style("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}") == ChatStyle::llama3);
  CHECK(detect_chat_style("{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}") == ChatStyle::llama2);
  CHECK(detect_chat_style("{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}"
                          "{% elif %}{{ '<|assistant|>\\n' }}") == ChatStyle::zephyr);
  CHECK(render_chat(ChatStyle::chatml, chat) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n");
  CHECK(render_chat(ChatStyle::llama3, chat) ==
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU2"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(render_chat(ChatStyle::llama2, chat) == "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]");
  CHECK(render_chat(ChatStyle::zephyr, chat) == "<|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n<|user|>\nU2</s>\n<|assistant|>\n");
  // The template's default system turn is added only when the conversation has none.
  CHECK(render_chat(ChatStyle::chatml, {{"user", "Hi"}}, "D") ==
        "<|im_start|>system\nD<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(render_chat(ChatStyle::chatml, {{"system", "S"}, {"user", "Hi"}}, "D").find("D") == std::string::npos);

  try {
    detect_chat_style("{% for m in messages %}<start_of_turn>{{ m['role'] }}");  // Gemma's style
    FAIL("accepted an unknown template");
  } catch (const Error& error) {
    CHECK(std::string(error.what()).find("<start_of_turn>") != std::string::npos);
    CHECK(std::string(error.what()).find("ChatML, Llama-2, Llama-3, Zephyr") != std::string::npos);
  }
  CHECK_THROWS_AS(detect_chat_style(""), Error);
}

TEST_CASE("serve chat templates: SmolLM2's real template gives the prompt its tokenizer layer gives") {
  INFER_MODEL_FILE(path, test::kSmolLM2);
  const ModelFile file = load_model_file(path.string());
  REQUIRE(file.tokenizer);
  const std::string& chat_template = file.tokenizer->chat_template;
  CHECK(detect_chat_style(chat_template) == ChatStyle::chatml);
  CHECK(render_chat(ChatStyle::chatml, {{"user", "Hi"}}, chat_template_default_system(chat_template)) ==
        apply_chat_template(*file.tokenizer, "Hi"));
}

// ==== Prometheus ===========================================================================================

TEST_CASE("serve metrics: Prometheus text format, cumulative histogram buckets, escaping") {
  Histogram histogram({0.1, 1.0});
  for (double value : {0.05, 0.1, 0.5, 3.0}) histogram.observe(value);
  PrometheusWriter out;
  out.family("t_seconds", "histogram", "A test.");
  out.histogram("t_seconds", histogram);
  out.family("t_total", "counter", "Counts.");
  out.sample("t_total", {{"path", "a\"b\\c\nd"}}, 3);
  CHECK(out.text() ==
        "# HELP t_seconds A test.\n# TYPE t_seconds histogram\n"
        "t_seconds_bucket{le=\"0.1\"} 2\nt_seconds_bucket{le=\"1\"} 3\nt_seconds_bucket{le=\"+Inf\"} 4\n"
        "t_seconds_sum 3.65\nt_seconds_count 4\n"
        "# HELP t_total Counts.\n# TYPE t_total counter\nt_total{path=\"a\\\"b\\\\c\\nd\"} 3\n");
  CHECK(prometheus_number(1.0 / 0.0) == "+Inf");
  CHECK(prometheus_number(0.25) == "0.25");

  ServerMetrics metrics;
  metrics.count_response(200);
  metrics.count_response(200);
  metrics.count_response(400);
  metrics.count_tokens(10, 4);
  metrics.observe_request(0.02, 0.005, 0.04);
  EngineGauges gauges;
  gauges.blocks_total = 10;
  gauges.blocks_free = 7;
  const std::string text = metrics.render(gauges);
  CHECK(text.find("infer_requests_total{status=\"200\"} 2\n") != std::string::npos);
  CHECK(text.find("infer_requests_total{status=\"400\"} 1\n") != std::string::npos);
  CHECK(text.find("infer_generation_tokens_total 4\n") != std::string::npos);
  CHECK(text.find("infer_kv_blocks{state=\"used\"} 3\n") != std::string::npos);
  CHECK(text.find("infer_time_to_first_token_seconds_count 1\n") != std::string::npos);
  CHECK(text.find("speculative") == std::string::npos);  // only offered when speculation is on
  // Every line is a comment or "name[{labels}] value".
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    REQUIRE(end != std::string::npos);
    const std::string line = text.substr(start, end - start);
    CHECK((line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0 || line.find(' ') != std::string::npos));
    start = end + 1;
  }
}
