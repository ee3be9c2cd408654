#!/usr/bin/env bash
# Builds real Kubernetes server components from the k8s.io/kubernetes Go module, for the
# control-plane tests (test/harness/controlplane.ts: kube-apiserver) and the single-node cluster
# (test/harness/node.ts: all five). No Docker, no source patches.
#
# Usage: scripts/build-kubernetes.sh <version> <component>...   e.g. 1.37.2 kubelet kube-proxy
#   components: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/<component>/v<version>/<component>,
# outside the repository and per version, so only a fresh machine pays the build. The paths are
# the last lines of stdout, one per component in the order asked; progress goes to stderr. The
# components still missing are built by one `go build`, which compiles what they share once.
# Idempotent, and safe to run concurrently (one flock per component's directory).
#
# Needs go >= 1.24 and at least the go line of kubernetes' go.mod (CGO is not used).
#
# Environment (all optional):
#   KUBE_BUILD_CACHE_ROOT      default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator
#   KUBE_APISERVER_CACHE_ROOT  kube-apiserver's own directory, default $KUBE_BUILD_CACHE_ROOT/kube-apiserver
#   KUBE_BUILD_JOBS            parallel go packages (default: all online CPUs)
#   KUBE_BUILD_NICE            nice level of the build (default 0)
#   KUBE_BUILD_FORCE=1         rebuild even when the binaries exist
#   GOTOOLCHAIN                unset: the installed go must be new enough; set (e.g. go1.27.3): go
#                              fetches that toolchain from the module proxy
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
#    `<component> --version` say which release this is (clients decide on it).
#  * Releases before 1.2x do not ship pkg/generated/openapi/zz_generated.openapi.go in the module:
#    upstream's `make` generates it first (build/root/Makefile.generated_files). The script then
#    does the same: openapi-gen of the kube-openapi version kubernetes pins, over the packages
#    with a `+k8s:openapi-gen=` tag (kubernetes and its staging modules but code-generator and
#    sample-apiserver, as the Makefile selects them), into a writable copy of the kubernetes
#    module that the scratch module's replace points at (go build -overlay refuses files in the
#    module cache). Its API rule report must equal upstream's api/api-rules list, as upstream's
#    make demands: that shows the generator saw the same types.
set -euo pipefail

COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
usage() {
  echo "usage: $0 <version> <component>...   (e.g. 1.37.2 kubelet; components: ${COMPONENTS[*]})" >&2
  exit 2
}

VERSION="${1:-}"
VERSION="${VERSION#v}"
[[ "$VERSION" =~ ^1\.([0-9]+)\.([0-9]+)$ ]] || usage
MINOR="${BASH_REMATCH[1]}"
STAGING_VERSION="v0.${MINOR}.${BASH_REMATCH[2]}"
shift
(($# > 0)) || usage
for component in "$@"; do
  [[ " ${COMPONENTS[*]} " == *" $component "* ]] || {
    echo "$0: unknown component '$component' (one of: ${COMPONENTS[*]})" >&2
    exit 2
  }
done
BASE="${KUBE_BUILD_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator}"
JOBS="${KUBE_BUILD_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
NICE="${KUBE_BUILD_NICE:-0}"
BUILD_NAME=build-kubernetes
VERSION_ARGS=(--version)
FORCE="${KUBE_BUILD_FORCE:-0}"
# shellcheck source=lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

# Where a component's binary lives (controlplane.ts and node.ts apply the same rule).
output() {
  if [[ "$1" == kube-apiserver ]]; then
    echo "${KUBE_APISERVER_CACHE_ROOT:-$BASE/kube-apiserver}/v$VERSION/kube-apiserver"
  else
    echo "$BASE/$1/v$VERSION/$1"
  fi
}
# The components asked for whose binary is not there yet.
missing() {
  local component
  for component in "$@"; do
    OUT="$(output "$component")"
    if built; then log "cached: $component $("$OUT" --version | head -n 1)"; else echo "$component"; fi
  done
}
print_paths() { for component in "$@"; do output "$component"; done; }

mapfile -t TODO < <(missing "$@")
if ((${#TODO[@]} == 0)); then
  print_paths "$@"
  exit 0
fi

# One build at a time per binary (parallel test workers, two checkouts): take every missing
# component's lock, always in the same order so that two runs cannot wait for each other, then
# see what a concurrent run has built meanwhile.
mapfile -t LOCKS < <(printf '%s\n' "${TODO[@]}" | LC_ALL=C sort)
for component in "${LOCKS[@]}"; do
  dir="$(dirname "$(output "$component")")"
  mkdir -p "$dir"
  exec {fd}>"$dir/.lock"
  if ! flock -n "$fd"; then
    log "another build of $component is running; waiting for it"
    flock "$fd"
  fi
done
mapfile -t TODO < <(missing "${TODO[@]}")
if ((${#TODO[@]} == 0)); then
  log "built by a concurrent run"
  print_paths "$@"
  exit 0
fi

require_go 24 "kubernetes $VERSION (as built here)"
mkdir -p "$BASE"
WORK="$(mktemp -d "$BASE/.build-kubernetes-v$VERSION.XXXXXX")"
cd "$WORK"
run() { nice -n "$NICE" "$@"; }
started=$(date +%s)

# ---- 1. scratch module ------------------------------------------------------------------------
log "fetching k8s.io/kubernetes v$VERSION"
# One field of `go mod download -json` for a module@version: its go.mod file or its directory.
# Always with the installed toolchain: fetching a module needs no newer one.
download() {
  GOTOOLCHAIN=local go mod download -json "$1" |
    sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}$/\1/p"
}
gomod="$(download "k8s.io/kubernetes@v$VERSION" GoMod)"
kdir="$(download "k8s.io/kubernetes@v$VERSION" Dir)"
[[ -f "$gomod" && -d "$kdir" ]] || die "go mod download k8s.io/kubernetes@v$VERSION failed"

# kubernetes says which Go it needs; an older one fails deep inside `go mod tidy`, so say it here.
needed_go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
if [[ -z "${GOTOOLCHAIN:-}" ]]; then
  # Never download another Go toolchain unless asked to: the installed one is what we checked.
  export GOTOOLCHAIN=local
  have_go="$(go env GOVERSION | sed 's/^go//')"
  if [[ -n "$needed_go" ]] && [[ "$(printf '%s\n%s\n' "$needed_go" "$have_go" | sort -V | head -n 1)" != "$needed_go" ]]; then
    die "kubernetes v$VERSION needs Go >= $needed_go, this is go $have_go: install it, or set GOTOOLCHAIN=go$needed_go (or newer) to fetch it from the module proxy"
  fi
fi

{
  printf 'module kubernetes-build\n\ngo 1.24\n\nrequire k8s.io/kubernetes v%s\n\n' "$VERSION"
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

{
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  for component in "${TODO[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s/app"\n' "$component"; done
  printf ')\n'
} >tools.go

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

# ---- 2. the components ------------------------------------------------------------------------
# Both version packages: 1.18 reads k8s.io/client-go/pkg/version, current releases
# k8s.io/component-base/version; the linker ignores -X for a package that is not linked in.
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=v$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

log "building ${TODO[*]} v$VERSION with $JOBS jobs"
packages=()
for component in "${TODO[@]}"; do packages+=("k8s.io/kubernetes/cmd/$component"); done
mkdir "$WORK/bin"
# -o <directory>/ writes each main package's binary there, named after its directory.
if ! run env CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags="-s -w$stamp" \
  -o "$WORK/bin/" "${packages[@]}" >"$WORK/go-build.log" 2>&1; then
  tail -n 60 "$WORK/go-build.log" >&2
  die "go build failed (log: $WORK/go-build.log)"
fi
for component in "${TODO[@]}"; do
  "$WORK/bin/$component" --version >/dev/null 2>&1 || die "the built $component does not run"
done
for component in "${TODO[@]}"; do
  OUT="$(output "$component")"
  # A rename when on the work directory's filesystem (the default): no reader sees half a binary.
  mv -f "$WORK/bin/$component" "$OUT"
  log "built $component $("$OUT" --version) ($(du -h "$OUT" | cut -f1))"
done
# The scratch module (and the 1.18 copy of kubernetes) is not needed again: the Go caches are.
cd /
rm -rf "$WORK"
log "built ${TODO[*]} v$VERSION in $(($(date +%s) - started)) s"
print_paths "$@"
