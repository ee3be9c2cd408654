#!/usr/bin/env bash
# The operator's install scenario on a kind cluster: the same test file that `npm test` runs on
# its own single-node cluster (test/e2e/node/install.test.ts), against a one-node kind cluster
# instead (test/e2e/node/on-kind.ts). This script makes the cluster, with the kube-apiserver's
# audit flags pointing at a host directory that the scenario later fills; the scenario builds
# and loads the image, installs the chart with the README's command, configures and restarts the
# apiserver as the chart's notes say, and checks everything the node test checks.
#
# Needs docker, kind, kubectl, helm, and Node.js with the repository's npm dependencies (run
# `npm ci` once); Go builds influxd on the first run. Linux only: influxd listens on the kind
# network's gateway, which pods reach on Linux's Docker. See README.md beside this file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"

CLUSTER="${KIND_CLUSTER_NAME:-kube-audit-e2e}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
# Pinned in the chart's Service and named in the apiserver's webhook kubeconfig: the apiserver
# cannot resolve cluster DNS. It lies in kind-config.yaml's serviceSubnet; on-kind.ts pins the
# same address.
SERVICE_IP="10.96.100.100"
SERVICE_PORT="443"

work="${here}/.work"
audit_dir="${work}/audit"

log() { printf '\n==> %s\n' "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

for tool in docker kind kubectl helm npx; do
  command -v "${tool}" >/dev/null 2>&1 || fail "${tool} is not installed (needed: docker, kind, kubectl, helm, Node.js)"
done
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info)"
[[ -d "${repo}/node_modules/vitest" ]] || fail "run npm ci in ${repo} first"

cleanup() {
  local status=$?
  if [[ "${KEEP_CLUSTER}" == "1" ]]; then
    log "keeping cluster ${CLUSTER} (kind delete cluster --name ${CLUSTER})"
  else
    kind delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
  fi
  exit "${status}"
}

# ---- 1. the cluster, with placeholder audit configuration ----------------------------------------
# The real webhook kubeconfig needs the chart's CA and token, which exist only once the chart is
# installed in the cluster; the apiserver refuses to start without the files. So it starts with
# placeholders (a policy that records nothing, a webhook naming SERVICE_IP), which the scenario
# replaces before it restarts the apiserver.
log "creating kind cluster ${CLUSTER}"
rm -rf "${work}"
mkdir -p "${audit_dir}"
cp "${here}/placeholder/audit-policy.yaml" "${here}/placeholder/audit-webhook.kubeconfig" "${audit_dir}/"
# kind's extraMounts want an absolute host path.
sed "s|hostPath: \".work/audit\"|hostPath: \"${audit_dir}\"|" "${here}/kind-config.yaml" >"${work}/kind-config.yaml"
grep -q "hostPath: \"${audit_dir}\"" "${work}/kind-config.yaml" || fail "kind-config.yaml: no audit hostPath to rewrite"
kind delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
trap cleanup EXIT
kind_args=(--name "${CLUSTER}" --config "${work}/kind-config.yaml" --wait 120s)
if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then kind_args+=(--image "${KIND_NODE_IMAGE}"); fi
kind create cluster "${kind_args[@]}"

# ---- 2. the scenario ------------------------------------------------------------------------------
# The image is built by scripts/build-image.sh (BUILD_CA_FILE names a TLS proxy's CA bundle when
# the build must trust one) and loaded with `kind load docker-image` by the scenario itself.
log "running test/e2e/node/install.test.ts on ${CLUSTER}"
cd "${repo}"
KUBE_AUDIT_E2E_CLUSTER=kind KIND_CLUSTER_NAME="${CLUSTER}" KIND_AUDIT_DIR="${audit_dir}" \
  npx vitest run --project node test/e2e/node/install.test.ts
log "passed"
