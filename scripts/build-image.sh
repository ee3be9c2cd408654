#!/usr/bin/env bash
# Builds the operator's container image from the repository's Dockerfile with BuildKit, cached by
# the inputs that change it: when an image with the tag exists and was built from the same inputs,
# it returns at once. The image reference is the last line of stdout; progress goes to stderr.
#
# Usage: scripts/build-image.sh [--tag REF] [--ca-file PEM] [--host DOCKER_HOST] [--docker CLIENT]
#                               [--network MODE] [--force]
#
#   --tag REF        the image reference (env KUBE_AUDIT_IMAGE); default
#                    kube-audit-operator:<package.json version>-<first 12 hex digits of the inputs hash>,
#                    also tagged kube-audit-operator:<package.json version>, the chart's default
#                    image (the latest build of that version)
#   --ca-file PEM    an extra CA bundle the build trusts for npm's downloads (env BUILD_CA_FILE),
#                    e.g. a corporate TLS-intercepting proxy's; passed as the build secret
#                    `build-ca`, which reaches no layer of the image
#   --host URL       the Docker engine's socket, e.g. unix:///run/docker.sock (env DOCKER_HOST)
#   --docker CLIENT  the docker client (env DOCKER; default `docker`); it must do BuildKit builds:
#                    Docker 23 or later with the buildx plugin, or Debian's docker.io 20.10
#   --network MODE   the build containers' network (env BUILD_NETWORK), e.g. host for an engine
#                    started with --bridge=none
#   --force          build even when the image exists (env IMAGE_FORCE=1)
#
# The inputs: Dockerfile, .dockerignore, package.json, package-lock.json, tsconfig*.json,
# scripts/bundle-kube-client.ts and every file under src/, names and contents. Their hash is also
# the image's label dev.kube-audit.inputs, which is how a given --tag is known to be current. The
# base images are not part of it: --force rebuilds on newer ones.
set -euo pipefail

BUILD_NAME=build-image
log() { printf '[%s] %s\n' "$BUILD_NAME" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

TAG="${KUBE_AUDIT_IMAGE:-}"
CA_FILE="${BUILD_CA_FILE:-}"
DOCKER="${DOCKER:-docker}"
NETWORK="${BUILD_NETWORK:-}"
FORCE="${IMAGE_FORCE:-0}"
while [[ $# -gt 0 ]]; do
  case "$1" in
  --tag) TAG="${2:?--tag needs a value}" && shift 2 ;;
  --ca-file) CA_FILE="${2:?--ca-file needs a value}" && shift 2 ;;
  --host) export DOCKER_HOST="${2:?--host needs a value}" && shift 2 ;;
  --docker) DOCKER="${2:?--docker needs a value}" && shift 2 ;;
  --network) NETWORK="${2:?--network needs a value}" && shift 2 ;;
  --force) FORCE=1 && shift ;;
  -h | --help) usage 0 ;;
  *) log "unknown argument: $1" && usage ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v "$DOCKER" >/dev/null 2>&1 || die "no docker client '$DOCKER': install Docker, or give --docker"
if [[ -n "$CA_FILE" ]]; then
  [[ -r "$CA_FILE" ]] || die "--ca-file $CA_FILE: not a readable file"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$CA_FILE" || die "--ca-file $CA_FILE: no PEM certificate in it"
fi

# ---- the inputs' hash -------------------------------------------------------------------------
# Each file as its path and the hash of its content, sorted by path in the C locale: the same on
# every machine and independent of timestamps and checkout order.
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }
inputs_hash() {
  {
    printf '%s\n' Dockerfile .dockerignore package.json package-lock.json tsconfig*.json scripts/bundle-kube-client.ts
    find src -type f
  } | LC_ALL=C sort -u | while IFS= read -r file; do
    [[ -f "$file" ]] || die "input $file is missing"
    printf '%s %s\n' "$(sha256 <"$file" | cut -d' ' -f1)" "$file"
  done | sha256 | cut -d' ' -f1
}
HASH="$(inputs_hash)"
VERSION="$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' package.json | head -n 1)"
[[ -n "$VERSION" ]] || die "no version in package.json"
# Without --tag, the chart's default image (kube-audit-operator:<appVersion>) names the build too.
ALIAS=""
if [[ -z "$TAG" ]]; then
  TAG="kube-audit-operator:$VERSION-${HASH:0:12}"
  ALIAS="kube-audit-operator:$VERSION"
fi
LABEL=dev.kube-audit.inputs

# ---- cached? ----------------------------------------------------------------------------------
if ! "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  die "no Docker engine answers at ${DOCKER_HOST:-the default socket}: start one, or give --host"
fi
exit_if_built() {
  [[ "$FORCE" != 1 ]] || return 0
  local current
  current="$("$DOCKER" image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$TAG" 2>/dev/null || true)"
  if [[ "$current" == "$HASH" ]]; then
    [[ -z "$ALIAS" ]] || "$DOCKER" tag "$TAG" "$ALIAS"
    log "${1:-cached}: $TAG${ALIAS:+ (also $ALIAS)} (inputs $HASH)"
    echo "$TAG"
    exit 0
  fi
}
exit_if_built

# One build at a time per machine (parallel test set-ups, two checkouts): the second waits, then
# finds the image the first built.
LOCK_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator"
mkdir -p "$LOCK_DIR"
exec 9>"$LOCK_DIR/build-image.lock"
if ! flock -n 9; then
  log "another image build is running; waiting for it"
  flock 9
fi
exit_if_built "built by a concurrent run"

# ---- build ------------------------------------------------------------------------------------
args=(build --progress=plain --tag "$TAG" --label "$LABEL=$HASH" --file Dockerfile)
[[ -n "$ALIAS" ]] && args+=(--tag "$ALIAS")
[[ -n "$CA_FILE" ]] && args+=(--secret "id=build-ca,src=$CA_FILE")
[[ -n "$NETWORK" ]] && args+=(--network "$NETWORK")
log "building $TAG with $DOCKER ($("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null)) on ${DOCKER_HOST:-the default engine}"
started=$(date +%s)
# BuildKit: the Dockerfile mounts the CA as a secret, which the legacy builder cannot do.
if ! DOCKER_BUILDKIT=1 "$DOCKER" "${args[@]}" . >&2; then
  die "docker build failed (above). Behind a TLS-intercepting proxy, give its CA with --ca-file; a client without BuildKit (a Docker 23+ CLI lacking the buildx plugin) needs the plugin, or --docker naming another client"
fi
"$DOCKER" image inspect "$TAG" >/dev/null 2>&1 || die "the build reported success but $TAG does not exist"
log "built $TAG${ALIAS:+ (also $ALIAS)} in $(($(date +%s) - started)) s ($("$DOCKER" image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1 / 1e6}'))"
echo "$TAG"
