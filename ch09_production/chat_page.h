// chat_page.h: the chat page served at GET / (plain HTML + JavaScript, no build step).
#pragma once

#include <string_view>

namespace infer {

std::string_view chat_page_html();

}  // namespace infer
