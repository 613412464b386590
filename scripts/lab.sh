#!/usr/bin/env bash
# Grades a lab: builds the engine with the student's files in place of the reference ones, runs the lab's
# tests and prints a grade summary. (How labs work: cmake/InferLab.cmake; per lab: <chapter>/lab/README.md.)
#
#   scripts/lab.sh ch03                 # build/lab-ch03 with -DLAB=ch03, then `ctest -L lab_ch03`
#   scripts/lab.sh ch03 --reference     # the same tests on the reference engine (build/lab-ch03-reference)
#   scripts/lab.sh ch03 --expect-fail   # CI: succeeds only if the untouched stubs fail every test they reach
#   scripts/lab.sh ch03 -- -R rope      # arguments after -- go to ctest (here: only the rope tests)
#   scripts/lab.sh ch05 --build-dir build/lab-ci   # CI: one folder for every lab; switching labs there recompiles
#                                       # only the swapped files, not the whole `common` library
#   INFER_JOBS=1 scripts/lab.sh ch03    # parallel jobs for the build and ctest (default: nproc)
#   INFER_SKIP_DEPS=1 ...               # skip the package check, as in test.sh
#
# Only the `common` library and the lab's test binary lab_<lab>_tests are built (CPU preset, no benchmarks).
# Exit status: 0 when every test passed (skipped ones allowed); with --expect-fail, 0 when the build worked,
# at least one test failed and none passed; 1 otherwise; 2 for bad arguments.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

lab="" mode=grade ctest_args=() build_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --expect-fail) mode=expect-fail ;;
    --reference) mode=reference ;;
    --build-dir)
      if [[ $# -lt 2 || -z "$2" ]]; then echo "lab.sh: --build-dir needs a folder" >&2; exit 2; fi
      build_dir="$2"; shift ;;
    --) shift; ctest_args=("$@"); break ;;
    -*) echo "lab.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *)
      if [[ -n "$lab" ]]; then echo "lab.sh: one lab at a time (got '$lab' and '$1')" >&2; exit 2; fi
      lab="$1" ;;
  esac
  shift
done
# The labs are the infer_register_lab(...) lines of CMakeLists.txt.
labs=$(sed -n 's/^ *infer_register_lab(\([A-Za-z0-9_]*\) .*/\1/p' CMakeLists.txt | paste -sd ' ')
if [[ -z "$lab" ]]; then
  echo "lab.sh: which lab? The labs are: ${labs}" >&2
  exit 2
fi
if ! grep -qw -- "$lab" <<<"$labs"; then
  echo "lab.sh: unknown lab '$lab'; the labs are: ${labs}" >&2
  exit 2
fi
lab_dir=$(sed -n "s/^ *infer_register_lab(${lab} \([^ )]*\)).*/\1/p" CMakeLists.txt)

say() { printf '\n==> %s\n' "$*"; }

preset=cpu   # the configure preset the lab build starts from (CPU only: fast, and every lab runs on the CPU)
source "${repo_root}/scripts/lib/packages.sh"
source "${repo_root}/scripts/lib/preset.sh"
say "packages"
check_packages
jobs=$(build_jobs)

# One folder per lab and mode unless --build-dir names one. Reconfiguring a folder with another LAB value
# changes only which files `common` compiles (the flags stay the same), so ninja rebuilds just those.
if [[ "$mode" == reference ]]; then
  default_dir="build/lab-${lab}-reference" lab_value=""
else
  default_dir="build/lab-${lab}" lab_value="$lab"
fi
build_dir="${build_dir:-$default_dir}"
target="lab_${lab}_tests"
# A folder configured by hand with another generator makes `cmake --preset` refuse: start it again.
if [[ -f "${build_dir}/CMakeCache.txt" ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "${build_dir}/CMakeCache.txt"; then
  rm -rf "${build_dir}/CMakeCache.txt" "${build_dir}/CMakeFiles"
fi

say "configure (cmake --preset ${preset} -B ${build_dir} -DLAB=${lab_value} -DINFER_BUILD_BENCH=OFF)"
cmake --preset "$preset" -B "$build_dir" -DLAB="$lab_value" -DINFER_BUILD_BENCH=OFF

say "build (cmake --build ${build_dir} -j ${jobs} --target ${target})"
if ! cmake --build "$build_dir" -j "$jobs" --target "$target"; then
  echo
  if [[ "$mode" == reference ]]; then
    echo "lab.sh: the reference engine does not build (see above)"
  else
    echo "lab.sh: the lab does not build: fix the compiler errors above (in ${lab_dir}/*_student.cpp)"
    echo "GRADE ${lab}: 0 tests passed (build failed)"
  fi
  exit 1
fi

# -LE lab_self_check: the checks of the lab's tests themselves (each hinted mistake is caught) are not part of
# the grade; they pass on the stubs too, and run with the rest of the suite in scripts/test.sh.
say "test (ctest --test-dir ${build_dir} -L lab_${lab} -LE lab_self_check --output-on-failure -j ${jobs} ${ctest_args[*]})"
log="${build_dir}/lab-ctest.log"
status=0
ctest --test-dir "$build_dir" -L "lab_${lab}" -LE lab_self_check --output-on-failure -j "$jobs" "${ctest_args[@]}" 2>&1 | tee "$log" \
  || status=$?

# ---- Grade summary -------------------------------------------------------------------------------
# ctest prints one line per test: " 3/11 Test  #3: rope: ... ......   Passed    0.01 sec" (or ***Failed,
# ***Skipped, ***Timeout, ***Exception: ..., Not Run). The exercise is the test name's first word.
results=$(sed -nE 's/^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: (.*[^ .]) +\.+ *(\*\*\*)?([A-Za-z]+).*$/\3|\1/p' "$log" \
  | sort -t'|' -k2)
total=$(grep -c . <<<"$results" || true)
passed=$(grep -c '^Passed|' <<<"$results" || true)
skipped=$(grep -c '^Skipped|' <<<"$results" || true)
failed=$((total - passed - skipped))

say "grade: lab ${lab} ($([[ "$mode" == reference ]] && echo 'reference engine' || echo "student files in ${lab_dir}"))"
if [[ $total -eq 0 ]]; then
  echo "no lab_${lab} tests ran (ctest exit ${status}; see above)"
  exit 1
fi
for exercise in $(cut -d'|' -f2 <<<"$results" | awk '{print $1}' | sed 's/:$//' | awk '!seen[$0]++'); do
  rows=$(awk -F'|' -v e="$exercise" '{split($2, w, " "); sub(/:$/, "", w[1]); if (w[1] == e) print}' <<<"$results")
  printf '  %-8s %d/%d passed' "$exercise" "$(grep -c '^Passed|' <<<"$rows" || true)" "$(grep -c . <<<"$rows")"
  n_skipped=$(grep -c '^Skipped|' <<<"$rows" || true)
  if [[ $n_skipped -gt 0 ]]; then printf ' (%d skipped)' "$n_skipped"; fi
  printf '\n'
  # The tests that did not pass, each with its status (FAILED, skipped, Timeout, ...).
  grep -v '^Passed|' <<<"$rows" | sed -E 's/^Failed\|/FAILED|/; s/^Skipped\|/skipped|/; s/^([A-Za-z]+)\|(.*)$/      \1: \2/' || true
done
echo "GRADE ${lab}: ${passed}/${total} tests passed$([[ $skipped -gt 0 ]] && echo ", ${skipped} skipped (a model file is absent; see the test output)")"

case "$mode" in
  expect-fail)
    # The stubs must compile, and no test may pass on them: a test that passes on a stub cannot tell a
    # student's work from no work.
    if [[ $passed -gt 0 ]]; then
      echo "EXPECT-FAIL: ${passed} test(s) PASS on the untouched stubs; they cannot grade anything:"
      grep '^Passed|' <<<"$results" | cut -d'|' -f2 | sed 's/^/  /'
      exit 1
    fi
    if [[ $failed -eq 0 ]]; then
      echo "EXPECT-FAIL: no test failed (all ${skipped} skipped): nothing was checked"
      exit 1
    fi
    echo "EXPECT-FAIL: as expected, the stubs fail all ${failed} tests that ran (${skipped} skipped)"
    exit 0 ;;
  *)
    if [[ $failed -gt 0 || $status -ne 0 ]]; then exit 1; fi
    exit 0 ;;
esac
