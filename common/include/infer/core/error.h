// error.h: the one exception type of the engine.
//
// Bad input (a corrupt model file, an unknown dtype, an over-long prompt) is reported by throwing
// infer::Error with a message that names the file or parameter and the problem. Programs catch it at
// main() and print it; nothing in the engine aborts or crashes on bad input.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace infer {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// fail("{}: tensor '{}' is truncated", path, name) throws infer::Error with the formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace infer
