#!/usr/bin/env bash
# The project's test command: checks the Debian packages, configures, builds everything and runs the tests,
# all through CMakePresets.json, so the flags here are the flags everywhere (CI, Docker, your IDE).
#
#   scripts/test.sh                 # preset `default`: Release, -march=native, CUDA compiled when nvcc exists
#   scripts/test.sh asan            # ASan + UBSan build, tests run with leak detection
#   scripts/test.sh cpu -R gguf     # any preset; the arguments after it go to ctest
#   INFER_JOBS=1 scripts/test.sh    # parallel jobs for the build and ctest (default: nproc)
#   INFER_SKIP_DEPS=1 scripts/test.sh   # skip the package check (non-Debian systems; CMake still checks)
#   INFER_PRESET=cpu scripts/test.sh    # the preset when none is given (the Docker images set it)
#
# Presets: default, cpu, cuda, asan, release-portable (build folders build/<preset>/; `fuzz` is scripts/fuzz.sh's). A second run only rebuilds
# what changed. The last line printed is ctest's own summary; the exit status is ctest's.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

preset="${1:-${INFER_PRESET:-default}}"
if [[ $# -gt 0 ]]; then shift; fi
case "$preset" in
  -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  fuzz) echo "test.sh: the fuzz preset builds libFuzzer targets, not tests; run scripts/fuzz.sh [seconds]" >&2; exit 2 ;;
esac

say() { printf '\n==> %s\n' "$*"; }

# Shared with scripts/run.sh: the package list and check (lib/packages.sh), the preset helpers (lib/preset.sh).
source "${repo_root}/scripts/lib/packages.sh"
source "${repo_root}/scripts/lib/preset.sh"

say "packages"
check_packages "${test_packages[@]}"
check_preset
reset_foreign_cache
jobs=$(build_jobs)
nvcc=$(nvcc_path)
echo "preset: ${preset}   jobs: ${jobs}   nvcc: ${nvcc:-none}   source: ${repo_root}"

# The ch09 server's loopback tests use real HTTP clients: requests and the official openai package from PyPI,
# in a venv inside the build folder (Debian's python3 with --system-site-packages, so python3-selenium from
# scripts/lib/packages.sh is seen too). Without the network the venv stays without them and those tests skip.
say "python test clients (build/${preset}/serve-venv)"
venv="build/${preset}/serve-venv"
system_python=/usr/bin/python3
[[ -x "$system_python" ]] || system_python=$(command -v python3 || true)
if [[ -n "$system_python" && ! -x "${venv}/bin/python3" ]]; then
  mkdir -p "build/${preset}"
  "$system_python" -m venv --system-site-packages "$venv" || echo "test.sh: could not create ${venv}; the ch09 tests will skip"
fi
if [[ -x "${venv}/bin/python3" ]]; then
  "${venv}/bin/python3" -m pip install -q --disable-pip-version-check 'requests>=2.28' 'openai>=1.30' ||
    echo "test.sh: pip could not install requests/openai (offline?); the ch09 loopback tests will skip"
fi

say "configure (cmake --preset ${preset})"
cmake --preset "$preset"

say "build (cmake --build --preset ${preset} -j ${jobs})"
cmake --build --preset "$preset" -j "$jobs"

say "test (ctest --preset ${preset} --output-on-failure -j ${jobs} $*)"
exec ctest --preset "$preset" --output-on-failure -j "$jobs" "$@"
