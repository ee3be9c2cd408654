#!/usr/bin/env bash
# Builds a real InfluxDB OSS server (influxd) from the Go module proxy, plus crates.io for Flux's
# Rust library, for the integration tests and benchmarks. No Docker, no source patches.
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/influxd/<version>/influxd, outside
# the repository and per version, so only a fresh machine pays the build (6 to 7 minutes on 2
# cores from nothing: 1.6 GB of Go modules, 1.4 GB of build cache). The path is the last line of
# stdout; progress goes to stderr.
# Idempotent, and safe to run concurrently (flock).
#
# Needs go >= 1.23, cargo/rustc, a C compiler (cgo) and the system pkg-config; pkg-config is
# installed with apt-get when missing and running as root.
#
# Environment (all optional):
#   INFLUXD_VERSION     github.com/influxdata/influxdb/v2 module version (default v2.7.12)
#   INFLUXD_CACHE_ROOT  default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/influxd
#   INFLUXD_BUILD_JOBS  parallel go packages and cargo jobs (default: all online CPUs)
#   INFLUXD_NICE        nice level of the build (default 0: CI wants it done, not polite)
#   INFLUXD_FORCE=1     rebuild even when the binary exists
#   GOPATH, GOCACHE, GOMODCACHE, CARGO_HOME are honoured.
#
# Why the build looks like this:
#  * `go install .../cmd/influxd@version` refuses influxdb's go.mod because it has a `replace`;
#    a scratch module repeats the replace and names cmd/influxd from a `tools` file.
#  * libflux (Rust) is compiled by github.com/influxdata/pkg-config, a pkg-config wrapper cgo
#    calls; it copies flux's sources to $GOCACHE/pkgconfig and runs cargo there, then hands off to
#    the system pkg-config.
#  * flux pins Rust 1.72 in rust-toolchain.toml; RUSTUP_TOOLCHAIN selects the installed one.
#    flux-core denies warnings, so newer rustc lints would fail the build: a RUSTC_WRAPPER adds
#    --cap-lints=warn (RUSTFLAGS does not reach build-script dependencies with --target).
#  * No `assets` tag: the web UI bundle is not in the module zip; every HTTP API works.
set -euo pipefail

VERSION="${INFLUXD_VERSION:-v2.7.12}"
CACHE_ROOT="${INFLUXD_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/influxd}"
OUT_DIR="$CACHE_ROOT/$VERSION"
OUT="$OUT_DIR/influxd"
JOBS="${INFLUXD_BUILD_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
NICE="${INFLUXD_NICE:-0}"
BUILD_NAME=build-influxd
VERSION_ARGS=(version)
FORCE="${INFLUXD_FORCE:-0}"
# shellcheck source=lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

exit_if_built

# ---- tools ------------------------------------------------------------------------------------
if ! command -v pkg-config >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing pkg-config (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed; install pkg-config by hand"
    apt-get install -y -qq --no-install-recommends pkg-config >/dev/null ||
      die "apt-get install pkg-config failed; install it by hand"
    command -v pkg-config >/dev/null 2>&1 || die "pkg-config was installed but is not on PATH"
  else
    die "pkg-config is missing: install it (Debian/Ubuntu: sudo apt-get install pkg-config); the libflux build hands off to it"
  fi
fi
require_go 23 "influxdb $VERSION"
command -v cargo >/dev/null 2>&1 || die "cargo is missing: install Rust with rustup (https://rustup.rs)"
command -v "${CC:-cc}" >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 ||
  die "no C compiler: cgo needs gcc or cc (Debian/Ubuntu: apt-get install gcc)"

lock_build

WORK="$OUT_DIR/build"
mkdir -p "$WORK/bin"
cd "$WORK"
run() { nice -n "$NICE" "$@"; }
started=$(date +%s)

# ---- 1. scratch module ------------------------------------------------------------------------
cat >go.mod <<EOF
module influxd-build

go 1.23.0

require github.com/influxdata/influxdb/v2 $VERSION

// Repeated from influxdb's own go.mod: replaces only apply in the main module.
replace github.com/nats-io/nats-streaming-server v0.11.2 => github.com/influxdata/nats-streaming-server v0.11.3-0.20201112040610-c277f7560803
EOF
cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "github.com/influxdata/influxdb/v2/cmd/influxd"
	_ "github.com/influxdata/pkg-config"
)
EOF
# Never download another Go toolchain: the installed one is what we verified above.
export GOTOOLCHAIN=local
log "resolving modules for influxdb $VERSION (go mod tidy; about 1.6 GB on a fresh machine)"
# Hundreds of "go: downloading" lines: kept in a log, shown only when something fails.
if ! run go mod tidy >"$WORK/go-mod.log" 2>&1; then
  tail -n 40 "$WORK/go-mod.log" >&2
  die "go mod tidy failed (log: $WORK/go-mod.log)"
fi
log "modules ready after $(($(date +%s) - started)) s"

# ---- 2. the pkg-config wrapper, at the version influxdb's go.mod pins ---------------------------
log "building the github.com/influxdata/pkg-config wrapper"
run go build -p "$JOBS" -o "$WORK/bin/pkg-config" github.com/influxdata/pkg-config

# ---- 3. rustc wrapper: newer-rustc lints stay warnings ------------------------------------------
# Chains a caller's RUSTC_WRAPPER (sccache); cargo already passes --cap-lints=allow for registry
# crates, and rustc rejects the flag twice.
cat >"$WORK/bin/rustc-caplints" <<EOF
#!/bin/sh
inner='${RUSTC_WRAPPER:-}'
rustc="\$1"; shift
for a in "\$@"; do
  case "\$a" in --cap-lints|--cap-lints=*) exec \${inner} "\$rustc" "\$@";; esac
done
exec \${inner} "\$rustc" --cap-lints=warn "\$@"
EOF
chmod +x "$WORK/bin/rustc-caplints"
export RUSTC_WRAPPER="$WORK/bin/rustc-caplints"
if [[ -z "${RUSTUP_TOOLCHAIN:-}" ]] && command -v rustup >/dev/null 2>&1; then
  toolchain="$(cd / && rustup show active-toolchain 2>/dev/null | awk 'NR==1{print $1}')"
  if [[ -n "$toolchain" ]]; then export RUSTUP_TOOLCHAIN="$toolchain"; fi
fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-$JOBS}"
export PKG_CONFIG="$WORK/bin/pkg-config"
# The wrapper writes cargo's output here and nowhere else.
export PKG_CONFIG_LOG="$WORK/pkg-config.log"
: >"$PKG_CONFIG_LOG"

# ---- 4. influxd -------------------------------------------------------------------------------
# Tags as upstream's GNUmakefile (COMMON_TAGS); version stamped so `influxd version` says which.
log "building influxd $VERSION with $JOBS jobs (libflux with cargo, then go build)"
# -dwarf=false: the binary is stripped (-s -w) anyway; not generating debug info saves compile time.
if ! run go build -p "$JOBS" \
  -tags sqlite_foreign_keys,sqlite_json \
  -gcflags=all=-dwarf=false \
  -ldflags "-s -w -X main.version=$VERSION -X main.commit=gomodproxy" \
  -o "$WORK/influxd.tmp" github.com/influxdata/influxdb/v2/cmd/influxd; then
  log "go build failed; the last lines of the libflux build ($PKG_CONFIG_LOG):"
  tail -n 40 "$PKG_CONFIG_LOG" >&2 || true
  exit 1
fi
"$WORK/influxd.tmp" version >/dev/null || die "the built influxd does not run"
mv -f "$WORK/influxd.tmp" "$OUT"
log "built $("$OUT" version) in $(($(date +%s) - started)) s: $OUT ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
