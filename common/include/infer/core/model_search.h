// model_search.h: where the project looks for model files it does not ship (README "Models").
//
// A file name such as "SmolLM2-135M-Instruct.Q4_1.gguf" or "stories260K/tok512.bin" is looked up in
// these folders, in this order; the first regular file wins:
//   1. $INFER_MODELS_DIR, when set (a reader's own collection);
//   2. <repository>/models/ (scripts/fetch_models.sh writes there);
//   3. <repository>/../shared/models/ (the book's shared folder beside the repository, as in CI).
// INFER_HIDE_SHARED_MODELS=1 hides all three: the process sees only the repository's own files, as a
// fresh clone does (CI runs the test suite once like that). scripts/lib/models.sh is the same search
// for the shell scripts.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace infer {

// The folders searched, in order (empty when INFER_HIDE_SHARED_MODELS=1). A folder that does not exist
// is still listed, so messages can say where a file was looked for.
std::vector<std::filesystem::path> model_search_dirs();

// The first <folder>/<name> of model_search_dirs() that is a regular file, or an empty path.
std::filesystem::path find_model_file(std::string_view name);

// "searched: A, B, C" (or "INFER_HIDE_SHARED_MODELS=1 hides ..."), for messages about a missing file.
std::string describe_model_search();

// True when the environment variable `name` is set to "1" (INFER_REQUIRE_MODELS, INFER_HIDE_SHARED_MODELS).
bool env_flag(const char* name);

}  // namespace infer
