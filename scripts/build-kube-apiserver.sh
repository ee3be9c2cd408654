#!/usr/bin/env bash
# Builds a real kube-apiserver from the k8s.io/kubernetes Go module, for the control-plane tests
# (test/harness/controlplane.ts): scripts/build-kubernetes.sh for that one component.
#
# Usage: scripts/build-kube-apiserver.sh <version>   e.g. 1.37.2 or 1.18.19
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/kube-apiserver/v<version>/kube-apiserver,
# outside the repository and per version. The path is the last line of stdout; progress goes to
# stderr. Idempotent, and safe to run concurrently (flock).
#
# Environment (all optional), besides those of build-kubernetes.sh:
#   KUBE_APISERVER_VERSION     the version when no argument is given
#   KUBE_APISERVER_CACHE_ROOT  default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/kube-apiserver
#   KUBE_APISERVER_BUILD_JOBS  parallel go packages (default: all online CPUs)
#   KUBE_APISERVER_NICE        nice level of the build (default 0)
#   KUBE_APISERVER_FORCE=1     rebuild even when the binary exists
set -euo pipefail

export KUBE_BUILD_JOBS="${KUBE_APISERVER_BUILD_JOBS:-${KUBE_BUILD_JOBS:-}}"
export KUBE_BUILD_NICE="${KUBE_APISERVER_NICE:-${KUBE_BUILD_NICE:-}}"
export KUBE_BUILD_FORCE="${KUBE_APISERVER_FORCE:-${KUBE_BUILD_FORCE:-}}"
[[ -n "$KUBE_BUILD_JOBS" ]] || unset KUBE_BUILD_JOBS
[[ -n "$KUBE_BUILD_NICE" ]] || unset KUBE_BUILD_NICE
[[ -n "$KUBE_BUILD_FORCE" ]] || unset KUBE_BUILD_FORCE
exec "$(dirname "${BASH_SOURCE[0]}")/build-kubernetes.sh" "${1:-${KUBE_APISERVER_VERSION:-}}" kube-apiserver
