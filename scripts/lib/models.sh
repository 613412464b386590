# shellcheck shell=bash
# The model search order of the engine (common/include/infer/core/model_search.h), for the shell scripts:
#   1. $INFER_MODELS_DIR, when set;  2. <repository>/models/;  3. <repository>/../shared/models/.
# INFER_HIDE_SHARED_MODELS=1 hides all three (the repository's own files only, as in a fresh clone).
#
#   source scripts/lib/models.sh
#   path=$(find_model_file stories260K/tok512.bin) || echo "absent ($(describe_model_search))"
# Expects repo_root to be set to the repository root.

# model_search_dirs: the folders searched, one per line, in order.
model_search_dirs() {
  [[ "${INFER_HIDE_SHARED_MODELS:-0}" == 1 ]] && return 0
  [[ -n "${INFER_MODELS_DIR:-}" ]] && echo "$INFER_MODELS_DIR"
  echo "${repo_root}/models"
  echo "$(cd "${repo_root}/.." && pwd)/shared/models"
}

# find_model_file NAME: prints the first <folder>/NAME that is a regular file; status 1 when there is none.
find_model_file() {
  local dir
  while IFS= read -r dir; do
    if [[ -f "${dir}/$1" ]]; then
      echo "${dir}/$1"
      return 0
    fi
  done < <(model_search_dirs)
  return 1
}

# describe_model_search: where find_model_file looked, for messages.
describe_model_search() {
  if [[ "${INFER_HIDE_SHARED_MODELS:-0}" == 1 ]]; then
    echo "INFER_HIDE_SHARED_MODELS=1 hides INFER_MODELS_DIR, models/ and ../shared/models"
  else
    echo "searched: $(model_search_dirs | paste -sd ',' | sed 's/,/, /g')"
  fi
}
