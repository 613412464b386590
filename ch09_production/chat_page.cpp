// chat_page.cpp: the page at GET /. It keeps the conversation in the browser, sends it to
// /v1/chat/completions with stream: true, reads the Server-Sent Events from the response body as they
// arrive (fetch + ReadableStream; EventSource cannot POST) and shows each reply's tokens/s, counted from the
// usage chunk (stream_options.include_usage) over the time from the first token to the last.
#include "chat_page.h"

namespace infer {

namespace {

constexpr std::string_view kPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>infer-book chat</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; max-width: 50rem; margin: 1rem auto; padding: 0 1rem; color: #222; }
  #log { border: 1px solid #ccc; border-radius: 6px; padding: .5rem 1rem; min-height: 14rem; }
  .turn { margin: .6rem 0; white-space: pre-wrap; }
  .user b { color: #05a; } .assistant b { color: #a50; }
  .stats { color: #777; font-size: 12px; }
  form { display: flex; gap: .5rem; margin-top: .7rem; }
  #prompt { flex: 1; padding: .4rem; }
  #settings { margin-top: .5rem; color: #555; font-size: 13px; }
  #settings input { width: 5rem; }
</style>
</head>
<body>
<h1>infer-book chat</h1>
<p>Model: <span id="model">…</span> (the ch09 server; replies stream from <code>/v1/chat/completions</code>)</p>
<div id="log"></div>
<form id="form">
  <input id="prompt" autocomplete="off" placeholder="Type a message and press Enter">
  <button id="send" type="submit">Send</button>
</form>
<div id="settings">
  max tokens <input id="max_tokens" type="number" value="128" min="1">
  temperature <input id="temperature" type="number" value="0" min="0" max="2" step="0.1">
  API key <input id="api_key" type="password" style="width:10rem">
  <button id="clear" type="button">Clear</button>
</div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let messages = [];
let modelId = null;

function headers() {
  const h = {"Content-Type": "application/json"};
  if ($("api_key").value) h["Authorization"] = "Bearer " + $("api_key").value;
  return h;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", {headers: headers()});
    const body = await r.json();
    modelId = body.data[0].id;
    $("model").textContent = modelId;
  } catch (e) {
    $("model").textContent = "unknown (" + e + ")";
  }
}

function addTurn(role, text) {
  const div = document.createElement("div");
  div.className = "turn " + role;
  const name = document.createElement("b");
  name.textContent = role + ": ";
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text;
  div.append(name, span);
  $("log").append(div);
  return div;
}

async function send(text) {
  messages.push({role: "user", content: text});
  addTurn("user", text);
  const turn = addTurn("assistant", "");
  const out = turn.querySelector(".text");
  const stats = document.createElement("div");
  stats.className = "stats";
  turn.append(stats);
  const started = performance.now();
  let first = null, last = null, tokens = 0, reply = "";
  const response = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers(),
    body: JSON.stringify({model: modelId, messages: messages, stream: true,
                          stream_options: {include_usage: true},
                          max_tokens: Number($("max_tokens").value),
                          temperature: Number($("temperature").value)})});
  if (!response.ok) {
    const body = await response.json().catch(() => ({error: {message: response.statusText}}));
    stats.textContent = "error " + response.status + ": " + body.error.message;
    messages.pop();
    return;
  }
  // Server-Sent Events: events are separated by a blank line; each is "data: <json>" or "data: [DONE]".
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) { stats.textContent = "error: " + chunk.error.message; continue; }
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      for (const choice of chunk.choices) {
        const piece = choice.delta && choice.delta.content;
        if (piece) {
          const now = performance.now();
          if (first === null) first = now;
          last = now;
          reply += piece;
          out.textContent = reply;
        }
      }
    }
  }
  messages.push({role: "assistant", content: reply});
  const ttft = first === null ? 0 : (first - started);
  const rate = (first !== null && last > first && tokens > 1) ? (tokens - 1) * 1000 / (last - first) : 0;
  stats.textContent = tokens + " tokens, " + rate.toFixed(1) + " tokens/s, first token after " + ttft.toFixed(0) + " ms";
  stats.id = "done-" + messages.length;
}

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  $("send").disabled = true;
  try { await send(text); } finally { $("send").disabled = false; }
});
$("clear").addEventListener("click", () => { messages = []; $("log").textContent = ""; });
$("api_key").addEventListener("change", loadModel);
loadModel();
</script>
</body>
</html>
)HTML";

}  // namespace

std::string_view chat_page_html() { return kPage; }

}  // namespace infer
