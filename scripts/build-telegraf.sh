#!/usr/bin/env bash
# Builds Telegraf from the Go module proxy with only the plugins the peer benchmark
# (bench/peer.ts) uses: inputs.http_listener_v2, parsers.json_v2, outputs.influxdb_v2.
# Telegraf's `custom` build tag drops every plugin that is not named by its own tag, so the binary
# and the build stay small. No Docker, no source patches.
#
# Usage: scripts/build-telegraf.sh [version]   (default v1.37.2, or $TELEGRAF_VERSION)
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/telegraf/<version>/telegraf, outside
# the repository and per version, so only a fresh machine pays the build (about a minute on 2 cores
# from nothing: 60 modules, 350 MB of Go modules, 190 MB of build cache). The path is the last line
# of stdout; progress goes to stderr.
# Idempotent, and safe to run concurrently (flock); the binary appears by an atomic rename.
#
# Needs go >= the `go` line of telegraf's go.mod (1.25 for v1.37.x). No cgo.
#
# Environment (all optional):
#   TELEGRAF_VERSION     github.com/influxdata/telegraf module version (default v1.37.2)
#   TELEGRAF_CACHE_ROOT  default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/telegraf
#   TELEGRAF_BUILD_JOBS  parallel go packages (default: all online CPUs)
#   TELEGRAF_FORCE=1     rebuild even when the binary exists
#   GOPATH, GOCACHE, GOMODCACHE are honoured.
#
# Why the build looks like this:
#  * A scratch module requires telegraf and names cmd/telegraf from a `tools` file; `go build
#    -mod=mod` then fetches only the modules the tagged package graph imports (`go mod tidy` would
#    resolve and download the dependencies of every plugin, whatever the tags).
#  * Version stamped through internal.Version so `telegraf --version` says which.
set -euo pipefail

VERSION="${1:-${TELEGRAF_VERSION:-v1.37.2}}"
[[ "$VERSION" == v* ]] || VERSION="v$VERSION"
CACHE_ROOT="${TELEGRAF_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/telegraf}"
OUT_DIR="$CACHE_ROOT/$VERSION"
OUT="$OUT_DIR/telegraf"
JOBS="${TELEGRAF_BUILD_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
TAGS="custom,inputs.http_listener_v2,parsers.json_v2,outputs.influxdb_v2"

BUILD_NAME=build-telegraf
VERSION_ARGS=(--version)
FORCE="${TELEGRAF_FORCE:-0}"
# shellcheck source=lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

exit_if_built
require_go 25 "telegraf $VERSION"

lock_build

WORK="$OUT_DIR/build"
mkdir -p "$WORK"
cd "$WORK"
started=$(date +%s)

# ---- 1. scratch module ------------------------------------------------------------------------
cat >go.mod <<EOF
module telegraf-build

go 1.25.0

require github.com/influxdata/telegraf $VERSION
EOF
rm -f go.sum
cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "github.com/influxdata/telegraf/cmd/telegraf"
EOF
# Never download another Go toolchain: the installed one is what we verified above.
export GOTOOLCHAIN=local
export CGO_ENABLED=0

# ---- 2. telegraf ------------------------------------------------------------------------------
log "building telegraf $VERSION (tags $TAGS) with $JOBS jobs"
if ! go build -mod=mod -p "$JOBS" -tags "$TAGS" \
  -trimpath -gcflags=all=-dwarf=false \
  -ldflags "-s -w -X github.com/influxdata/telegraf/internal.Version=${VERSION#v} -X github.com/influxdata/telegraf/internal.Commit=gomodproxy" \
  -o "$WORK/telegraf.tmp" github.com/influxdata/telegraf/cmd/telegraf >"$WORK/go-build.log" 2>&1; then
  tail -n 40 "$WORK/go-build.log" >&2
  die "go build failed (log: $WORK/go-build.log)"
fi
"$WORK/telegraf.tmp" --version >/dev/null || die "the built telegraf does not run"
mv -f "$WORK/telegraf.tmp" "$OUT"
log "built $("$OUT" --version) in $(($(date +%s) - started)) s: $OUT ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
