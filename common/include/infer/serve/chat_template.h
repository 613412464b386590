// chat_template.h: a conversation -> the prompt text the model was trained on, for the four template styles
// seen in Llama-family GGUF files. We do not run the Jinja in tokenizer.chat_template; we recognise its style
// by the markers it writes and render that style here:
//
//   ChatML   (SmolLM2, Qwen):  <|im_start|>user\n{text}<|im_end|>\n ... <|im_start|>assistant\n
//   Llama-2  (Llama-2-chat):   [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {reply} </s><s>[INST] ...
//   Llama-3  (Llama-3.x):      <|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|> ...
//                              <|start_header_id|>assistant<|end_header_id|>\n\n
//   Zephyr   (Zephyr, TinyLlama-chat): <|user|>\n{text}</s>\n ... <|assistant|>\n
//
// The rendered text never holds the leading BOS: the tokenizer adds it when the model asks for one.
#pragma once

#include "infer/serve/openai_protocol.h"

#include <string>
#include <string_view>
#include <vector>

namespace infer::serve {

enum class ChatStyle { chatml, llama2, llama3, zephyr };
const char* chat_style_name(ChatStyle style);

// The style of a GGUF tokenizer.chat_template. Throws infer::Error when the template is empty or of
// another style, quoting its beginning.
ChatStyle detect_chat_style(std::string_view chat_template);

// Renders the conversation and the open assistant turn. `default_system`: the system turn a template
// adds when the conversation has none (SmolLM2's ChatML template does; empty: none).
std::string render_chat(ChatStyle style, const std::vector<ChatMessage>& messages,
                        std::string_view default_system = "");

}  // namespace infer::serve
