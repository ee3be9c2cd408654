#!/usr/bin/env bash
# Fetches a real etcd server for the control-plane tests (test/harness/controlplane.ts): Debian's
# etcd-server package when apt offers the wanted version (seconds, no root needed), otherwise a
# build of the etcd server Go module (minutes).
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/etcd/v<version>/etcd, outside the
# repository and per version. The path is the last line of stdout; progress goes to stderr.
# Idempotent, and safe to run concurrently (flock).
#
# Environment (all optional):
#   ETCD_VERSION      the Debian package's upstream version to take (default 3.4.23: bookworm's;
#                     etcd 3.4 is what kube-apiserver 1.18 was released against, and current
#                     releases still talk to it)
#   ETCD_GO_VERSION   go.etcd.io/etcd/server/v3 version built when apt cannot give ETCD_VERSION
#                     (default 3.5.21: etcd 3.4 is not on the Go module proxy under a usable path)
#   ETCD_CACHE_ROOT   default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/etcd
#   ETCD_FORCE=1      fetch again even when the binary exists
set -euo pipefail

VERSION="${ETCD_VERSION:-3.4.23}"
GO_VERSION="${ETCD_GO_VERSION:-3.5.21}"
CACHE_ROOT="${ETCD_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/etcd}"

BUILD_NAME=get-etcd
# shellcheck source=lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"
usable() { [[ -x "$1" && "${ETCD_FORCE:-0}" != 1 ]] && "$1" --version >/dev/null 2>&1; }

for candidate in "$CACHE_ROOT/v$VERSION/etcd" "$CACHE_ROOT/v$GO_VERSION/etcd"; do
  if usable "$candidate"; then
    log "cached: $("$candidate" --version | head -n 1) at $candidate"
    echo "$candidate"
    exit 0
  fi
done

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then
  log "another run is fetching etcd; waiting for it"
  flock 9
fi
started=$(date +%s)

# ---- 1. Debian's package ----------------------------------------------------------------------
from_apt() {
  command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || return 1
  local candidate
  candidate="$(apt-cache policy etcd-server 2>/dev/null | sed -n 's/^ *Candidate: //p')"
  # A fresh machine has no package lists yet; only root may fetch them.
  if [[ -z "$candidate" || "$candidate" == "(none)" ]] && [[ "$(id -u)" == 0 ]]; then
    log "apt-get update (no package lists yet)"
    apt-get update -qq >/dev/null 2>&1 || true
    candidate="$(apt-cache policy etcd-server 2>/dev/null | sed -n 's/^ *Candidate: //p')"
  fi
  # Debian versions look like 3.4.23-4+b4: the upstream part decides.
  if [[ "${candidate%%-*}" != "$VERSION" ]]; then
    log "apt offers etcd-server '${candidate:-none}', not $VERSION"
    return 1
  fi
  local out_dir="$CACHE_ROOT/v$VERSION" work
  mkdir -p "$out_dir"
  work="$(mktemp -d "$out_dir/apt.XXXXXX")"
  log "downloading etcd-server $candidate with apt-get (no install)"
  # apt-get download writes into the current directory and needs no root; as root it warns that
  # it cannot drop privileges for a directory _apt cannot write, which is harmless here.
  if ! (cd "$work" && apt-get download "etcd-server=$candidate") >"$work/apt.log" 2>&1; then
    tail -n 20 "$work/apt.log" >&2
    rm -rf "$work"
    return 1
  fi
  dpkg-deb -x "$work"/etcd-server_*.deb "$work/root"
  "$work/root/usr/bin/etcd" --version >/dev/null || {
    rm -rf "$work"
    return 1
  }
  mv -f "$work/root/usr/bin/etcd" "$out_dir/etcd"
  rm -rf "$work"
  echo "$out_dir/etcd"
}

# ---- 2. the Go module -------------------------------------------------------------------------
from_go() {
  command -v go >/dev/null 2>&1 || die "neither apt nor go can provide etcd: install Go (https://go.dev/dl/)"
  local out_dir="$CACHE_ROOT/v$GO_VERSION" work
  mkdir -p "$out_dir"
  work="$out_dir/build"
  rm -rf "$work"
  mkdir -p "$work"
  # go install pkg@version refuses etcd's go.mod (it has replace lines): a scratch module names
  # the server's main package from a tools file instead.
  cat >"$work/go.mod" <<EOF
module etcd-build

go 1.23

require go.etcd.io/etcd/server/v3 v$GO_VERSION
EOF
  cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  log "building go.etcd.io/etcd/server/v3 v$GO_VERSION"
  if ! (cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod tidy &&
    GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o etcd.tmp go.etcd.io/etcd/server/v3) \
    >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    die "building etcd v$GO_VERSION failed (log: $work/build.log)"
  fi
  "$work/etcd.tmp" --version >/dev/null || die "the built etcd does not run"
  mv -f "$work/etcd.tmp" "$out_dir/etcd"
  rm -rf "$work"
  echo "$out_dir/etcd"
}

if ! out="$(from_apt)"; then
  log "falling back to building etcd from the Go module proxy"
  out="$(from_go)"
fi
log "$("$out" --version | head -n 1) ready in $(($(date +%s) - started)) s: $out"
echo "$out"
