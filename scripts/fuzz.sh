#!/usr/bin/env bash
# Fuzzes the model loaders and tokenizers with libFuzzer (fuzz/: one target per fuzz_<name>.cpp).
#
#   scripts/fuzz.sh            # 300 s per target (the long run)
#   scripts/fuzz.sh 30         # N seconds per target (CI runs a short bounded run)
#   scripts/fuzz.sh 60 fuzz_gguf fuzz_safetensors   # only these targets
#
# Builds the `fuzz` preset (clang++, libFuzzer + ASan + UBSan; packages: fuzz_packages in
# scripts/lib/packages.sh), writes the generated seed corpora into fuzz/corpus/<target>/ (git-ignored;
# inputs the fuzzer finds stay there and seed the next run), runs each target for N seconds, and prints
# executions and corpus size per target. Any crash, leak, sanitizer report or timeout fails the script;
# the input that caused it is kept in fuzz/crashes/<target>/ (reproduce: build/fuzz/fuzz/<target> FILE).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

seconds="${1:-300}"
if [[ $# -gt 0 ]]; then shift; fi
case "$seconds" in
  -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: seconds per target must be a positive integer, got '$seconds'" >&2
  exit 2
fi
preset=fuzz

say() { printf '\n==> %s\n' "$*"; }

source "${repo_root}/scripts/lib/packages.sh"
source "${repo_root}/scripts/lib/preset.sh"

say "packages (build + fuzz: ${fuzz_packages[*]})"
check_packages "${fuzz_packages[@]}"
check_preset
reset_foreign_cache
jobs=$(build_jobs)

say "configure (cmake --preset ${preset})"
cmake --preset "$preset"
say "build (cmake --build --preset ${preset} -j ${jobs})"
cmake --build --preset "$preset" -j "$jobs"

bin="build/${preset}/fuzz"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for source in fuzz/fuzz_*.cpp; do
    name=$(basename "$source" .cpp)
    [[ "$name" == fuzz_seeds ]] || targets+=("$name")
  done
fi

say "seed corpora (${bin}/fuzz_seeds fuzz/corpus)"
"${bin}/fuzz_seeds" fuzz/corpus

# One core per target: the engine's OpenMP loops (weight conversion) stay on the fuzzing thread.
export OMP_NUM_THREADS=1
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
logs="build/${preset}/logs"
mkdir -p "$logs"

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/${target}"
  crashes="fuzz/crashes/${target}"
  mkdir -p "$corpus" "$crashes"
  say "fuzz ${target} for ${seconds} s (log: ${logs}/${target}.log)"
  status=0
  # -timeout: one input running longer than 25 s is a hang, reported as a failure.
  "${bin}/${target}" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="${crashes}/" "$corpus" >"${logs}/${target}.log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "${logs}/${target}.log" | tail -n1)
  files=$(find "$corpus" -type f | wc -l)
  kib=$(( $(find "$corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}') / 1024 ))
  line=$(printf '%-24s %-6s %12s execs %7s inputs %8s KiB' "$target" "$([[ $status -eq 0 ]] && echo ok || echo FAIL)" \
         "${execs:-?}" "$files" "$kib")
  summary+=("$line")
  echo "$line"
  if [[ $status -ne 0 ]]; then
    failed+=("$target")
    grep -E 'ERROR|FUZZ_REQUIRE|SUMMARY|Test unit written|runtime error|terminate' "${logs}/${target}.log" | head -n 20 || true
    echo "crash input kept in ${crashes}/: $(ls "$crashes" | paste -sd ' ')"
  fi
done

say "summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -ne 0 ]]; then
  echo "FAILED: ${failed[*]} (crash inputs in fuzz/crashes/<target>/; logs in ${logs}/)"
  exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds} s without a crash"
