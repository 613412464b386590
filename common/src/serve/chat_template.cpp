// chat_template.cpp: chat template styles (chat_template.h).
#include "infer/serve/chat_template.h"

#include "infer/core/error.h"

#include <fmt/format.h>

namespace infer::serve {

const char* chat_style_name(ChatStyle style) {
  switch (style) {
    case ChatStyle::chatml: return "ChatML";
    case ChatStyle::llama2: return "Llama-2";
    case ChatStyle::llama3: return "Llama-3";
    case ChatStyle::zephyr: return "Zephyr";
  }
  return "?";
}

ChatStyle detect_chat_style(std::string_view chat_template) {
  if (chat_template.empty()) {
    fail("the model has no chat template (GGUF tokenizer.chat_template is empty): use /v1/completions");
  }
  // The most specific markers first: a Zephyr template has no [INST]; a Llama-3 one no <|im_start|>.
  if (chat_template.find("<|start_header_id|>") != std::string_view::npos) return ChatStyle::llama3;
  if (chat_template.find("<|im_start|>") != std::string_view::npos) return ChatStyle::chatml;
  if (chat_template.find("<|user|>") != std::string_view::npos &&
      chat_template.find("<|assistant|>") != std::string_view::npos) {
    return ChatStyle::zephyr;
  }
  if (chat_template.find("[INST]") != std::string_view::npos) return ChatStyle::llama2;
  std::string head(chat_template.substr(0, 80));
  for (char& c : head) {
    if (c == '\n') c = ' ';
  }
  fail("unsupported chat template (recognised: ChatML, Llama-2, Llama-3, Zephyr); the model's begins: \"{}{}\"", head,
       chat_template.size() > 80 ? "..." : "");
}

namespace {

std::string render_chatml(const std::vector<ChatMessage>& messages, std::string_view default_system) {
  std::string text;
  if (!default_system.empty() && messages.front().role != "system") {
    text += fmt::format("<|im_start|>system\n{}<|im_end|>\n", default_system);
  }
  for (const ChatMessage& message : messages) {
    text += fmt::format("<|im_start|>{}\n{}<|im_end|>\n", message.role, message.content);
  }
  return text + "<|im_start|>assistant\n";
}

std::string render_llama3(const std::vector<ChatMessage>& messages, std::string_view default_system) {
  std::string text;
  if (!default_system.empty() && messages.front().role != "system") {
    text += fmt::format("<|start_header_id|>system<|end_header_id|>\n\n{}<|eot_id|>", default_system);
  }
  for (const ChatMessage& message : messages) {
    text += fmt::format("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>", message.role, message.content);
  }
  return text + "<|start_header_id|>assistant<|end_header_id|>\n\n";
}

std::string render_zephyr(const std::vector<ChatMessage>& messages, std::string_view default_system) {
  std::string text;
  if (!default_system.empty() && messages.front().role != "system") {
    text += fmt::format("<|system|>\n{}</s>\n", default_system);
  }
  for (const ChatMessage& message : messages) text += fmt::format("<|{}|>\n{}</s>\n", message.role, message.content);
  return text + "<|assistant|>\n";
}

// Llama-2: the system prompt goes inside the first [INST] block; each finished exchange is closed with
// </s> and the next one opens with <s> (the first <s> is the tokenizer's BOS).
std::string render_llama2(const std::vector<ChatMessage>& messages, std::string_view default_system) {
  std::string system(default_system);
  size_t first = 0;
  if (messages.front().role == "system") {
    system = messages.front().content;
    first = 1;
  }
  std::string text;
  bool first_user = true;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    if (message.role == "system") fail("Llama-2 chat template: a system message is only allowed first");
    if (message.role == "user") {
      if (!first_user) text += "<s>";
      std::string content = message.content;
      if (first_user && !system.empty()) content = fmt::format("<<SYS>>\n{}\n<</SYS>>\n\n{}", system, content);
      text += fmt::format("[INST] {} [/INST]", content);
      first_user = false;
    } else {
      text += fmt::format(" {} </s>", message.content);
    }
  }
  if (first_user) fail("Llama-2 chat template: the conversation needs a user message");
  return text;
}

}  // namespace

std::string render_chat(ChatStyle style, const std::vector<ChatMessage>& messages, std::string_view default_system) {
  if (messages.empty()) fail("a chat needs at least one message");
  switch (style) {
    case ChatStyle::chatml: return render_chatml(messages, default_system);
    case ChatStyle::llama2: return render_llama2(messages, default_system);
    case ChatStyle::llama3: return render_llama3(messages, default_system);
    case ChatStyle::zephyr: return render_zephyr(messages, default_system);
  }
  fail("unknown chat style");
}

}  // namespace infer::serve
