#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: build the CUDA backend for this GPU, run the cuda-labelled
# tests (the quantized Q8_0/Q4_0/Q4_1 kernels' included), run ch03 (naive decoding), ch05 (KV-cache decoding)
# ch06 (Part 1: batching on the paged pool) and ch07 (weights in f32 and GGUF block formats) on the GPU with synthetic models of real shapes, time the
# matmul kernels alone (tools/gpu_matmul_bench: f16 vs block formats), and print a short summary (tok/s, GB/s,
# % of the measured copy bandwidth).
#
#   scripts/gpu_check.sh                    # everything; the build goes to build/gpu
#   scripts/gpu_check.sh --llama3-8b        # also ch05 on a Llama-3-8B-shaped f16 model (~16 GB written to
#                                           # the scratch dir; needs 20 GB free there and ~18 GB of GPU memory)
#   INFER_GPU_ARCH=80 scripts/gpu_check.sh  # compile for this architecture (default: nvidia-smi's, else 90)
#   INFER_JOBS=8 scripts/gpu_check.sh       # parallel build jobs (default: nproc)
#   INFER_GPU_CHECK_DIR=/tmp/x scripts/gpu_check.sh   # where the models and logs go (default /tmp/infer-gpu-check)
#   scripts/gpu_check.sh --stage-models     # on the machine that has them: copy stories260K (found in the model
#                                           # search order, README "Models") into build/carry-models/, then exit
#   scripts/gpu_check.sh --sanitize         # also the quantized-kernel tests under compute-sanitizer (memcheck,
#                                           # then racecheck; a few minutes more: run it as a separate call)
#
# The golden CUDA tests need stories260K. On the GPU machine it is found in the usual search order
# (INFER_MODELS_DIR, models/, ../shared/models) or in build/carry-models/ (git-ignored; a tool that copies only
# the working tree must be told to carry that folder). The CUDA tests run with INFER_REQUIRE_MODELS=1 and this
# script fails if any CUDA test was skipped: a golden test that did not run is not a pass.
#
# Needs: the Debian packages of scripts/lib/packages.sh (installed when run as root, else the exact apt-get
# command is printed) and the CUDA toolkit (nvcc on PATH or at /usr/local/cuda/bin/nvcc). No network and no
# model files: the models are written here by the project's own `synth` tool (random weights, real shapes).
# Exit status: 0 when the tests passed and ch03, ch05, ch06, ch07 and gpu_matmul_bench ran on the GPU, 1 otherwise.
# Budget: on a 16-core H100/H200 machine, from a clean tree, well under 10 minutes without --llama3-8b and
# --sanitize (the build of the six targets for one architecture is most of it; ch07 and gpu_matmul_bench were
# added without a GPU to time them: an estimated 1-2 minutes together).
set -euo pipefail

with_llama3=0
stage_models=0
sanitize=0
for arg in "$@"; do
  case "$arg" in
    --llama3-8b) with_llama3=1 ;;
    --stage-models) stage_models=1 ;;
    --sanitize) sanitize=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
start_seconds=$SECONDS

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
source "${repo_root}/scripts/lib/packages.sh"
source "${repo_root}/scripts/lib/preset.sh"
source "${repo_root}/scripts/lib/models.sh"

# stories260K for the golden CUDA tests (see the header).
readonly carry_models="${repo_root}/build/carry-models"
readonly stories_files=(stories260K/stories260K.bin stories260K/stories260K_v1.bin stories260K/tok512.bin
                        stories260K/expected_greedy_200.txt)
if [[ $stage_models == 1 ]]; then
  mkdir -p "${carry_models}/stories260K"
  for name in "${stories_files[@]}"; do
    source_path=$(find_model_file "$name") || { echo "gpu_check.sh: ${name} is absent ($(describe_model_search))" >&2; exit 1; }
    [[ "$source_path" -ef "${carry_models}/${name}" ]] || cp -f "$source_path" "${carry_models}/${name}"
    echo "staged ${carry_models}/${name} (from ${source_path})"
  done
  echo "gpu_check.sh: carry build/carry-models to the GPU machine with the working tree; there, run scripts/gpu_check.sh"
  exit 0
fi
if [[ -z "${INFER_MODELS_DIR:-}" && -d "$carry_models" ]]; then
  export INFER_MODELS_DIR="$carry_models"
fi
export INFER_REQUIRE_MODELS=1

say() { printf '\n==> %s\n' "$*"; }
work="${INFER_GPU_CHECK_DIR:-/tmp/infer-gpu-check}"
build=build/gpu
mkdir -p "$work"

say "packages and toolkit"
check_packages
nvcc=$(nvcc_path)
if [[ -z "$nvcc" ]]; then
  echo "gpu_check.sh: no nvcc (PATH or /usr/local/cuda/bin): install the CUDA toolkit first" >&2
  exit 1
fi
"$nvcc" --version | tail -n 1
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader || true
else
  echo "no nvidia-smi: the driver may be missing (the tests will say so and skip)"
fi

# The architecture to compile for: the GPU's compute capability (9.0 -> 90), else 90 (H100/H200).
arch="${INFER_GPU_ARCH:-}"
if [[ -z "$arch" ]] && command -v nvidia-smi >/dev/null; then
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .' || true)
fi
[[ "$arch" =~ ^[0-9]+$ ]] || arch=90
jobs=$(build_jobs)
echo "CUDA architecture: ${arch}   jobs: ${jobs}   build: ${build}   scratch: ${work}"

say "configure + build (cuda preset, CMAKE_CUDA_ARCHITECTURES=${arch})"
reset_build_dir=0
if [[ -f "${build}/CMakeCache.txt" ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "${build}/CMakeCache.txt"; then
  reset_build_dir=1
fi
[[ $reset_build_dir == 1 ]] && rm -rf "${build}/CMakeCache.txt" "${build}/CMakeFiles"
cmake --preset cuda -B "$build" -DCMAKE_CUDA_ARCHITECTURES="$arch" -DINFER_BUILD_BENCH=OFF >"${work}/configure.log" \
  || { cat "${work}/configure.log"; exit 1; }
cmake --build "$build" -j "$jobs" --target cuda_tests ch03_gpu_basics ch05_kv_cache ch06_batching ch07_quantization synth \
  gpu_matmul_bench
echo "built in $((SECONDS - start_seconds)) s"

say "cuda tests (ctest -L cuda)"
tests_status=0
ctest --test-dir "$build" -L cuda -V --timeout 1800 2>&1 | tee "${work}/cuda_tests.log" || tests_status=$?
if grep -q "SKIPPED: no CUDA device" "${work}/cuda_tests.log"; then
  echo "gpu_check.sh: FAILED: the CUDA tests skipped, no usable GPU here (see the SKIPPED line above)" >&2
  exit 1
fi
if grep -q "SKIPPED:" "${work}/cuda_tests.log"; then
  grep "SKIPPED:" "${work}/cuda_tests.log" | sort -u >&2
  echo "gpu_check.sh: FAILED: CUDA tests were skipped (above); stage stories260K with --stage-models" >&2
  tests_status=1
fi

if [[ $sanitize == 1 ]]; then
  say "compute-sanitizer on the quantized kernels' tests (memcheck: out-of-bounds / misaligned; racecheck: shared memory)"
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [[ -x "$sanitizer" ]]; then
    quant_cases='cuda gemv_quant*,cuda gemm_quant*,cuda embed of q*,cuda matmul on q*'
    for tool in memcheck racecheck; do
      timeout 600 "$sanitizer" --tool "$tool" --error-exitcode 9 "${build}/common/cuda_tests" -tc="$quant_cases" 2>&1 |
        tee "${work}/sanitizer_${tool}.log" | tail -n 5 || { echo "gpu_check.sh: compute-sanitizer ${tool} FAILED"; tests_status=1; }
    done
  else
    echo "no compute-sanitizer here: skipped"
  fi
fi

say "synthetic models (tools/synth: random weights, real shapes)"
synth="${build}/tools/synth"
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
ch03="${build}/ch03_gpu_basics/ch03_gpu_basics"
# First run: the full chapter (CPU and GPU ceilings, naive decoding) on the TinyLlama shape.
"$ch03" --device cuda --model "${models[tinyllama-1.1b]}" --weights f16 --max-tokens 32 \
  --json "${work}/ch03_tinyllama_f16.json" 2>&1 | tee "${work}/ch03_tinyllama_f16.log" || ch03_status=$?
# Then naive decoding only, for the smaller shape and for fp32 weights, against the copy bandwidth measured above.
copy_gb_s=$(awk '/device-to-device copy/ {print $3; exit}' "${work}/ch03_tinyllama_f16.log")
for run in "smollm2-135m f16" "smollm2-135m f32" "tinyllama-1.1b f32"; do
  read -r name weights <<<"$run"
  "$ch03" --device cuda --model "${models[$name]}" --weights "$weights" --max-tokens 32 --skip-ceilings \
    ${copy_gb_s:+--bandwidth-gb-s "$copy_gb_s"} --json "${work}/ch03_${name}_${weights}.json" 2>&1 | tee "${work}/ch03_${name}_${weights}.log" || ch03_status=$?
done

say "ch05 on the GPU: naive vs KV-cache decoding"
ch05_status=0
ch05="${build}/ch05_kv_cache/ch05_kv_cache"
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
  "$ch05" --device cuda --model "${models[$name]}" --weights "$weights" --max-tokens "$tokens" --naive-max "$naive" \
    --repeat 3 --json "${work}/ch05_${name}_${weights}.json" 2>&1 | tee "${work}/ch05_${name}_${weights}.log" \
    || ch05_status=$?
done

say "ch07 on the GPU: f32 vs Q8_0 / Q4_1 / Q4_0 blocks (and the file's own Q4_1, 'native')"
# SmolLM2-135M's shape written as Q4_1 blocks (as the real default model is shipped); random weights, so the
# perplexity / KL / top-1 columns only show that every format runs; speed and GB/s are the point here.
ch07_status=0
ch07="${build}/ch07_quantization/ch07_quantization"
"$ch07" --device cuda --model "${models[smollm2-135m-q4_1]}" --formats f32,q8_0,q4_1,q4_0,native --max-tokens 64 \
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
timeout 600 "${build}/ch06_batching/ch06_batching" --device cuda --model "${models[smollm2-135m-q4_1]}" --weights f32 \
  --main-only --requests 64 --solo 4 ${copy_gb_s:+--bandwidth-gb-s "$copy_gb_s"} \
  --json "${work}/ch06_smollm2-135m.json" 2>&1 | tee "${work}/ch06_smollm2-135m.log" || ch06_status=$?
if ! grep -q '^  gpu ' "${work}/ch06_smollm2-135m.log"; then
  echo "gpu_check.sh: ch06 did not run on the GPU (no 'gpu' line in its header)" >&2
  ch06_status=1
fi

say "matmul kernels alone: decode GEMV GB/s (f16 vs Q8_0 / Q4_1 / Q4_0 blocks) and the GEMM paths"
bench_status=0
"${build}/tools/gpu_matmul_bench" --shapes 14336x4096,1536x576,49152x576 --dtypes f16,q8_0,q4_1,q4_0 --tokens 1,128 \
  --repeat 20 2>&1 | tee "${work}/gpu_matmul_bench.log" || bench_status=$?

say "summary"
echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo unknown)  (arch ${arch})"
echo "tests:"
grep -E '^\[doctest\] (test cases|assertions)|tests passed|tests failed|SKIPPED' "${work}/cuda_tests.log" | sed 's/^/  /' || true
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
echo "logs and JSON: ${work}   (total $((SECONDS - start_seconds)) s)"
if [[ $tests_status -ne 0 || $ch03_status -ne 0 || $ch05_status -ne 0 || $ch06_status -ne 0 || $ch07_status -ne 0 || $bench_status -ne 0 ]]; then
  echo "gpu_check.sh: FAILED (tests status ${tests_status}, ch03 status ${ch03_status}, ch05 status ${ch05_status}," \
       "ch06 status ${ch06_status}, ch07 status ${ch07_status}, gpu_matmul_bench status ${bench_status})"
  exit 1
fi
echo "gpu_check.sh: OK"
