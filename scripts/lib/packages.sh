#!/usr/bin/env bash
# The Debian/Ubuntu packages the build needs, and the check that installs the missing ones.
# One list for everyone: scripts/test.sh and scripts/run.sh source this file, and the Dockerfiles run it.
#
#   source scripts/lib/packages.sh; check_packages             # from a script (test.sh, run.sh)
#   bash scripts/lib/packages.sh [EXTRA_PACKAGE...]            # standalone: both lists plus extras (Dockerfiles)
#
# As root the missing packages are installed (apt-get update + install, no recommends); as another user the
# check stops with the exact command to run. INFER_SKIP_DEPS=1 skips the check (non-Debian systems; CMake still
# checks). Where dpkg-query is missing the list is printed and the check is skipped.

# Each package is the one that ships what CMakeLists.txt asks for (checked with dpkg -S on Debian 12; the same
# names exist on Ubuntu 24.04):
#   cmake (>= 3.25), ninja-build (the presets' generator), g++ (its libgcc-N-dev brings libgomp + omp.h, so OpenMP
#   needs no libomp-dev), pkg-config (for libpcre2-8.pc), libfmt-dev (fmtConfig.cmake),
#   libcli11-dev (CLI11Config.cmake), nlohmann-json3-dev (nlohmann_jsonConfig.cmake),
#   doctest-dev (doctestConfig.cmake + doctest.cmake), libbenchmark-dev (benchmarkConfig.cmake),
#   libpcre2-dev (libpcre2-8.pc), libcpp-httplib-dev (cpp-httplib.pc, ch09's HTTP server and client; it brings
#   libssl-dev, zlib1g-dev and libbrotli-dev; zlib also deflates ch09's PNG plot).
required_packages=(cmake ninja-build g++ pkg-config libfmt-dev libcli11-dev nlohmann-json3-dev doctest-dev
                   libbenchmark-dev libpcre2-dev libcpp-httplib-dev)

# Only for the tests (scripts/test.sh checks them too, scripts/run.sh does not): ch09's loopback tests need
#   python3-venv (a venv for requests + openai from PyPI) and a real headless browser for the chat page:
#   chromium, chromium-driver, python3-selenium.
test_packages=(python3-venv chromium chromium-driver python3-selenium)

# Only for the libFuzzer build (the `fuzz` preset, scripts/fuzz.sh and CI's fuzz stage), not for building or testing:
#   clang (clang++ with -fsanitize=fuzzer), libclang-rt-dev (the libFuzzer, ASan and UBSan runtimes: on Debian 12 it
#   pulls libclang-rt-14-dev, which holds libclang_rt.fuzzer-x86_64.a), libomp-dev (clang's OpenMP: omp.h + libomp).
fuzz_packages=(clang libclang-rt-dev libomp-dev)

# check_packages [EXTRA_PACKAGE...]: makes sure required_packages (and the extras) are installed.
check_packages() {
  local who want=("${required_packages[@]}" "$@")
  who=$(basename "$0")
  if [[ "${INFER_SKIP_DEPS:-0}" == 1 ]]; then
    echo "${who}: INFER_SKIP_DEPS=1, not checking packages"
    return 0
  fi
  if ! command -v dpkg-query >/dev/null; then
    echo "${who}: no dpkg-query (not Debian/Ubuntu?): not checking packages; install the equivalents of:" >&2
    echo "  ${want[*]}" >&2
    return 0
  fi
  local missing=() pkg
  for pkg in "${want[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" == ii* ]] || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "packages: all ${#want[@]} present"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "${who}: missing packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "packages: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# Run as a program (not sourced; the Dockerfiles, whose images run the tests): check both lists plus the
# packages named on the command line.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  check_packages "${test_packages[@]}" "$@"
fi
