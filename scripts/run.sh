#!/usr/bin/env bash
# The main job: builds the chapter programs, fetches the default model and runs every chapter in book order,
# each printing its table and writing its JSON to out/<chapter>.json.
#
#   scripts/run.sh                          # every chapter on the default model (CPU or CUDA per the chapter)
#   scripts/run.sh --max-tokens 16          # the arguments go to every chapter program
#   scripts/run.sh --device cuda            # (shared CLI: --model PATH, --device cpu|cuda, --threads N,
#                                           #  --prompt TEXT, --max-tokens N, --temperature, --top-p, --seed)
#   INFER_PRESET=cpu scripts/run.sh         # the CMake preset to build with (default: `default`)
#   INFER_JOBS=2 scripts/run.sh             # parallel build jobs (default: nproc)
#   INFER_SKIP_DEPS=1 scripts/run.sh        # skip the package check, as in test.sh
#
# Steps: the package check (scripts/lib/packages.sh, the same as test.sh), `cmake --preset`, a build of the
# chapter targets only, scripts/fetch_models.sh (if it fails the chapters fall back to a synthetic model), then
# each chapter. The chapters are the folders chNN_*/ with a CMakeLists.txt whose target the build defines, so a
# new chapter is picked up without editing this script. For ch09_production its `ladder` subcommand is run,
# never the HTTP server. Do not pass --json: each chapter's goes to out/<chapter>.json.
# The exit status is non-zero if a chapter failed (the others still run).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

case "${1:-}" in
  -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
for arg in "$@"; do
  if [[ "$arg" == --json || "$arg" == --json=* ]]; then
    echo "run.sh: do not pass --json; each chapter writes out/<chapter>.json" >&2
    exit 2
  fi
done

preset="${INFER_PRESET:-default}"
say() { printf '\n==> %s\n' "$*"; }

source "${repo_root}/scripts/lib/packages.sh"
source "${repo_root}/scripts/lib/preset.sh"

# ---- 1. Packages, configure ----------------------------------------------------------------------
say "packages"
check_packages
check_preset
reset_foreign_cache
jobs=$(build_jobs)

say "configure (cmake --preset ${preset})"
cmake --preset "$preset"

# ---- 2. Which chapters, which targets ------------------------------------------------------------
# The build's own list of targets (Ninja's `help` target prints "name: phony" for each).
build_targets=$(cmake --build --preset "$preset" --target help 2>/dev/null | sed -n 's/^\([A-Za-z0-9_]*\): phony$/\1/p')
has_target() { grep -qx -- "$1" <<<"$build_targets"; }

# chapter_target DIR: the executable to run for chapter folder DIR, or nothing.
chapter_target() {
  local dir="$1"
  if has_target "$dir"; then
    echo "$dir"
  fi
}

chapters=() targets=()
for cmakelists in ch[0-9][0-9]_*/CMakeLists.txt; do
  [[ -f "$cmakelists" ]] || continue
  dir="${cmakelists%/CMakeLists.txt}"
  target=$(chapter_target "$dir")
  if [[ -z "$target" ]]; then
    echo "run.sh: ${dir}: no table program in this build yet, skipping"
    continue
  fi
  chapters+=("$dir") targets+=("$target")
done
if [[ ${#chapters[@]} -eq 0 ]]; then
  echo "run.sh: no chapter programs found (looked for chNN_*/CMakeLists.txt)" >&2
  exit 1
fi

say "build (cmake --build --preset ${preset} -j ${jobs} --target ${targets[*]})"
cmake --build --preset "$preset" -j "$jobs" --target "${targets[@]}"

# ---- 3. The default model ------------------------------------------------------------------------
say "model (scripts/fetch_models.sh)"
if ! bash scripts/fetch_models.sh; then
  echo
  echo "NOTICE: the default model could not be fetched (see above). The chapters fall back to a synthetic"
  echo "        random-weight model of the same shape: the timings are real, the generated text is gibberish."
fi

# ---- 4. The chapters -----------------------------------------------------------------------------
mkdir -p out
shown_args=""   # the arguments as a shell would need them typed
if [[ $# -gt 0 ]]; then shown_args=$(printf ' %q' "$@"); fi
failed=()
for i in "${!chapters[@]}"; do
  dir="${chapters[$i]}"
  program="build/${preset}/${dir}/${targets[$i]}"
  json="out/${dir}.json"
  rm -f "$json"   # never leave an earlier run's numbers behind
  say "${dir}: ${program} --json ${json}${shown_args}"
  if [[ ! -x "$program" ]]; then
    echo "run.sh: ${program} was not built" >&2
    failed+=("$dir")
  else
    # ch09's program is the HTTP server too: its table is the `ladder` subcommand (report.md + ladder.png in out/).
    # (Its OpenMP work runs on fresh threads, one pool at a time: core/fresh_thread.h. OMP_WAIT_POLICY=PASSIVE,
    # used here before, made every barrier sleep: the single-stream rows ran ~1.8x slower.)
    subcommand=() run_env=()
    if [[ "$dir" == ch09_production ]]; then subcommand=(ladder --out-dir out); fi
    status=0
    env "${run_env[@]}" "$program" "${subcommand[@]}" --json "$json" "$@" || status=$?
    if [[ $status -ne 0 ]]; then
      echo "run.sh: ${dir} failed (exit ${status})" >&2
      failed+=("$dir")
    elif [[ ! -s "$json" ]]; then
      echo "run.sh: note: ${dir} wrote no ${json}"
    fi
  fi
done

echo
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "run.sh: ${#failed[@]} of ${#chapters[@]} chapters failed: ${failed[*]}"
  exit 1
fi
echo "run.sh: all ${#chapters[@]} chapters ran; JSON in out/: $(cd out && find . -maxdepth 1 -name '*.json' -printf '%f\n' | sort | paste -sd ' ')"
