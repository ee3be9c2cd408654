#!/usr/bin/env bash
# Builds a real kube-apiserver from the k8s.io/kubernetes Go module, for the control-plane tests
# (test/harness/controlplane.ts). No Docker, no source patches.
#
# Usage: scripts/build-kube-apiserver.sh <version>   e.g. 1.35.4 or 1.18.19
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/kube-apiserver/v<version>/kube-apiserver,
# outside the repository and per version, so only a fresh machine pays the build. The path is the
# last line of stdout; progress goes to stderr. Idempotent, and safe to run concurrently (flock).
#
# Needs go >= 1.24 (CGO is not used).
#
# Environment (all optional):
#   KUBE_APISERVER_CACHE_ROOT  default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/kube-apiserver
#   KUBE_APISERVER_BUILD_JOBS  parallel go packages (default: all online CPUs)
#   KUBE_APISERVER_NICE        nice level of the build (default 0)
#   KUBE_APISERVER_FORCE=1     rebuild even when the binary exists
#   GOPATH, GOCACHE, GOMODCACHE are honoured.
#
# Why the build looks like this:
#  * k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver, ...) at
#    v0.0.0 and replaces them by ./staging/src/... directories, which only work inside the
#    kubernetes repository. Each staging module is published as v0.<minor>.<patch>: a scratch
#    module requires k8s.io/kubernetes and replaces every staging module by that version.
#  * `replace` only applies in the main module, so kubernetes' other replace lines (1.18 pins
#    about 300 third-party modules that way; current releases none) are repeated verbatim.
#  * The version is stamped as upstream's hack/lib/version.sh does, so /version and
#    `kube-apiserver --version` say which release this is (clients decide on it).
#  * Releases before 1.2x do not ship pkg/generated/openapi/zz_generated.openapi.go in the module:
#    upstream's `make` generates it first (build/root/Makefile.generated_files). The script then
#    does the same: openapi-gen of the kube-openapi version kubernetes pins, over the packages
#    with a `+k8s:openapi-gen=` tag (kubernetes and its staging modules but code-generator and
#    sample-apiserver, as the Makefile selects them), into a writable copy of the kubernetes
#    module that the scratch module's replace points at (go build -overlay refuses files in the
#    module cache). Its API rule report must equal upstream's api/api-rules list, as upstream's
#    make demands: that shows the generator saw the same types.
set -euo pipefail

VERSION="${1:-${KUBE_APISERVER_VERSION:-}}"
VERSION="${VERSION#v}"
[[ "$VERSION" =~ ^1\.([0-9]+)\.([0-9]+)$ ]] || {
  echo "usage: $0 <version>   (e.g. 1.35.4)" >&2
  exit 2
}
MINOR="${BASH_REMATCH[1]}"
STAGING_VERSION="v0.${MINOR}.${BASH_REMATCH[2]}"
CACHE_ROOT="${KUBE_APISERVER_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/kube-apiserver}"
OUT_DIR="$CACHE_ROOT/v$VERSION"
OUT="$OUT_DIR/kube-apiserver"
JOBS="${KUBE_APISERVER_BUILD_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
NICE="${KUBE_APISERVER_NICE:-0}"
BUILD_NAME=build-kube-apiserver
VERSION_ARGS=(--version)
FORCE="${KUBE_APISERVER_FORCE:-0}"
# shellcheck source=lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

exit_if_built
require_go 24 "kube-apiserver $VERSION (as built here)"

lock_build

WORK="$OUT_DIR/build"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
run() { nice -n "$NICE" "$@"; }
started=$(date +%s)
# Never download another Go toolchain: the installed one is what we verified above.
export GOTOOLCHAIN=local

# ---- 1. scratch module ------------------------------------------------------------------------
log "fetching k8s.io/kubernetes v$VERSION"
# One field of `go mod download -json` for a module@version: its go.mod file or its directory.
download() { go mod download -json "$1" | sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}$/\1/p"; }
gomod="$(download "k8s.io/kubernetes@v$VERSION" GoMod)"
kdir="$(download "k8s.io/kubernetes@v$VERSION" Dir)"
[[ -f "$gomod" && -d "$kdir" ]] || die "go mod download k8s.io/kubernetes@v$VERSION failed"

{
  printf 'module kube-apiserver-build\n\ngo 1.24\n\nrequire k8s.io/kubernetes v%s\n\n' "$VERSION"
  # Every replace of kubernetes' go.mod, block or single-line form, comments dropped: staging
  # directories become the published v0.<minor>.<patch>, everything else is kept as it is.
  awk -v staging="$STAGING_VERSION" '
    function emit(line,   parts) {
      sub(/\/\/.*/, "", line)
      gsub(/^[ \t]+|[ \t]+$/, "", line)
      if (line !~ /=>/) return
      split(line, parts, /[ \t]*=>[ \t]*/)
      if (parts[2] ~ /^\.\/staging\//) {
        split(parts[1], lhs, /[ \t]+/)
        printf "replace %s => %s %s\n", lhs[1], lhs[1], staging
      } else {
        printf "replace %s\n", line
      }
    }
    /^replace[ \t]*\(/ { block = 1; next }
    block && /^[ \t]*\)/ { block = 0; next }
    block { emit($0); next }
    /^replace[ \t]/ { l = $0; sub(/^replace[ \t]+/, "", l); emit(l) }
  ' "$gomod"
} >go.mod
grep -q "=> k8s.io/apiserver $STAGING_VERSION" go.mod ||
  die "found no staging replace lines in $gomod; has the layout of kubernetes' go.mod changed?"

cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
EOF

# ---- version-specific extras (each one says why; none apply to current releases) ---------------
# modern-go/reflect2 v1.0.1 reads runtime internals whose layout changed in Go 1.18: the apiserver
# crashes on the first audited request. v1.0.2 is the fix (kubernetes 1.18 to 1.22 pin v1.0.1).
if grep -q '^replace github.com/modern-go/reflect2 => github.com/modern-go/reflect2 v1.0.1$' go.mod; then
  go mod edit -replace=github.com/modern-go/reflect2=github.com/modern-go/reflect2@v1.0.2
fi
# vbom.ml is gone and the module proxy does not serve vbom.ml/util, which k8s.io/kubectl of that
# era requires (kubernetes 1.18 and 1.19): its author's GitHub copy is the same commit.
vbom="$(sed -n 's/^replace vbom.ml\/util => vbom.ml\/util \(v[^ ]*\)$/\1/p' go.mod)"
if [[ -n "$vbom" ]]; then
  go mod edit -replace="vbom.ml/util=github.com/fvbommel/util@$vbom"
fi
# Generated OpenAPI definitions, for releases whose module lacks them (see the top of this file).
generate_openapi=0
if [[ ! -f "$kdir/pkg/generated/openapi/zz_generated.openapi.go" ]]; then generate_openapi=1; fi
# Directories with a +k8s:openapi-gen= tag in a file that has a `// +k8s:` line, found as
# upstream's Makefile finds them (cache_go_dirs.sh prunes _*, .*, vendor, third_party, testdata).
openapi_packages() { # <module dir> <module path>
  local files
  # grep exits 1 when no file matches, which is no error here.
  files="$(cd "$1" && find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \
    -o -path ./third_party -o -path '*/testdata' \) -prune -o -type f -name '*.go' -print |
    xargs -r grep -l '^// *+k8s:' | xargs -r grep -l '+k8s:openapi-gen=' || true)"
  if [[ -n "$files" ]]; then xargs -n1 dirname <<<"$files" | sed "s|^\.|$2|"; fi
}
if ((generate_openapi)); then
  log "kubernetes v$VERSION ships no generated OpenAPI definitions: generating them as upstream's make does"
  cp -r "$kdir" "$WORK/kubernetes"
  chmod -R u+w "$WORK/kubernetes"
  go mod edit -replace=k8s.io/kubernetes=./kubernetes
  {
    openapi_packages "$kdir" k8s.io/kubernetes
    for module in $(sed -n "s/^replace \(k8s\.io\/[a-z0-9-]*\) => k8s\.io\/[a-z0-9-]* $STAGING_VERSION$/\1/p" go.mod); do
      case "$module" in k8s.io/code-generator | k8s.io/sample-apiserver) continue ;; esac
      dir="$(download "$module@$STAGING_VERSION" Dir 2>/dev/null || true)"
      # Samples the proxy does not serve (sample-cli-plugin, sample-controller) have no API types;
      # a missing module that did would show in the API rule report check below.
      if [[ -z "$dir" ]]; then
        log "not on the module proxy, skipped for OpenAPI: $module@$STAGING_VERSION"
        continue
      fi
      openapi_packages "$dir" "$module"
    done
  } | LC_ALL=C sort -u >openapi-packages.txt
  # The generator and every package it reads must be in the module graph.
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kube-openapi/cmd/openapi-gen"\n'
    sed 's/.*/\t_ "&"/' openapi-packages.txt
    printf ')\n'
  } >openapi_tools.go
fi

log "resolving modules for kubernetes v$VERSION (go mod tidy)"
# Hundreds of "go: downloading" lines: kept in a log, shown only when something fails.
if ! GOFLAGS=-mod=mod run go mod tidy >"$WORK/go-mod.log" 2>&1; then
  tail -n 40 "$WORK/go-mod.log" >&2
  die "go mod tidy failed (log: $WORK/go-mod.log)"
fi
log "modules ready after $(($(date +%s) - started)) s"

if ((generate_openapi)); then
  run go build -p "$JOBS" -o "$WORK/openapi-gen" k8s.io/kube-openapi/cmd/openapi-gen
  : >boilerplate.go.txt
  # gotypesalias=0: the generator predates go/types' Alias nodes and would call aliases such as
  # meta/v1beta1.Table unsupported; without them it sees the types as the Go of its time did.
  if ! GODEBUG=gotypesalias=0 run "$WORK/openapi-gen" \
    -i "$(paste -sd, openapi-packages.txt)" \
    -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h boilerplate.go.txt -o "$WORK/openapi" -r "$WORK/openapi-violations.report" \
    >"$WORK/openapi-gen.log" 2>&1; then
    tail -n 40 "$WORK/openapi-gen.log" >&2
    die "openapi-gen failed (log: $WORK/openapi-gen.log)"
  fi
  known="$kdir/api/api-rules/violation_exceptions.list"
  if ! diff <(LC_ALL=C sort "$WORK/openapi-violations.report") <(LC_ALL=C sort "$known") >&2; then
    die "openapi-gen's API rule report differs from upstream's $known: these would not be upstream's definitions"
  fi
  cp "$WORK/openapi/k8s.io/kubernetes/pkg/generated/openapi/zz_generated.openapi.go" \
    "$WORK/kubernetes/pkg/generated/openapi/"
  log "generated OpenAPI definitions for $(wc -l <openapi-packages.txt) packages"
fi

# ---- 2. kube-apiserver ------------------------------------------------------------------------
# Both version packages: 1.18 reads k8s.io/client-go/pkg/version, current releases
# k8s.io/component-base/version; the linker ignores -X for a package that is not linked in.
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=v$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

log "building kube-apiserver v$VERSION with $JOBS jobs"
if ! run env CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags="-s -w$stamp" \
  -o "$WORK/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >"$WORK/go-build.log" 2>&1; then
  tail -n 60 "$WORK/go-build.log" >&2
  die "go build failed (log: $WORK/go-build.log)"
fi
"$WORK/kube-apiserver.tmp" --version >/dev/null || die "the built kube-apiserver does not run"
mv -f "$WORK/kube-apiserver.tmp" "$OUT"
# The scratch module (and the 1.18 copy of kubernetes) is not needed again: the Go caches are.
rm -rf "$WORK"
log "built $("$OUT" --version) in $(($(date +%s) - started)) s: $OUT ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
