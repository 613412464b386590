#!/usr/bin/env bash
# The project's test command: checks the Debian packages, configures, builds everything and runs the tests,
# all through CMakePresets.json, so the flags here are the flags everywhere (CI, Docker, your IDE).
#
#   scripts/test.sh                 # preset `default`: Release, -march=native, CUDA compiled when nvcc exists
#   scripts/test.sh asan            # ASan + UBSan build, tests run with leak detection
#   scripts/test.sh cpu -R gguf     # any preset; the arguments after it go to ctest
#   INFER_JOBS=1 scripts/test.sh    # parallel jobs for the build and ctest (default: nproc)
#   INFER_SKIP_DEPS=1 scripts/test.sh   # skip the package check (non-Debian systems; CMake still checks)
#
# Presets: default, cpu, cuda, asan, release-portable (build folders build/<preset>/). A second run only rebuilds
# what changed. The last line printed is ctest's own summary; the exit status is ctest's.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

preset="${1:-default}"
if [[ $# -gt 0 ]]; then shift; fi
case "$preset" in
  -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
jobs="${INFER_JOBS:-$(nproc)}"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "test.sh: INFER_JOBS must be a positive integer, got '$jobs'" >&2; exit 2; }

say() { printf '\n==> %s\n' "$*"; }

# ---- 1. Debian packages --------------------------------------------------------------------------
# Each package is the one that ships what CMakeLists.txt asks for (checked with dpkg -S on Debian 12):
#   cmake (3.25), ninja-build (the presets' generator), g++ (g++-12; its libgcc-12-dev brings libgomp + omp.h,
#   so OpenMP needs no libomp-dev), pkg-config (for libpcre2-8.pc), libfmt-dev (fmtConfig.cmake),
#   libcli11-dev (CLI11Config.cmake), nlohmann-json3-dev (nlohmann_jsonConfig.cmake),
#   doctest-dev (doctestConfig.cmake + doctest.cmake), libbenchmark-dev (benchmarkConfig.cmake),
#   libpcre2-dev (libpcre2-8.pc).
required_packages=(cmake ninja-build g++ pkg-config libfmt-dev libcli11-dev nlohmann-json3-dev doctest-dev
                   libbenchmark-dev libpcre2-dev)

check_packages() {
  if [[ "${INFER_SKIP_DEPS:-0}" == 1 ]]; then
    echo "test.sh: INFER_SKIP_DEPS=1, not checking packages"
    return
  fi
  if ! command -v dpkg-query >/dev/null; then
    echo "test.sh: no dpkg-query (not Debian/Ubuntu?): not checking packages; install the equivalents of:" >&2
    echo "  ${required_packages[*]}" >&2
    return
  fi
  local missing=() pkg
  for pkg in "${required_packages[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" == ii* ]] || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "packages: all ${#required_packages[@]} present"
    return
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: missing Debian packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  say "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# ---- 2. The preset must exist ----------------------------------------------------------------------
check_preset() {
  local listing names
  if ! listing=$(cmake --list-presets=configure 2>&1); then
    echo "test.sh: cmake cannot read CMakePresets.json (needs CMake >= 3.25, have: $(cmake --version | head -n1)):" >&2
    echo "$listing" >&2
    exit 2
  fi
  names=$(sed -n 's/^ *"\([^"]*\)".*/\1/p' <<<"$listing")
  if ! grep -qx -- "$preset" <<<"$names"; then
    echo "test.sh: unknown preset '$preset'; the presets are: $(echo $names)" >&2
    exit 2
  fi
}

# A build folder configured earlier with another generator (a plain `cmake -B build/<preset>`) makes
# `cmake --preset` refuse; that folder belongs to the preset, so start it again.
reset_foreign_cache() {
  local cache="build/${preset}/CMakeCache.txt"
  if [[ -f "$cache" ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$cache"; then
    echo "test.sh: build/${preset} was configured with another generator; reconfiguring it from scratch"
    rm -rf "build/${preset}/CMakeCache.txt" "build/${preset}/CMakeFiles"
  fi
}

say "packages"
check_packages
check_preset
reset_foreign_cache

nvcc_path=$(command -v nvcc || true)
[[ -z "$nvcc_path" && -x /usr/local/cuda/bin/nvcc ]] && nvcc_path=/usr/local/cuda/bin/nvcc
echo "preset: ${preset}   jobs: ${jobs}   nvcc: ${nvcc_path:-none}   source: ${repo_root}"

say "configure (cmake --preset ${preset})"
cmake --preset "$preset"

say "build (cmake --build --preset ${preset} -j ${jobs})"
cmake --build --preset "$preset" -j "$jobs"

say "test (ctest --preset ${preset} --output-on-failure -j ${jobs} $*)"
exec ctest --preset "$preset" --output-on-failure -j "$jobs" "$@"
