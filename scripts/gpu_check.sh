#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: run the CUDA tests (every CUDA op against the CPU op, greedy tokens
# against the CPU's, the quantized Q8_0/Q4_0/Q4_1 kernels), then ch03 (naive decoding), ch05 (KV-cache decoding),
# ch06 (Part 1: batching on the paged pool) and ch07 (weights in f32 and GGUF block formats) on the GPU with
# synthetic models of real shapes, time the matmul kernels alone (tools/gpu_matmul_bench: f16 vs block formats),
# and print a short summary (tok/s, GB/s, % of the measured copy bandwidth).
#
# Two ways to get the binaries:
#   - built here (a GPU machine with the toolkit and the Debian packages of scripts/lib/packages.sh): the default
#     when no staged binaries are present;
#   - staged on another machine (one with nvcc and the packages, no GPU needed) and carried over: the GPU machine
#     then needs no compiler, no packages and no network, only the driver and the CUDA runtime + cuBLAS libraries.
#
#   scripts/gpu_check.sh --stage            # where nvcc is (no GPU needed): build portable binaries (no
#                                           # -march=native) for sm_90 into build/gpu-portable and copy them, the
#                                           # few libraries a CUDA image may lack (fmt, pcre2, gomp) and stories260K
#                                           # into the git-ignored build/carry-gpu/ (~25 MB); carry that folder
#   scripts/gpu_check.sh                    # on the GPU machine: staged binaries when build/carry-gpu/ holds them,
#                                           # else build for this GPU into build/gpu, then check everything
#   scripts/gpu_check.sh --rebuild          # build here even when staged binaries are present
#   scripts/gpu_check.sh --llama3-8b        # also ch05 on a Llama-3-8B-shaped f16 model (~16 GB written to
#                                           # the scratch dir; needs 20 GB free there and ~18 GB of GPU memory)
#   scripts/gpu_check.sh --sanitize         # also the quantized-kernel and paged-attention tests under
#                                           # compute-sanitizer (memcheck, then racecheck; a few minutes more)
#   scripts/gpu_check.sh --profile          # also Nsight Compute (ncu) on the decode GEMVs of 14336 x 4096 (speed of
#                                           # light, occupancy, warp stalls) and the GPU time of every kernel of
#                                           # SmolLM2-shaped decode steps (ncu_*.log; a minute or two more)
#   scripts/gpu_check.sh --stage-models     # copy only stories260K into build/carry-models/, then exit
#   INFER_GPU_ARCH=80 scripts/gpu_check.sh  # compile for this architecture (default: nvidia-smi's, else 90)
#   INFER_JOBS=8 scripts/gpu_check.sh       # parallel build jobs (default: nproc)
#   INFER_GPU_CHECK_DIR=/tmp/x scripts/gpu_check.sh   # where the models and logs go (default /tmp/infer-gpu-check)
#   INFER_GPU_CHECK_OUT=DIR scripts/gpu_check.sh      # also pack the logs and JSON into DIR/gpu_check.tar.gz and
#                                                     # write DIR/summary.txt (for a machine that is given back)
#
# The golden CUDA tests need stories260K. It is found in the usual search order (INFER_MODELS_DIR, models/,
# ../shared/models), in build/carry-gpu/models/ or in build/carry-models/. The CUDA tests run with
# INFER_REQUIRE_MODELS=1, one process per test case (a crash or a hang in one case cannot hide the others; each
# has a time limit), and this script fails if any case failed or was skipped: a golden test that did not run is
# not a pass.
#
# No model files are needed: the models of real shapes are written here by the project's own `synth` tool (random
# weights). Exit status: 0 when every CUDA test passed and ch03, ch05, ch06, ch07, ch08 and gpu_matmul_bench ran on
# the GPU, 1 otherwise.
# Budget: with staged binaries, about 3-5 minutes on a 16-core H200 machine; building there adds the build of the
# targets for one architecture. --llama3-8b and --sanitize add a few minutes each.
set -euo pipefail

with_llama3=0
stage_models=0
stage=0
rebuild=0
sanitize=0
profile=0
for arg in "$@"; do
  case "$arg" in
    --llama3-8b) with_llama3=1 ;;
    --stage-models) stage_models=1 ;;
    --stage) stage=1 ;;
    --rebuild) rebuild=1 ;;
    --sanitize) sanitize=1 ;;
    --profile) profile=1 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
start_seconds=$SECONDS

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
source "${repo_root}/scripts/lib/packages.sh"
source "${repo_root}/scripts/lib/preset.sh"
source "${repo_root}/scripts/lib/models.sh"

say() { printf '\n==> %s\n' "$*"; }

# The programs the check runs, as paths relative to a build folder.
readonly programs=(common/cuda_tests ch03_gpu_basics/ch03_gpu_basics ch05_kv_cache/ch05_kv_cache
                   ch06_batching/ch06_batching ch07_quantization/ch07_quantization ch08_speculative/ch08_speculative
                   tools/synth tools/gpu_matmul_bench)
program_targets() { local p; for p in "${programs[@]}"; do basename "$p"; done; }

# stories260K for the golden CUDA tests (see the header).
readonly stories_files=(stories260K/stories260K.bin stories260K/stories260K_v1.bin stories260K/tok512.bin
                        stories260K/expected_greedy_200.txt)
# copy_stories DIR: copies stories260K from the model search order into DIR/stories260K/.
copy_stories() {
  local dir=$1 name source_path
  mkdir -p "${dir}/stories260K"
  for name in "${stories_files[@]}"; do
    source_path=$(find_model_file "$name") || { echo "gpu_check.sh: ${name} is absent ($(describe_model_search))" >&2; exit 1; }
    [[ "$source_path" -ef "${dir}/${name}" ]] || cp -f "$source_path" "${dir}/${name}"
    echo "staged ${dir}/${name} (from ${source_path})"
  done
}

readonly carry_models="${repo_root}/build/carry-models"
readonly carry_gpu="${repo_root}/build/carry-gpu"
if [[ $stage_models == 1 ]]; then
  copy_stories "$carry_models"
  echo "gpu_check.sh: carry build/carry-models to the GPU machine with the working tree; there, run scripts/gpu_check.sh"
  exit 0
fi

# --stage: portable binaries (any x86-64 CPU: the AVX2 / AVX-512 kernels are picked at run time) for one GPU
# architecture, with the libraries a CUDA image may lack. The CUDA runtime and cuBLAS stay the GPU machine's own
# (they must be the toolkit's major version, 13 here; cuBLAS alone is hundreds of MB).
if [[ $stage == 1 ]]; then
  check_packages
  [[ -n "$(nvcc_path)" ]] || { echo "gpu_check.sh --stage: no nvcc (PATH or /usr/local/cuda/bin)" >&2; exit 1; }
  arch="${INFER_GPU_ARCH:-90}"
  build=build/gpu-portable
  say "configure + build (release-portable, CUDA on, CMAKE_CUDA_ARCHITECTURES=${arch}) into ${build}"
  cmake --preset release-portable -B "$build" -DINFER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DINFER_BUILD_BENCH=OFF >/dev/null
  mapfile -t targets < <(program_targets)
  cmake --build "$build" -j "$(build_jobs)" --target "${targets[@]}"
  rm -rf "$carry_gpu"
  mkdir -p "${carry_gpu}/bin" "${carry_gpu}/lib"
  for program in "${programs[@]}"; do cp "${build}/${program}" "${carry_gpu}/bin/"; done
  # Not the C library, libstdc++ or the CUDA libraries: those of the GPU machine are newer or must match its driver.
  ldd "${build}/common/cuda_tests" | awk '/lib(fmt|pcre2-8|gomp)\.so/ {print $3}' | while read -r lib; do
    cp -L "$lib" "${carry_gpu}/lib/"
  done
  copy_stories "${carry_gpu}/models"
  # The tests write scratch files under the build folder they were compiled with (INFER_BINARY_DIR).
  echo "${repo_root}/${build}" >"${carry_gpu}/binary_dir"
  echo "${arch}" >"${carry_gpu}/arch"
  echo "gpu_check.sh: staged $(du -sh "$carry_gpu" | cut -f1) in build/carry-gpu (sm_${arch}); carry it to the GPU machine" \
       "with the working tree and run scripts/gpu_check.sh there"
  exit 0
fi

work="${INFER_GPU_CHECK_DIR:-/tmp/infer-gpu-check}"
mkdir -p "$work"
out_dir="${INFER_GPU_CHECK_OUT:-}"

# Whatever happens below, the logs and JSON reach INFER_GPU_CHECK_OUT.
pack_logs() {
  [[ -n "$out_dir" ]] || return 0
  mkdir -p "$out_dir"
  (cd "$work" && tar czf "${out_dir}/gpu_check.tar.gz" --ignore-failed-read ./*.log ./*.json 2>/dev/null) || true
}
trap pack_logs EXIT
# Everything printed from here on is also kept whole (the caller may see only the end of it).
if [[ -n "$out_dir" ]]; then
  mkdir -p "$out_dir"
  exec > >(tee "${out_dir}/gpu_check.log") 2>&1
fi

say "driver"
if ! command -v nvidia-smi >/dev/null; then
  echo "gpu_check.sh: no nvidia-smi: no NVIDIA driver here" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,compute_cap,memory.total,memory.used,driver_version,clocks.sm,clocks.mem \
  --format=csv,noheader || { echo "gpu_check.sh: nvidia-smi cannot read the GPU" >&2; exit 1; }
gpu_arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .' || true)

if [[ -x "${carry_gpu}/bin/cuda_tests" && $rebuild == 0 ]]; then
  say "staged binaries (build/carry-gpu, sm_$(cat "${carry_gpu}/arch"))"
  bin="${carry_gpu}/bin"
  if [[ -n "$gpu_arch" && "$gpu_arch" != "$(cat "${carry_gpu}/arch")" ]]; then
    echo "note: staged for sm_$(cat "${carry_gpu}/arch"), this GPU is sm_${gpu_arch} (the kernels may not load)"
  fi
  export LD_LIBRARY_PATH="${carry_gpu}/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
  # The CUDA runtime and cuBLAS: the toolkit's, else a Python package's (pip's nvidia-* wheels).
  for attempt in 1 2; do
    missing=$(ldd "${bin}/cuda_tests" | awk '/not found/ {print $1}' | sort -u)
    [[ -z "$missing" ]] && break
    [[ $attempt == 2 ]] && { echo "gpu_check.sh: libraries not found: ${missing//$'\n'/ }" >&2; exit 1; }
    for lib in $missing; do
      found=$(find /usr/local /opt /usr/lib -name "$lib" 2>/dev/null | head -n 1 || true)
      [[ -n "$found" ]] && { echo "${lib}: ${found}"; LD_LIBRARY_PATH="${LD_LIBRARY_PATH}:$(dirname "$found")"; }
    done
  done
  mkdir -p "$(cat "${carry_gpu}/binary_dir")"
  [[ -z "${INFER_MODELS_DIR:-}" ]] && export INFER_MODELS_DIR="${carry_gpu}/models"
  arch=$(cat "${carry_gpu}/arch")
else
  say "packages and toolkit"
  check_packages
  nvcc=$(nvcc_path)
  if [[ -z "$nvcc" ]]; then
    echo "gpu_check.sh: no nvcc (PATH or /usr/local/cuda/bin): install the CUDA toolkit, or --stage elsewhere" >&2
    exit 1
  fi
  "$nvcc" --version | tail -n 1
  # The architecture to compile for: the GPU's compute capability (9.0 -> 90), else 90 (H100/H200).
  arch="${INFER_GPU_ARCH:-$gpu_arch}"
  [[ "$arch" =~ ^[0-9]+$ ]] || arch=90
  build=build/gpu
  echo "CUDA architecture: ${arch}   jobs: $(build_jobs)   build: ${build}   scratch: ${work}"
  say "configure + build (cuda preset, CMAKE_CUDA_ARCHITECTURES=${arch})"
  if [[ -f "${build}/CMakeCache.txt" ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "${build}/CMakeCache.txt"; then
    rm -rf "${build}/CMakeCache.txt" "${build}/CMakeFiles"
  fi
  cmake --preset cuda -B "$build" -DCMAKE_CUDA_ARCHITECTURES="$arch" -DINFER_BUILD_BENCH=OFF >"${work}/configure.log" \
    || { cat "${work}/configure.log"; exit 1; }
  mapfile -t targets < <(program_targets)
  cmake --build "$build" -j "$(build_jobs)" --target "${targets[@]}"
  echo "built in $((SECONDS - start_seconds)) s"
  bin="${work}/bin"
  mkdir -p "$bin"
  for program in "${programs[@]}"; do ln -sf "${repo_root}/${build}/${program}" "${bin}/"; done
  if [[ -z "${INFER_MODELS_DIR:-}" && -d "$carry_gpu/models" ]]; then export INFER_MODELS_DIR="${carry_gpu}/models"; fi
  if [[ -z "${INFER_MODELS_DIR:-}" && -d "$carry_models" ]]; then export INFER_MODELS_DIR="$carry_models"; fi
fi
export INFER_REQUIRE_MODELS=1

say "cuda tests: one process per test case, 120 s each"
tests_status=0
: >"${work}/cuda_tests.log"
# doctest's -tc filter splits at commas and knows the wildcards * and ?: a comma in a name becomes '?'.
mapfile -t cases < <("${bin}/cuda_tests" --list-test-cases | sed -n '/^=====/,/^=====/p' | grep -v '^=====')
passed=0; failed=(); skipped=()
tests_start=$SECONDS
test_budget=${INFER_GPU_TEST_BUDGET:-300}  # seconds for all the cases; the rest are reported as not run
for name in "${cases[@]}"; do
  if (( SECONDS - tests_start > test_budget )); then
    failed+=("$name (not run: the cases' ${test_budget} s budget was spent)")
    continue
  fi
  case_start=$SECONDS
  set +e
  timeout 120 "${bin}/cuda_tests" -tc="${name//,/?}" >"${work}/case.log" 2>&1
  rc=$?
  set -e
  { echo "=== ${name} (exit ${rc}, $((SECONDS - case_start)) s)"; cat "${work}/case.log"; } >>"${work}/cuda_tests.log"
  if [[ $rc == 77 ]] || grep -q "SKIPPED:" "${work}/case.log"; then
    skipped+=("$name: $(grep -m1 'SKIPPED:' "${work}/case.log")")
    grep -q "no CUDA device" "${work}/case.log" && break  # every other case would say the same
  elif [[ $rc == 0 ]] && grep -q '^\[doctest\] test cases: *1 | *1 passed' "${work}/case.log"; then
    passed=$((passed + 1))
  else
    [[ $rc == 124 ]] && name="${name} (timed out after 120 s)"
    failed+=("$name (exit ${rc})")
  fi
done
rm -f "${work}/case.log"
echo "cuda tests: ${#cases[@]} cases, ${passed} passed, ${#failed[@]} failed, ${#skipped[@]} skipped" | tee -a "${work}/cuda_tests.log"
for name in "${failed[@]}"; do echo "  FAILED: ${name}"; done
for name in "${skipped[@]}"; do echo "  SKIPPED: ${name}"; done
if [[ ${#cases[@]} == 0 || ${#failed[@]} != 0 || ${#skipped[@]} != 0 ]]; then tests_status=1; fi
if [[ ${#skipped[@]} != 0 ]] && printf '%s\n' "${skipped[@]}" | grep -q "no CUDA device"; then
  echo "gpu_check.sh: FAILED: the CUDA tests skipped, no usable GPU here" >&2
  exit 1
fi

if [[ $sanitize == 1 ]]; then
  say "compute-sanitizer on the quantized kernels' and paged attention's tests (memcheck: out-of-bounds / misaligned; racecheck: shared memory)"
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [[ -x "$sanitizer" ]]; then
    sanitize_cases='cuda gemv_quant*,cuda gemm_quant*,cuda embed of q*,cuda matmul on q*,cuda paged*,cuda attention v2*'
    mapfile -t sanitize_names < <("${bin}/cuda_tests" --list-test-cases -tc="$sanitize_cases" | sed -n '/^=====/,/^=====/p' |
                                  grep -v '^=====')
    # One process per case: a memcheck error ends the CUDA context, which would fail every later case.
    for tool in memcheck racecheck; do
      : >"${work}/sanitizer_${tool}.log"
      tool_failed=()
      for name in "${sanitize_names[@]}"; do
        if ! timeout 120 "$sanitizer" --tool "$tool" --error-exitcode 9 "${bin}/cuda_tests" -tc="${name//,/?}" \
             >>"${work}/sanitizer_${tool}.log" 2>&1; then
          tool_failed+=("$name")
        fi
      done
      echo "compute-sanitizer ${tool}: ${#sanitize_names[@]} cases, ${#tool_failed[@]} failed"
      for name in "${tool_failed[@]}"; do echo "  FAILED: ${name}"; done
      [[ ${#tool_failed[@]} == 0 ]] || tests_status=1
    done
  else
    echo "no compute-sanitizer here: skipped"
  fi
fi

say "synthetic models (tools/synth: random weights, real shapes)"
synth="${bin}/synth"
declare -A models=([smollm2-135m]="${work}/smollm2-135m-f16.gguf" [tinyllama-1.1b]="${work}/tinyllama-1.1b-f16.gguf"
                   [smollm2-135m-q4_1]="${work}/smollm2-135m-q4_1.gguf")
for name in smollm2-135m tinyllama-1.1b smollm2-135m-q4_1; do
  if [[ ! -f "${models[$name]}" ]]; then
    dtype=f16; preset=$name
    [[ $name == *-q4_1 ]] && { dtype=q4_1; preset=${name%-q4_1}; }
    "$synth" --preset "$preset" --dtype "$dtype" --format gguf --seed 1 --out "${models[$name]}"
  else
    echo "${models[$name]} (kept from an earlier run)"
  fi
done

say "ch03 on the GPU"
ch03_status=0
ch03="${bin}/ch03_gpu_basics"
# First run: the full chapter (CPU and GPU ceilings, naive decoding) on the TinyLlama shape.
timeout 240 "$ch03" --device cuda --model "${models[tinyllama-1.1b]}" --weights f16 --max-tokens 32 \
  --json "${work}/ch03_tinyllama_f16.json" 2>&1 | tee "${work}/ch03_tinyllama_f16.log" || ch03_status=$?
# Then naive decoding only, for the smaller shape and for fp32 weights, against the copy bandwidth measured above.
copy_gb_s=$(awk '/device-to-device copy/ {print $3; exit}' "${work}/ch03_tinyllama_f16.log")
for run in "smollm2-135m f16" "smollm2-135m f32" "tinyllama-1.1b f32"; do
  read -r name weights <<<"$run"
  timeout 120 "$ch03" --device cuda --model "${models[$name]}" --weights "$weights" --max-tokens 32 --skip-ceilings \
    ${copy_gb_s:+--bandwidth-gb-s "$copy_gb_s"} --json "${work}/ch03_${name}_${weights}.json" 2>&1 | tee "${work}/ch03_${name}_${weights}.log" || ch03_status=$?
done

say "ch05 on the GPU: naive vs KV-cache decoding"
ch05_status=0
ch05="${bin}/ch05_kv_cache"
ch05_runs=("tinyllama-1.1b f16 256 64")
if [[ $with_llama3 == 1 ]]; then
  # 16 GB of f16 weights: check the scratch disk first (the file stays for the next run).
  llama3="${work}/llama3-8b-f16.gguf"
  free_gb=$(df -P -B1G "$work" | awk 'NR == 2 {print $4}')
  if [[ -f "$llama3" || "${free_gb:-0}" -ge 20 ]]; then
    models[llama3-8b]="$llama3"
    if [[ ! -f "$llama3" ]]; then
      synth_start=$SECONDS
      "$synth" --preset llama3-8b --dtype f16 --format gguf --seed 1 --out "$llama3"
      echo "wrote ${llama3} in $((SECONDS - synth_start)) s"
    fi
    ch05_runs+=("llama3-8b f16 128 32")
  else
    echo "skipping Llama-3-8B: ${free_gb:-?} GB free in ${work}, the f16 model needs ~16 GB (20 GB asked)"
  fi
fi
for run in "${ch05_runs[@]}"; do
  read -r name weights tokens naive <<<"$run"
  # --bandwidth-mib 1024: the copy bandwidth ch05 divides by, measured on the GPU (same as ch03's).
  timeout 240 "$ch05" --device cuda --model "${models[$name]}" --weights "$weights" --max-tokens "$tokens" --naive-max "$naive" \
    --repeat 3 --json "${work}/ch05_${name}_${weights}.json" 2>&1 | tee "${work}/ch05_${name}_${weights}.log" \
    || ch05_status=$?
done

say "ch07 on the GPU: f32 vs Q8_0 / Q4_1 / Q4_0 blocks (and the file's own Q4_1, 'native')"
# SmolLM2-135M's shape written as Q4_1 blocks (as the real default model is shipped); random weights, so the
# perplexity / KL / top-1 columns only show that every format runs; speed and GB/s are the point here.
ch07_status=0
ch07="${bin}/ch07_quantization"
timeout 240 "$ch07" --device cuda --model "${models[smollm2-135m-q4_1]}" --formats f32,q8_0,q4_1,q4_0,native --max-tokens 64 \
  --eval-tokens 512 --repeat 3 --prefill-tokens 128 ${copy_gb_s:+--bandwidth-gb-s "$copy_gb_s"} \
  --json "${work}/ch07_smollm2-135m-q4_1.json" 2>&1 | tee "${work}/ch07_smollm2-135m-q4_1.log" || ch07_status=$?
if ! grep -q '^  gpu ' "${work}/ch07_smollm2-135m-q4_1.log"; then
  echo "gpu_check.sh: ch07 did not run on the GPU (no 'gpu' line in its header)" >&2
  ch07_status=1
fi

say "ch06 on the GPU: one at a time vs static vs continuous batching (paged pool and paged attention on the device)"
# Part 1 only, on the SmolLM2-shaped synthetic model with f32 weights: every engine output must equal the same
# request decoded alone (outputs_identical; on CUDA the split-context attention may differ in the last bits, so a
# mismatch here is a finding to report, not necessarily a bug) and every block must be free afterwards.
ch06_status=0
timeout 240 "${bin}/ch06_batching" --device cuda --model "${models[smollm2-135m-q4_1]}" --weights f32 \
  --main-only --requests 64 --solo 4 ${copy_gb_s:+--bandwidth-gb-s "$copy_gb_s"} \
  --json "${work}/ch06_smollm2-135m.json" 2>&1 | tee "${work}/ch06_smollm2-135m.log" || ch06_status=$?
if ! grep -q '^  gpu ' "${work}/ch06_smollm2-135m.log"; then
  echo "gpu_check.sh: ch06 did not run on the GPU (no 'gpu' line in its header)" >&2
  ch06_status=1
fi

say "matmul kernels alone: decode GEMV GB/s (f16 vs Q8_0 / Q4_1 / Q4_0 blocks) and the GEMM paths"
bench_status=0
timeout 180 "${bin}/gpu_matmul_bench" --shapes 14336x4096,1536x576,49152x576 --dtypes f16,q8_0,q4_1,q4_0 --tokens 1,128 \
  --repeat 20 2>&1 | tee "${work}/gpu_matmul_bench.log" || bench_status=$?

say "ch08 on the GPU: plain vs speculative decoding (a q8_0 self-draft, an early exit, prompt lookup; the engine with 4 requests)"
# Random weights: acceptance rates mean little; the point is that verification, rollback and the paged cache run on
# the device and every speculative output equals plain greedy decoding ("identical").
ch08_status=0
timeout 180 "${bin}/ch08_speculative" --device cuda --model "${models[smollm2-135m]}" --target-weights f32 \
  --self-draft q8_0 --early-exit 8 --max-tokens 64 --runs 1 --repeat 3 --engine-batches 4 \
  ${copy_gb_s:+--bandwidth-gb-s "$copy_gb_s"} --json "${work}/ch08_smollm2-135m.json" 2>&1 |
  tee "${work}/ch08_smollm2-135m.log" || ch08_status=$?

if [[ $profile == 1 ]]; then
  say "Nsight Compute: the decode GEMVs (14336 x 4096) and the kernels of SmolLM2-shaped decode steps"
  ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1 || true)
  if [[ -n "$ncu_bin" ]]; then
    # --clock-control none: the card's clocks as they are (never change them on a shared machine).
    timeout 240 "$ncu_bin" --clock-control none -k 'regex:gemv_v3|gemv_quant_v2' --launch-count 6 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis "${bin}/gpu_matmul_bench" --shapes 14336x4096 --dtypes f16,q8_0,q4_0 --tokens 1 \
      --repeat 1 >"${work}/ncu_gemv.log" 2>&1 || echo "ncu on gpu_matmul_bench: status $?"
    grep -E '^  [a-z_0-9]+<|gemv|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy|Block Limit' \
      "${work}/ncu_gemv.log" | head -n 80 || true
    # Every kernel's GPU time over ~10 decode steps of the SmolLM2-shaped f16 model (after its prefill):
    # their sum against the measured ms per token says whether the GPU or the host's launches set the pace.
    timeout 240 "$ncu_bin" --clock-control none --metrics gpu__time_duration.sum --launch-skip 3000 --launch-count 1500 \
      --print-summary per-kernel "${bin}/ch05_kv_cache" --device cuda --model "${models[smollm2-135m]}" --weights f16 \
      --max-tokens 48 --naive-max 1 --repeat 1 >"${work}/ncu_decode.log" 2>&1 || echo "ncu on ch05: status $?"
    grep -E '^  [A-Za-z_0-9]+|gpu__time_duration.sum|Invocations' "${work}/ncu_decode.log" | head -n 120 || true
  else
    echo "no ncu here: skipped"
  fi
fi

say "summary"
echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo unknown)  (arch ${arch})"
echo "tests:"
grep -E '^cuda tests: ' "${work}/cuda_tests.log" | sed 's/^/  /' || true
for name in "${failed[@]}"; do echo "    FAILED: ${name}"; done
echo "ceilings (ch03, TinyLlama-shaped run):"
grep -E 'memory: |device-to-device copy|TFLOP/s .* of the|Ridge point' "${work}/ch03_tinyllama_f16.log" | sed 's/^ */  /' || true
echo "naive decoding on the GPU (ms/token, tok/s, GB/s, % of measured copy bandwidth):"
for log in "${work}"/ch03_*.log; do
  row=$(grep -E '^naive \(no KV cache\), cuda' "$log" || echo "no GPU row (see ${log})")
  printf '  %-28s %s\n' "$(basename "$log" .log | sed 's/^ch03_//')" "$row"
done
echo "KV-cache decoding on the GPU (ch05; the longest kv_cache row: whole run incl. prefill; then decode only):"
for log in "${work}"/ch05_*.log; do
  [[ -f "$log" ]] || continue
  label=$(basename "$log" .log | sed 's/^ch05_//')
  row=$(grep -E '^kv_cache ' "$log" | tail -n 1 |
        awk -F'|' '{gsub(/ /, "", $2); gsub(/ /, "", $4); gsub(/ /, "", $6); gsub(/ /, "", $7);
                    printf "%s tokens: %s tok/s, %s GB/s, %s%% of the copy bandwidth", $2, $4, $6, $7}')
  decode=$(grep -E '^  decode ' "$log" | sed 's/^ *//; s/  (.*//' | tr -s ' ' || true)
  identical=$(grep -E '^tokens identical' "$log" | head -n 1 || true)
  printf '  %-20s %s\n  %-20s %s\n  %-20s %s\n' "$label" "${row:-no kv_cache row (see ${log})}" "" "${decode:-}" "" "${identical:-}"
done
echo "batching on the GPU (ch06 Part 1, SmolLM2-shaped synthetic model, f32):"
grep -E '^(continuous / one at a time|outputs identical|blocks free after)' "${work}/ch06_smollm2-135m.log" | sed 's/^/  /' \
  || echo "  no ch06 summary (see ${work}/ch06_smollm2-135m.log)"
echo "quantized weights on the GPU (ch07, SmolLM2-shaped synthetic Q4_1 file: variant | tokens | ms/token | tok/s | speedup | GB/s | % BW | ...):"
grep -E '^(f32|q8_0|q4_1|q4_0|native) +\|' "${work}/ch07_smollm2-135m-q4_1.log" | cut -c1-100 | sed 's/^/  /' \
  || echo "  no ch07 rows (see ${work}/ch07_smollm2-135m-q4_1.log)"
echo "decode GEMV kernels on Llama-3-8B's FFN shape (gpu_matmul_bench; shape | dtype | n | kernel | us | GB/s | % BW):"
grep -E '^ *14336x4096 \| .* \|    1 \|' "${work}/gpu_matmul_bench.log" | sed 's/^/  /' \
  || echo "  no rows (see ${work}/gpu_matmul_bench.log)"
echo "speculative decoding on the GPU (ch08, Part 3 over the prompts; see ch08_smollm2-135m.log):"
sed -n '/== Part 3/,/^$/p' "${work}/ch08_smollm2-135m.log" 2>/dev/null | cut -c1-110 | sed 's/^/  /' || true
echo "logs and JSON: ${work}   (total $((SECONDS - start_seconds)) s)"
if [[ $tests_status -ne 0 || $ch03_status -ne 0 || $ch05_status -ne 0 || $ch06_status -ne 0 || $ch07_status -ne 0 || $bench_status -ne 0 || $ch08_status -ne 0 ]]; then
  echo "gpu_check.sh: FAILED (tests status ${tests_status}, ch03 status ${ch03_status}, ch05 status ${ch05_status}," \
       "ch06 status ${ch06_status}, ch07 status ${ch07_status}, gpu_matmul_bench status ${bench_status}," \
       "ch08 status ${ch08_status})"
  exit 1
fi
echo "gpu_check.sh: OK"
