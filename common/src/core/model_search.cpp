// model_search.cpp: the model search order of model_search.h.
#include "infer/core/model_search.h"

#include <cstdlib>
#include <system_error>

namespace infer {

namespace fs = std::filesystem;

bool env_flag(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == "1";
}

std::vector<fs::path> model_search_dirs() {
  if (env_flag("INFER_HIDE_SHARED_MODELS")) return {};
  std::vector<fs::path> dirs;
  if (const char* own = std::getenv("INFER_MODELS_DIR"); own != nullptr && *own != '\0') dirs.emplace_back(own);
  const fs::path repository(INFER_SOURCE_DIR);
  dirs.push_back(repository / "models");
  dirs.push_back((repository / ".." / "shared" / "models").lexically_normal());
  return dirs;
}

fs::path find_model_file(std::string_view name) {
  for (const fs::path& dir : model_search_dirs()) {
    std::error_code ec;
    const fs::path candidate = dir / fs::path(name);
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  return {};
}

std::string describe_model_search() {
  if (env_flag("INFER_HIDE_SHARED_MODELS"))
    return "INFER_HIDE_SHARED_MODELS=1 hides INFER_MODELS_DIR, models/ and ../shared/models";
  std::string text = "searched:";
  const std::vector<fs::path> dirs = model_search_dirs();
  for (size_t i = 0; i < dirs.size(); ++i) text += (i == 0 ? " " : ", ") + dirs[i].string();
  return text;
}

}  // namespace infer
