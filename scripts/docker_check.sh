#!/usr/bin/env bash
# Checks the docker compose environment end to end, as a new user would meet it (docker/README.md):
#
#   1. a Docker engine: the running one, or Debian's docker.io started here with --bridge=none
#      --iptables=false (no container network of its own: every build and container uses host networking);
#   2. the base image of docker/Dockerfile: pulled, or, when no registry can be reached, made with debootstrap
#      (bookworm, minbase) and imported under the name the Dockerfile uses;
#   3. the CPU image, built exactly as the compose file builds it (its context, Dockerfile and image name,
#      read with `docker-compose config`); the build runs scripts/test.sh, so the unit tests run in it;
#   4. the `run` service's command in that image with the host's models/ mounted (read-only) and a fresh
#      out/ folder, and every chapter's JSON checked in out/;
#   5. the engine stopped again if this script started it.
#
#   scripts/docker_check.sh              # exit 0: every step passed; the last line says so, or names the step
#   INFER_DOCKER_KEEP=1 scripts/docker_check.sh   # leave an engine started here running (for a second run)
#
# Needs root (it installs docker.io, docker-compose and debootstrap with apt-get when missing and starts
# dockerd). Its files go to build/docker-check/ (engine log, data root, debootstrap tree, out/).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
work="${repo_root}/build/docker-check"
mkdir -p "$work"
compose_file=docker/docker-compose.yml
start=$SECONDS

say() { printf '\n==> [%4ds] %s\n' $((SECONDS - start)) "$*"; }
die() { echo "docker_check: FAILED: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts dockerd)"

# ---- 1. Packages and the engine ----------------------------------------------------------------------
say "packages: docker.io, docker-compose, debootstrap"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi
echo "client: $(docker --version)   engine binary: $(dockerd --version)"

started_pid=""
stop_engine() {
  if [[ -n "$started_pid" && "${INFER_DOCKER_KEEP:-0}" != 1 ]]; then
    echo "docker_check: stopping the engine it started (pid ${started_pid})"
    kill "$started_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$started_pid" 2>/dev/null || break; sleep 1; done
    started_pid=""
  fi
}
trap stop_engine EXIT

if docker info >/dev/null 2>&1; then
  say "engine: already running ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}'))"
else
  say "engine: starting dockerd --bridge=none --iptables=false (log: ${work}/dockerd.log)"
  # overlay2 when the kernel allows it here, else vfs (slower, works inside a container).
  for driver in overlay2 vfs; do
    dockerd --bridge=none --iptables=false --ip6tables=false --storage-driver="$driver" \
      --data-root "${work}/data-root-${driver}" --pidfile "${work}/dockerd.pid" \
      >"${work}/dockerd.log" 2>&1 &
    started_pid=$!
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      kill -0 "$started_pid" 2>/dev/null || break
      sleep 1
    done
    if docker info >/dev/null 2>&1; then break; fi
    echo "dockerd with storage driver ${driver} did not come up:"; tail -n 5 "${work}/dockerd.log"
    stop_engine
  done
  docker info >/dev/null 2>&1 || die "no Docker engine could be started (${work}/dockerd.log)"
  echo "engine: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}') (pid ${started_pid})"
fi

# ---- 2. What the compose file builds and runs -----------------------------------------------------------
say "compose file: ${compose_file} (docker-compose config)"
config=$(docker-compose -f "$compose_file" config) || die "docker-compose cannot read ${compose_file}"
# context, dockerfile, image and command of the `run` service, one per line
mapfile -t run_service < <(python3 -c '
import sys, yaml
service = yaml.safe_load(sys.stdin)["services"]["run"]
print(service["build"]["context"]); print(service["build"].get("dockerfile", "Dockerfile")); print(service["image"])
print(" ".join(service["command"]) if isinstance(service["command"], list) else service["command"])
' <<<"$config") || die "the compose file has no buildable 'run' service"
context="${run_service[0]}" dockerfile="${run_service[1]}" image="${run_service[2]}" command="${run_service[3]}"
echo "run service: image ${image}, context ${context}, dockerfile ${dockerfile}, command: ${command}"
base=$(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "${context}/${dockerfile}" | head -n1)
[[ -n "$base" ]] || die "no FROM line in ${dockerfile}"

# ---- 3. The base image ----------------------------------------------------------------------------------
say "base image ${base}"
if docker image inspect "$base" >/dev/null 2>&1; then
  echo "present"
elif timeout 60 docker pull "$base" >"${work}/pull.log" 2>&1; then
  echo "pulled"
else
  echo "cannot pull it ($(tail -n1 "${work}/pull.log")); making it with debootstrap (bookworm, minbase)"
  [[ "$base" == debian:bookworm* ]] || die "only debian:bookworm can be made here; the Dockerfile wants ${base}"
  rootfs="${work}/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"${work}/debootstrap.log" 2>&1 \
    || { tail -n 20 "${work}/debootstrap.log"; die "debootstrap failed (${work}/debootstrap.log)"; }
  rm -rf "${rootfs}/var/cache/apt/archives/"*.deb "${rootfs}/var/lib/apt/lists/"*
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null || die "docker import of the debootstrap tree failed"
  rm -rf "$rootfs"
  echo "imported as ${base}"
fi

# ---- 4. The CPU image, as compose builds it ------------------------------------------------------------
say "build ${image} (docker build --network host -f ${dockerfile} ${context}; runs scripts/test.sh inside)"
build_start=$SECONDS
DOCKER_BUILDKIT=0 docker build --network host -f "${context}/${dockerfile}" -t "$image" "$context" 2>&1 \
  | tee "${work}/build.log" | grep -E '^(Step [0-9]+/[0-9]+ :|Successfully|[0-9]+% tests passed|The following tests|.*\(Failed\)|.*\(Skipped\))' \
  || true
[[ ${PIPESTATUS[0]} -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1 \
  || { tail -n 40 "${work}/build.log"; die "docker build of ${image} failed (${work}/build.log)"; }
echo "built ${image} in $((SECONDS - build_start)) s"

# ---- 5. The run service's command with the host's models/ ---------------------------------------------
say "run: ${command} (models/ mounted read-only, out/ -> ${work}/out)"
models=$(cd models 2>/dev/null && pwd -P || true)
mounts=()
if [[ -n "$models" ]]; then
  mounts+=(-v "${models}:/src/models:ro")
  echo "models: ${models} ($(ls "$models" | paste -sd ' '))"
else
  echo "models: none on the host (the chapters fall back to a synthetic model)"
fi
rm -rf "${work}/out" && mkdir -p "${work}/out"
run_start=$SECONDS
# shellcheck disable=SC2086  # the command is the compose file's word list
docker run --rm --network host "${mounts[@]}" -v "${work}/out:/src/out" "$image" $command \
  >"${work}/run.log" 2>&1 || { tail -n 40 "${work}/run.log"; die "the run service's command failed (${work}/run.log)"; }
echo "ran in $((SECONDS - run_start)) s; its tables:"
grep -E '^[a-z_0-9][^|]* +[|]' "${work}/run.log" | head -n 20 | sed 's/^/  /' || true

say "chapter JSON in out/"
chapters=$(sed -n 's/^ *add_subdirectory(\(ch[0-9][0-9]_[A-Za-z0-9_]*\)).*/\1/p' CMakeLists.txt)
[[ -n "$chapters" ]] || die "no chapter directories in CMakeLists.txt"
bad=0
for chapter in $chapters; do
  json="${work}/out/${chapter}.json"
  if [[ -s "$json" ]] && python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$json" 2>/dev/null; then
    echo "  ${chapter}.json: valid JSON, $(stat -c %s "$json") bytes"
  else
    echo "  ${chapter}.json: MISSING or not JSON"; bad=1
  fi
done
[[ $bad -eq 0 ]] || die "a chapter's JSON is missing from out/ (${work}/run.log)"

stop_engine
echo "docker_check: OK: image ${image} built (its unit tests passed) and the run service wrote every chapter's JSON, in $((SECONDS - start)) s"
