# shellcheck shell=bash
# Helpers for scripts that configure and build through CMakePresets.json (sourced by test.sh and run.sh).
# They expect `preset` to be set (shellcheck: SC2154 below) and the current directory to be the repository root.

# build_jobs: prints INFER_JOBS (default: nproc), or stops if it is not a positive integer.
build_jobs() {
  local jobs="${INFER_JOBS:-$(nproc)}"
  if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "$(basename "$0"): INFER_JOBS must be a positive integer, got '$jobs'" >&2
    exit 2
  fi
  echo "$jobs"
}

# check_preset: stops with the list of presets when `preset` is not one of them.
# shellcheck disable=SC2154
check_preset() {
  local listing names
  if ! listing=$(cmake --list-presets=configure 2>&1); then
    echo "$(basename "$0"): cmake cannot read CMakePresets.json (needs CMake >= 3.25, have: $(cmake --version | head -n1)):" >&2
    echo "$listing" >&2
    exit 2
  fi
  names=$(sed -n 's/^ *"\([^"]*\)".*/\1/p' <<<"$listing")
  if ! grep -qx -- "$preset" <<<"$names"; then
    echo "$(basename "$0"): unknown preset '$preset'; the presets are: $(paste -sd ' ' <<<"$names")" >&2
    exit 2
  fi
}

# reset_foreign_cache: a build folder configured earlier with another generator (a plain
# `cmake -B build/<preset>`) makes `cmake --preset` refuse; that folder belongs to the preset, so start it again.
reset_foreign_cache() {
  local cache="build/${preset}/CMakeCache.txt"
  if [[ -f "$cache" ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$cache"; then
    echo "$(basename "$0"): build/${preset} was configured with another generator; reconfiguring it from scratch"
    rm -rf "build/${preset}/CMakeCache.txt" "build/${preset}/CMakeFiles"
  fi
}

# nvcc_path: prints the nvcc CMake will find (PATH, then /usr/local/cuda/bin), or nothing.
nvcc_path() {
  local path
  path=$(command -v nvcc || true)
  [[ -z "$path" && -x /usr/local/cuda/bin/nvcc ]] && path=/usr/local/cuda/bin/nvcc
  echo "$path"
}
