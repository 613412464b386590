// server.cpp: the HTTP side of `ch09_production serve` (cpp-httplib): routes, authentication, the OpenAI
// endpoints over the engine thread (common/src/serve/engine_worker.cpp), streaming, metrics, and the drain
// on SIGINT/SIGTERM. The protocol itself (validation, JSON, stop strings, UTF-8, templates) is in
// common/src/serve/, tested without sockets.
//
// A request's life:  handler thread: parse + validate (400) -> model check (404) -> tokenize, context check
// (400) -> EngineWorker::submit (429 when full) -> wait on the request's channel, detokenize each token,
// match stop strings, write (SSE chunks when streaming) -> on a stop string or a client that went away,
// cancel (the engine frees the request's blocks at its next step).
#include "server.h"

#include "chat_page.h"
#include "infer/core/error.h"
#include "infer/core/fresh_thread.h"
#include "infer/model/transformer.h"
#include "infer/serve/chat_template.h"
#include "infer/serve/engine_worker.h"
#include "infer/serve/metrics.h"
#include "infer/serve/openai_protocol.h"
#include "infer/serve/text_stream.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <cerrno>
#include <cstdlib>
#include <dirent.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <random>
#include <thread>

namespace infer {

using namespace infer::serve;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// The OpenAI finish_reason of an engine finish: a stop token is "stop", max_tokens is "length".
std::string openai_finish_reason(FinishReason reason) {
  return reason == FinishReason::length ? "length" : "stop";
}

// ==== noticing a client that left a non-streaming request ===================================================
// A streaming response notices a client that left when a write fails (or its sink stops being writable). A
// non-streaming one writes nothing until the end, and cpp-httplib 0.11 (Debian's) gives a handler no access
// to its connection (newer versions have Request::is_connection_closed). The handler's connection stays open
// while the handler runs, so its descriptor is the one socket of this process whose local and peer addresses
// are the request's four-tuple (unique for TCP): we find it once, then peek at it while the request runs.

// "address:port" of a socket's local or peer end, in the numeric form httplib fills Request with.
std::optional<std::pair<std::string, int>> socket_end(int fd, bool peer) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  if (rc != 0 || (address.ss_family != AF_INET && address.ss_family != AF_INET6)) return std::nullopt;
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return std::nullopt;
  }
  return std::make_pair(std::string(host), std::atoi(port));
}

// The request's connected socket, -1 when not found (then the request simply runs to its end).
int find_request_socket(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (const dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    struct stat info {};
    if (fstat(int(fd), &info) != 0 || !S_ISSOCK(info.st_mode)) continue;
    const auto peer = socket_end(int(fd), true);
    if (!peer || peer->second != req.remote_port || peer->first != req.remote_addr) continue;
    const auto local = socket_end(int(fd), false);
    if (!local || local->second != req.local_port || local->first != req.local_addr) continue;
    found = int(fd);
    break;
  }
  closedir(dir);
  return found;
}

// Whether the peer closed its end: a read would return end-of-file (or the connection was reset). Bytes
// waiting to be read (a pipelined next request) are left where they are and mean "still there".
bool peer_closed(int fd) {
  char byte = 0;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  res.set_content(dump_json(error_body(error)), "application/json");
}

// ==== the model and what every request needs from it ======================================================

struct ServedModel {
  const LoadedModel& loaded;
  std::string id;                        // what clients put in "model"
  std::vector<int> end_of_generation;    // token ids that end a reply (EOS, <|im_end|>, <|eot_id|> ...)
  std::optional<ChatStyle> chat_style;   // none: the template is missing or unknown (chat_error says which)
  std::string chat_error;
  std::string default_system;
  int context = 0;
};

// ==== one generation: tokens in, text out ==================================================================

// The per-request state shared by the handler and, when streaming, the content provider.
struct Generation {
  ResponseHeader header;
  GenerationRequest request;
  int prompt_tokens = 0;
  std::shared_ptr<RequestChannel> channel;
  IncrementalDetokenizer detokenizer;
  StopMatcher stops;
  Clock::time_point arrived;
  std::optional<Clock::time_point> first_token, last_token;
  int completion_tokens = 0;
  std::optional<std::string> finish_reason;  // set once the reply is complete
  std::string error;                          // the engine refused or failed the request
  bool first_chunk = true;
  bool cancelled = false;                     // we asked the engine to abort it (stop string, client gone)
  // logprobs (when the request asked): one entry per generated token, the token that completed a stop string
  // included; `logprob_tokens` holds those not sent yet, `logprob_offset` the legacy text_offset reached.
  const Tokenizer& tokenizer;
  int previous_token;
  std::vector<LogprobToken> logprob_tokens;
  size_t logprob_offset = 0;

  Generation(const Tokenizer& tokenizer_, int previous_token_, std::vector<std::string> stop_strings)
      : detokenizer(tokenizer_, previous_token_), stops(std::move(stop_strings)), tokenizer(tokenizer_),
        previous_token(previous_token_) {}

  // The client's view of an event's log-probabilities: each token's bytes decoded after the previous token.
  void add_logprobs(const RequestEvent& event) {
    if (!event.logprobs) return;
    LogprobToken entry;
    entry.bytes = tokenizer.decode_token(previous_token, event.token);  // control tokens: "", as in the text
    entry.logprob = event.logprobs->logprob;
    for (const TokenLogprob& alternative : event.logprobs->top) {
      entry.top.emplace_back(tokenizer.decode_token(previous_token, alternative.token), alternative.logprob);
    }
    logprob_tokens.push_back(std::move(entry));
  }
  // The logprobs JSON of the entries not sent yet (null when the request did not ask), and forgets them.
  json take_logprobs() {
    if (!request.logprobs) return nullptr;
    json out = request.endpoint == Endpoint::chat_completions ? chat_logprobs_json(logprob_tokens)
                                                               : completion_logprobs_json(logprob_tokens, logprob_offset);
    for (const LogprobToken& token : logprob_tokens) logprob_offset += token.bytes.size();
    logprob_tokens.clear();
    return out;
  }

  // Consumes the events that arrived; returns the text to send now. Sets finish_reason at the end.
  std::string absorb(const std::vector<RequestEvent>& events, EngineWorker& worker) {
    std::string text;
    for (const RequestEvent& event : events) {
      if (finish_reason || !error.empty()) break;
      if (event.token >= 0) {
        const auto now = Clock::now();
        if (!first_token) first_token = now;
        last_token = now;
        ++completion_tokens;
        add_logprobs(event);
        previous_token = event.token;
        text += stops.push(detokenizer.push(event.token));
        if (stops.stopped()) {
          finish_reason = "stop";
          worker.cancel(channel);  // the engine frees its blocks; we send nothing more
          cancelled = true;
          break;
        }
      }
      if (event.finish == FinishReason::error) {
        error = event.error.empty() ? "the engine failed this request" : event.error;
      } else if (event.finish == FinishReason::aborted) {
        error = "the request was aborted by the server (shutdown or engine failure)";
      } else if (event.finish != FinishReason::none) {
        text += stops.push(detokenizer.flush());
        if (!stops.stopped()) text += stops.flush();
        finish_reason = stops.stopped() ? "stop" : openai_finish_reason(event.finish);
      }
    }
    return text;
  }
  bool done() const { return finish_reason.has_value() || !error.empty(); }
  Usage usage() const { return {prompt_tokens, completion_tokens}; }
};

// ==== the server ============================================================================================

class OpenAiServer {
 public:
  // default_max_tokens: a request's max_tokens when it sets none (--max-tokens); base_seed: the first seed
  // given to requests without one (--seed; each such request gets the next).
  OpenAiServer(ServedModel& model, EngineWorker& worker, const ServeOptions& options, int default_max_tokens,
               uint64_t base_seed)
      : model_(model), worker_(worker), options_(options), default_max_tokens_(default_max_tokens), next_seed_(base_seed) {}

  void install(httplib::Server& server) {
    server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const bool draining = worker_.draining();
      res.status = draining ? 503 : 200;
      res.set_content(dump_json({{"status", draining ? "draining" : "ok"}}), "application/json");
    });
    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_.render(worker_.gauges()), "text/plain; version=0.0.4; charset=utf-8");
    });
    server.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(chat_page_html()), "text/html; charset=utf-8");
    });
    server.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      res.set_content(dump_json({{"object", "list"}, {"data", json::array({model_json()})}}), "application/json");
    });
    server.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      if (req.matches[1] != model_.id) return send_error(res, unknown_model(req.matches[1]));
      res.set_content(dump_json(model_json()), "application/json");
    });
    server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle_generation(req, res, Endpoint::completions);
    });
    server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle_generation(req, res, Endpoint::chat_completions);
    });
    // Every 4xx/5xx httplib produces itself (no route: 404, a body over the limit: 413, a bad request line:
    // 400) gets an OpenAI error body too; a body a handler already wrote is kept.
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string message = res.status == 404   ? fmt::format("No route {} {}", req.method, req.path)
                                  : res.status == 413 ? "The request body is too large"
                                                      : fmt::format("HTTP {}", res.status);
      res.set_content(dump_json(error_body(ApiError(res.status, message))), "application/json");
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
      std::string message = "internal error";
      try {
        if (error) std::rethrow_exception(error);
      } catch (const std::exception& e) {
        message = e.what();
      } catch (...) {
      }
      send_error(res, ApiError(500, message));
    });
    server.set_logger([this](const httplib::Request&, const httplib::Response& res) { metrics_.count_response(res.status); });
  }

 private:
  json model_json() const {
    return {{"id", model_.id}, {"object", "model"}, {"created", 0}, {"owned_by", "infer-book"}};
  }
  ApiError unknown_model(const std::string& name) const {
    return ApiError(404, fmt::format("The model '{}' does not exist; this server serves '{}'", name, model_.id), "model",
                    "model_not_found");
  }

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (options_.api_key.empty()) return true;
    const std::string expected = "Bearer " + options_.api_key;
    if (req.get_header_value("Authorization") == expected) return true;
    send_error(res, ApiError(401, "Missing or wrong API key: send 'Authorization: Bearer <key>'", "", "invalid_api_key"));
    return false;
  }

  // The prompt's token ids: the chat template or the text, BOS when the model wants one.
  std::vector<int> prompt_tokens(const GenerationRequest& request) const {
    const Tokenizer& tokenizer = *model_.loaded.tokenizer;
    if (request.endpoint == Endpoint::completions && request.prompt_is_tokens) {
      for (size_t i = 0; i < request.prompt_tokens.size(); ++i) {
        if (request.prompt_tokens[i] >= tokenizer.vocab_size()) {
          throw ApiError(400, fmt::format("'prompt[{}]' = {} is not a token id (vocabulary: {})", i,
                                          request.prompt_tokens[i], tokenizer.vocab_size()), fmt::format("prompt[{}]", i));
        }
      }
      return request.prompt_tokens;
    }
    std::string text = request.prompt_text;
    if (request.endpoint == Endpoint::chat_completions) {
      if (!model_.chat_style) throw ApiError(400, model_.chat_error, "messages", "unsupported_chat_template");
      try {
        text = render_chat(*model_.chat_style, request.messages, model_.default_system);
      } catch (const Error& error) {
        throw ApiError(400, error.what(), "messages");
      }
    }
    return tokenizer.encode(text, tokenizer.add_bos_by_default(), /*parse_special=*/true);
  }

  void handle_generation(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    const auto arrived = Clock::now();
    if (!authorized(req, res)) return;
    std::shared_ptr<Generation> generation;
    try {
      RequestLimits limits;
      limits.vocab_size = model_.loaded.tokenizer->vocab_size();
      limits.max_prompt_tokens = size_t(model_.context);
      GenerationRequest request = parse_generation_request(req.body, endpoint, limits);
      if (request.model != model_.id) throw unknown_model(request.model);
      std::vector<int> prompt = prompt_tokens(request);
      if (prompt.empty()) throw ApiError(400, "The prompt is empty (and the model adds no BOS token)", "prompt");
      const int remaining = model_.context - int(prompt.size());
      const int max_tokens = request.max_tokens.value_or(std::min(default_max_tokens_, remaining));
      if (remaining < 1 || max_tokens > remaining) {
        throw ApiError(400, fmt::format("This model's context is {} tokens; the prompt has {} and max_tokens asks for {} "
                                        "more ({} in all)", model_.context, prompt.size(), max_tokens,
                                        prompt.size() + size_t(std::max(max_tokens, 0))),
                       request.max_tokens ? (endpoint == Endpoint::chat_completions ? "messages" : "prompt") : "prompt",
                       "context_length_exceeded");
      }
      RequestParams params;
      params.sampler = sampler_config(request, request.seed ? uint64_t(*request.seed) : next_seed_.fetch_add(1));
      params.max_tokens = max_tokens;
      params.stop_tokens = model_.end_of_generation;
      params.ignore_eos = request.ignore_eos;
      params.logprobs = request.logprobs ? request.top_logprobs : -1;

      generation = std::make_shared<Generation>(*model_.loaded.tokenizer, prompt.back(), request.stop);
      generation->header = {endpoint, fmt::format("{}-{}", endpoint == Endpoint::chat_completions ? "chatcmpl" : "cmpl",
                                                  next_id_.fetch_add(1)),
                            std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count(),
                            model_.id};
      generation->prompt_tokens = int(prompt.size());
      generation->arrived = arrived;
      generation->request = std::move(request);
      generation->channel = worker_.submit(std::move(prompt), std::move(params));
      open_responses_.fetch_add(1);
    } catch (const ApiError& error) {
      return send_error(res, error);
    } catch (const Error& error) {  // the tokenizer refused the text
      return send_error(res, ApiError(400, error.what(), "prompt"));
    }
    if (generation->request.stream) return stream(generation, res);  // the releaser closes it
    struct Close {
      std::atomic<int>& count;
      ~Close() { count.fetch_sub(1); }
    } close{open_responses_};

    // ---- one JSON response at the end; a client that leaves meanwhile cancels the request ----
    const int socket = find_request_socket(req);
    std::string text;
    while (!generation->done()) {
      text += generation->absorb(generation->channel->wait(std::chrono::milliseconds(50)), worker_);
      if (!generation->done() && socket >= 0 && peer_closed(socket)) {
        worker_.cancel(generation->channel);  // the engine frees its blocks at its next step
        generation->cancelled = true;
        metrics_.count_cancelled();
        res.status = 499;  // nginx's "client closed request": nobody reads it, /metrics counts it
        return;
      }
    }
    if (!generation->error.empty()) return send_error(res, ApiError(400, generation->error, "prompt"));
    finish(*generation);
    res.set_content(dump_json(completion_response(generation->header, text, *generation->finish_reason, generation->usage(),
                                                  generation->take_logprobs())),
                    "application/json");
  }

  // ---- Server-Sent Events: one chunk per piece of text, then the finish chunk, usage, [DONE] ----
  void stream(const std::shared_ptr<Generation>& generation, httplib::Response& res) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, generation](size_t, httplib::DataSink& sink) {
          Generation& g = *generation;
          const auto events = g.channel->wait(std::chrono::milliseconds(50));
          if (events.empty()) {
            // Nothing new: is the client still there? (A closed peer is the only way to notice a client that
            // left while its request waits or prefills.) Returning false ends the response; the releaser cancels.
            return sink.is_writable();
          }
          std::string text = g.absorb(events, worker_);
          std::string out;
          if (!g.error.empty()) {
            out += "data: " + dump_json(error_body(ApiError(500, g.error))) + "\n\n";
          } else {
            // Text, or tokens whose text is still held back (half a character, a possible stop string) but
            // whose logprobs the client asked for.
            if (!text.empty() || !g.logprob_tokens.empty()) {
              out += sse_event(stream_chunk(g.header, text, std::nullopt, g.first_chunk, g.take_logprobs()));
              g.first_chunk = false;
            }
            if (g.finish_reason) {
              out += sse_event(stream_chunk(g.header, "", g.finish_reason, g.first_chunk));
              if (g.request.include_usage) out += sse_event(usage_chunk(g.header, g.usage()));
            }
          }
          if (g.done()) out += kSseDone;
          if (!out.empty() && !sink.write(out.data(), out.size())) return false;
          if (g.done()) {
            finish(g);
            sink.done();
          }
          return true;
        },
        [this, generation](bool success) {
          open_responses_.fetch_sub(1);
          // Called once the response ends: on a disconnect (success == false) or a provider that gave up,
          // the request is still in the engine: abort it so that its blocks are freed now.
          if (!generation->done() || !success) {
            if (!generation->channel->finished()) worker_.cancel(generation->channel);
            if (!generation->cancelled) metrics_.count_cancelled();
            generation->cancelled = true;
          }
        });
  }

  void finish(const Generation& g) {
    if (g.cancelled) metrics_.count_cancelled();
    const auto end = Clock::now();
    std::optional<double> ttft, tpot;
    if (g.first_token) ttft = seconds_between(g.arrived, *g.first_token);
    if (g.first_token && g.completion_tokens > 1) {
      tpot = seconds_between(*g.first_token, *g.last_token) / double(g.completion_tokens - 1);
    }
    metrics_.observe_request(ttft, tpot, seconds_between(g.arrived, end));
    metrics_.count_tokens(uint64_t(g.prompt_tokens), uint64_t(g.completion_tokens));
  }

  ServedModel& model_;
  EngineWorker& worker_;
  const ServeOptions& options_;
  ServerMetrics metrics_;
  int default_max_tokens_;
  std::atomic<uint64_t> next_seed_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int> open_responses_{0};  // generations submitted whose response is not complete yet

 public:
  int open_responses() const { return open_responses_.load(); }
};

ServedModel describe_served_model(const LoadedModel& loaded, const std::string& served_name) {
  ServedModel model{loaded, {}, {}, {}, {}, {}, 0};
  if (!loaded.tokenizer) fail("the model has no tokenizer: the server needs one (--tokenizer for llama2.c files)");
  model.id = served_name;
  if (model.id.empty()) {
    model.id = std::filesystem::path(loaded.file.path).stem().string();
    if (loaded.synthetic) {  // "synthetic smollm2-135m" -> "synthetic-smollm2-135m"
      model.id = loaded.description;
      std::replace(model.id.begin(), model.id.end(), ' ', '-');
    }
  }
  model.context = loaded.file.config.max_seq_len;
  const Tokenizer& tokenizer = *loaded.tokenizer;
  for (int id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.is_end_of_generation(id)) model.end_of_generation.push_back(id);
  }
  const std::string chat_template = loaded.file.tokenizer ? loaded.file.tokenizer->chat_template : "";
  try {
    model.chat_style = detect_chat_style(chat_template);
    model.default_system = chat_template_default_system(chat_template);
  } catch (const Error& error) {
    model.chat_error = fmt::format("/v1/chat/completions is not available for this model: {}", error.what());
  }
  return model;
}

}  // namespace

// ==== HttpServer: the model's engine thread and HTTP front, started and stopped by its owner ==============

struct HttpServer::Impl {
  ServedModel model;
  Engine engine;
  EngineWorker worker;
  OpenAiServer api;
  httplib::Server server;
  std::thread listener;
  int port = 0;
  int listening_socket = -1;

  Impl(const LoadedModel& loaded, Transformer& transformer, const ServeOptions& options, int default_max_tokens,
       uint64_t seed)
      : model(describe_served_model(loaded, options.served_model_name)),
        engine(transformer, options.engine),
        worker(engine, WorkerOptions{options.max_queued}),
        api(model, worker, options, default_max_tokens, seed) {
    std::signal(SIGPIPE, SIG_IGN);  // a client that left must not kill the process on write
    const int http_threads = options.http_threads;
    server.new_task_queue = [http_threads] { return new httplib::ThreadPool(size_t(http_threads)); };
    server.set_payload_max_length(options.max_body_bytes);
    server.set_read_timeout(30, 0);
    // How long a connection may wait for its (next) request. httplib's default, 5 s, closes connections whose
    // client is slow to send (seen on a 2-core machine at load 15 with 32 client threads): 20 s.
    server.set_keep_alive_timeout(20);
    server.set_write_timeout(30, 0);
    api.install(server);
    // cpp-httplib (Debian's build) listens with a backlog of 5 connections: 32 clients connecting at once
    // overflow it and some get reset before a byte is read. We keep the listening socket's descriptor when
    // httplib creates it and raise the backlog after bind (listen() again only updates the backlog).
    server.set_socket_options([this](int socket) {
      int yes = 1;
      setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));  // what httplib's default does
      listening_socket = socket;
    });
    port = options.port == 0 ? server.bind_to_any_port(options.host) : options.port;
    if (port <= 0 || (options.port != 0 && !server.bind_to_port(options.host, options.port))) {
      fail("cannot listen on {}:{} (in use, or not an address of this machine)", options.host, options.port);
    }
    if (listening_socket >= 0) ::listen(listening_socket, 1024);
  }
};

HttpServer::HttpServer(const LoadedModel& model, Transformer& transformer, const ServeOptions& options,
                       int default_max_tokens, uint64_t seed)
    : impl_(std::make_unique<Impl>(model, transformer, options, default_max_tokens, seed)) {}

HttpServer::~HttpServer() {
  if (impl_->listener.joinable()) {
    impl_->server.stop();
    impl_->listener.join();
  }
  impl_->worker.stop();
}

int HttpServer::port() const { return impl_->port; }
const std::string& HttpServer::model_id() const { return impl_->model.id; }
std::string HttpServer::chat_template_description() const {
  return impl_->model.chat_style ? chat_style_name(*impl_->model.chat_style) : impl_->model.chat_error;
}
EngineStats HttpServer::engine_stats() const { return impl_->worker.stats(); }

void HttpServer::listen() { impl_->server.listen_after_bind(); }
void HttpServer::start() {
  impl_->listener = std::thread([this] { impl_->server.listen_after_bind(); });
  while (!impl_->server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

bool HttpServer::drain(double grace_seconds, const std::function<bool()>& cut_short) {
  impl_->worker.begin_drain();
  auto wait_for_responses = [&](double seconds) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (impl_->api.open_responses() > 0 && Clock::now() < deadline) {
      if (cut_short && cut_short()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  wait_for_responses(grace_seconds);
  const bool clean = impl_->api.open_responses() == 0;
  if (!clean) {
    fmt::print(stderr, "ch09_production serve: grace period over: aborting {} requests\n", impl_->worker.in_flight());
    impl_->worker.abort_all();
    wait_for_responses(5.0);
  }
  impl_->server.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
  return clean;
}

int HttpServer::open_responses() const { return impl_->api.open_responses(); }


// ==== run_server: load, serve, drain ======================================================================

int run_server(const CommonOptions& common, const ServeOptions& options) {
  // SIGINT/SIGTERM go to one thread that waits for them (sigwait), never to a handler interrupting a lock:
  // block them here, before any thread starts, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const int threads = resolve_threads(common.threads);
  auto backend = make_backend(common.device, threads, common.weight_layout);
  const LoadedModel model = load_model(common);
  // Converted on a thread that then exits (core/fresh_thread.h): the forward passes run on the engine thread,
  // and a second OpenMP pool left on this thread would make every barrier of every step slower.
  const std::unique_ptr<Weights> weights_owner = on_fresh_thread(
      [&] { return std::make_unique<Weights>(model.file, parse_weight_format(common.weights), *backend); });
  Weights& weights = *weights_owner;
  Transformer transformer(weights, *backend, options.engine.max_step_tokens);
  transformer.set_check_finite(common.check_numerics);
  HttpServer server(model, transformer, options, common.max_tokens, common.seed);

  const EngineStats stats = server.engine_stats();
  fmt::print("ch09_production serve: model '{}' ({}), {} threads, {} device\n", server.model_id(), model.description,
             threads, backend->name());
  fmt::print("  engine: max batch {}, step budget {} tokens, KV pool {} blocks of {}; chat template: {}\n",
             options.engine.max_batch, options.engine.max_step_tokens, stats.blocks_total, options.engine.block_size,
             server.chat_template_description());
  fmt::print("  listening on http://{}:{}/ (chat page at /, API at /v1, /health, /metrics){}\n", options.host,
             server.port(), options.api_key.empty() ? "" : "; /v1 needs the API key");
  std::fflush(stdout);

  // The drain (HttpServer::drain). cpp-httplib's stop() ends chunked responses that are still streaming, so
  // it comes last: first refuse new requests (503, /health 503: a load balancer takes the server out), let
  // the responses in flight finish for up to the grace period (a second signal cuts it short), abort what is
  // left (those clients get an error event and [DONE]), and only then close the listening socket.
  std::atomic<bool> served{false};
  std::thread signal_thread([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    if (served) return;  // woken by our own SIGTERM at exit
    fmt::print(stderr, "ch09_production serve: {} received: draining ({} responses in flight, grace {:.0f} s)\n",
               signal == SIGINT ? "SIGINT" : "SIGTERM", server.open_responses(), options.grace_seconds);
    server.drain(options.grace_seconds, [&] {
      timespec now{0, 0};
      return sigtimedwait(&signals, nullptr, &now) > 0;
    });
  });
  server.listen();
  served = true;
  if (signal_thread.joinable()) {
    pthread_kill(signal_thread.native_handle(), SIGTERM);  // a no-op wake-up if it already drained
    signal_thread.join();
  }
  const EngineStats end = server.engine_stats();
  fmt::print(stderr, "ch09_production serve: stopped; {} tokens generated, KV blocks free {}/{}\n", end.generated_tokens,
             end.blocks_free, end.blocks_total);
  return 0;
}

}  // namespace infer
