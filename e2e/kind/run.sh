#!/usr/bin/env bash
# The operator end to end on a kind cluster: the container image, the Helm chart, a real
# kube-apiserver posting its audit webhook to the chart's Service, and InfluxDB 2.7. The same
# scenario as test/e2e/controlplane/operator.test.ts: one AuditSink and two AuditPipelines in two
# namespaces, each bucket checked for what its policy and tenant scope allow.
#
# Needs docker, kind, kubectl and helm. See README.md beside this file for the steps and settings.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"

CLUSTER="${KIND_CLUSTER_NAME:-kube-audit-e2e}"
IMAGE="${IMAGE:-kube-audit-operator:e2e}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
# Pinned in the chart's Service and named in the apiserver's webhook kubeconfig: the apiserver
# cannot resolve cluster DNS. It lies in kind-config.yaml's serviceSubnet.
SERVICE_IP="10.96.100.100"
SERVICE_PORT="443"
NAMESPACE="kube-audit"
RELEASE="kube-audit-operator"
INFLUX_ORG="kube-audit"
INFLUX_ADMIN_TOKEN="kind-e2e-admin-token"
# How long to wait for audit events to reach a bucket: the apiserver batches for up to 5 s
# (kind-config.yaml), and a restarted apiserver backs off its first failed webhook call.
WAIT_SECONDS="${WAIT_SECONDS:-120}"

work="${here}/.work"
audit_dir="${work}/audit"

log() { printf '\n==> %s\n' "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

for tool in docker kind kubectl helm; do
  command -v "${tool}" >/dev/null 2>&1 || fail "${tool} is not installed (needed: docker, kind, kubectl, helm)"
done
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info)"

kube() { kubectl --context "kind-${CLUSTER}" "$@"; }
influx() {
  kube -n influxdb exec deploy/influxdb -- influx "$@" --org "${INFLUX_ORG}" --token "${INFLUX_ADMIN_TOKEN}"
}

cleanup() {
  local status=$?
  if [[ ${status} -ne 0 ]]; then
    log "failed; the operator's last logs"
    kube -n "${NAMESPACE}" logs "deploy/${RELEASE}" --tail=50 2>/dev/null || true
    kube get auditsinks.kube-audit.dev,auditpipelines.kube-audit.dev -A -o wide 2>/dev/null || true
  fi
  if [[ "${KEEP_CLUSTER}" == "1" ]]; then
    log "keeping cluster ${CLUSTER} (kind delete cluster --name ${CLUSTER})"
  else
    kind delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
  fi
  exit "${status}"
}

# ---- 1. the image ------------------------------------------------------------------------------
log "building ${IMAGE}"
# With BuildKit, at once when the inputs are unchanged; behind a TLS-intercepting proxy, give its
# CA bundle as BUILD_CA_FILE.
"${repo}/scripts/build-image.sh" --tag "${IMAGE}" >/dev/null

# ---- 2. the cluster, with placeholder audit configuration ----------------------------------------
# The real webhook kubeconfig needs the chart's CA and token, which exist only once the chart is
# installed in the cluster; the apiserver refuses to start without the files. So it starts with
# placeholders (a policy that records nothing) and is restarted with the real files below.
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
kind load docker-image "${IMAGE}" --name "${CLUSTER}"

# ---- 3. InfluxDB --------------------------------------------------------------------------------
log "installing InfluxDB 2.7"
kube apply -f "${here}/influxdb.yaml"
kube -n influxdb rollout status deploy/influxdb --timeout=180s
# The image's setup runs after the server answers /health: wait until the org exists.
for _ in $(seq 60); do
  if influx bucket list --name cluster >/dev/null 2>&1; then break; fi
  sleep 2
done
influx bucket list --name cluster >/dev/null || fail "InfluxDB set-up did not finish"
influx bucket create --name team-a >/dev/null

# The first string value of a key in the JSON on standard input; empty when there is none.
json_field() { { grep -o "\"$1\": *\"[^\"]*\"" || true; } | sed -n '1s/.*"\([^"]*\)"$/\1/p'; }
bucket_id() { influx bucket list --name "$1" --json | json_field id; }
# A token that may write (and read) one bucket only, as a tenant would get.
bucket_token() {
  local id
  id="$(bucket_id "$1")"
  [[ -n "${id}" ]] || fail "no bucket $1"
  influx auth create --write-bucket "${id}" --read-bucket "${id}" --description "kind e2e $1" --json |
    json_field token
}
cluster_token="$(bucket_token cluster)"
team_a_token="$(bucket_token team-a)"
[[ -n "${cluster_token}" && -n "${team_a_token}" ]] || fail "could not create bucket tokens"

# ---- 4. the chart --------------------------------------------------------------------------------
log "installing the chart with Service ClusterIP ${SERVICE_IP}"
helm --kube-context "kind-${CLUSTER}" install "${RELEASE}" "${repo}/charts/kube-audit-operator" \
  --namespace "${NAMESPACE}" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=IfNotPresent \
  --set service.clusterIP="${SERVICE_IP}" --set service.port="${SERVICE_PORT}" \
  --wait --timeout 5m
kube wait --for=condition=Established crd/auditsinks.kube-audit.dev crd/auditpipelines.kube-audit.dev --timeout=60s

# ---- 5. the scenario: token Secrets (opted in by label), then the sinks ---------------------------
log "applying the scenario"
token_secret() { # namespace name token
  kube -n "$1" create secret generic "$2" --from-literal=token="$3" --dry-run=client -o yaml |
    kube label --local -f - kube-audit.dev/usable-by-sinks=true -o yaml |
    kube apply -f -
}
for ns in team-a team-b; do
  kube create namespace "${ns}" --dry-run=client -o yaml | kube apply -f -
done
token_secret "${NAMESPACE}" cluster-token "${cluster_token}"
token_secret team-a influxdb "${team_a_token}"
# team-b's bucket is created by the operator (createBucket): that needs an org-wide token.
token_secret team-b influxdb "${INFLUX_ADMIN_TOKEN}"
kube apply -f "${here}/scenario.yaml"
kube wait --for=condition=Ready auditsink.kube-audit.dev/cluster-metadata --timeout=120s
kube -n team-a wait --for=condition=Ready auditpipeline.kube-audit.dev/a-trail --timeout=120s
kube -n team-b wait --for=condition=Ready auditpipeline.kube-audit.dev/b-trail --timeout=120s

# ---- 6. the real apiserver configuration ---------------------------------------------------------
# What the chart's notes tell an administrator to run: `apiserver-config` inside an operator pod,
# reading the sinks with the pod's service account, with the CA and token the chart mounts there.
# It prints the webhook kubeconfig and the superset of every sink's policy, each after a comment
# naming its file.
log "generating the apiserver's audit webhook kubeconfig and policy"
kube -n "${NAMESPACE}" exec "deploy/${RELEASE}" -c operator -- \
  /nodejs/bin/node /app/dist/main.js apiserver-config --namespace "${NAMESPACE}" \
  --server "https://${SERVICE_IP}:${SERVICE_PORT}" \
  --ca-file /etc/kube-audit/tls/ca.crt --token-file /etc/kube-audit/token/token \
  >"${work}/apiserver-config.yaml"
rm -f "${audit_dir}"/*
(cd "${audit_dir}" && umask 077 &&
  awk '/^# audit-/ { f = $2; next } /^---$/ { next } { print > f }' "${work}/apiserver-config.yaml")
[[ -s "${audit_dir}/audit-webhook.kubeconfig" && -s "${audit_dir}/audit-policy.yaml" ]] ||
  fail "apiserver-config did not print both files"
grep -q "server: https://${SERVICE_IP}:${SERVICE_PORT}/audit/v1/events" "${audit_dir}/audit-webhook.kubeconfig" ||
  fail "the generated webhook kubeconfig does not name the pinned ClusterIP"

# ---- 7. restart the apiserver so that it reads the files again ----------------------------------
# The flags only take effect at start-up. Touching the static pod manifest changes nothing the
# kubelet compares (it hashes the content), so stop the container: the kubelet starts it again.
log "restarting the kube-apiserver"
node="${CLUSTER}-control-plane"
old="$(docker exec "${node}" crictl ps --name kube-apiserver -q)"
[[ -n "${old}" ]] || fail "no kube-apiserver container on ${node}"
docker exec "${node}" crictl stop "${old}" >/dev/null
for _ in $(seq 90); do
  new="$(docker exec "${node}" crictl ps --name kube-apiserver -q 2>/dev/null || true)"
  if [[ -n "${new}" && "${new}" != "${old}" ]] && kube get --raw=/readyz >/dev/null 2>&1; then break; fi
  sleep 2
done
kube get --raw=/readyz >/dev/null || fail "the kube-apiserver did not come back"

# ---- 8. kubectl work in both namespaces ---------------------------------------------------------
log "working in team-a and team-b"
for ns in team-a team-b; do
  kube -n "${ns}" create configmap settings --from-literal=mode=blue
  kube -n "${ns}" patch configmap settings --type merge -p '{"data":{"mode":"green"}}'
  kube -n "${ns}" create secret generic db --from-literal=password=not-in-any-bucket
  kube -n "${ns}" get secret db -o name >/dev/null
  kube -n "${ns}" create deployment web --image=registry.k8s.io/pause:3.10
  kube -n "${ns}" scale deployment web --replicas=2
  kube -n "${ns}" delete configmap settings
done

# ---- 9. what each bucket holds -----------------------------------------------------------------
# The _value of a Flux query that ends with keep(columns: ["_value"]), from the annotated CSV of
# `influx query --raw`.
flux_value() {
  influx query --raw "$1" | tr -d '\r' | awk -F, '$1 == "" && $2 == "_result" && $3 != "table" { v = $NF } END { print v + 0 }'
}
# The number of events in a bucket matching a Flux predicate on the row.
events() { # bucket predicate
  flux_value "from(bucket: \"$1\")
    |> range(start: -1h)
    |> filter(fn: (r) => r._measurement == \"kubernetes_audit\" and r._field == \"audit_id\")
    |> filter(fn: (r) => $2)
    |> group()
    |> count()
    |> keep(columns: ["_value"])"
}
# Waits until a bucket holds at least one event matching the predicate.
expect_events() { # bucket predicate what
  local n=0
  for _ in $(seq $((WAIT_SECONDS / 2))); do
    n="$(events "$1" "$2")"
    if [[ "${n}" -gt 0 ]]; then
      printf '  ok   %-8s %s: %s events\n' "$1" "$3" "${n}"
      return
    fi
    sleep 2
  done
  fail "bucket $1: no events for $3 within ${WAIT_SECONDS} s"
}
expect_none() { # bucket predicate what
  local n
  n="$(events "$1" "$2")"
  [[ "${n}" -eq 0 ]] || fail "bucket $1: ${n} events for $3, expected none"
  printf '  ok   %-8s %s: none\n' "$1" "$3"
}

log "checking the buckets"
expect_events cluster 'r.namespace == "team-a"' "team-a's requests (AuditSink sees every namespace)"
expect_events cluster 'r.namespace == "team-b"' "team-b's requests"
expect_events team-a 'r.resource == "configmaps" and r.verb == "patch"' "the configmap patch"
expect_events team-a 'r.resource == "deployments" and r.subresource == "scale"' "the scale"
expect_events team-a 'r.resource == "secrets" and r.verb == "create"' "the secret's creation"
expect_events team-b 'r.resource == "configmaps"' "team-b's configmap"
expect_events team-b 'r.resource == "secrets" and r.verb == "get"' "team-b's secret read"
# Tenant scope: a pipeline sees its own namespace only.
expect_none team-a 'not exists r.namespace or r.namespace != "team-a"' "other namespaces"
expect_none team-b 'not exists r.namespace or r.namespace != "team-b"' "other namespaces"
# team-a's policy drops reads.
expect_none team-a 'r.verb == "get" or r.verb == "list" or r.verb == "watch"' "reads"
# Metadata only for Secrets, whatever the level: no body was stored.
secret_bodies="$(flux_value 'from(bucket: "team-a")
  |> range(start: -1h)
  |> filter(fn: (r) => r.resource == "secrets" and (r._field == "request_object" or r._field == "response_object"))
  |> group()
  |> count()
  |> keep(columns: ["_value"])')"
[[ "${secret_bodies}" -eq 0 ]] || fail "bucket team-a holds ${secret_bodies} Secret bodies"
printf '  ok   %-8s %s\n' team-a "no Secret bodies"
configmap_bodies="$(flux_value 'from(bucket: "team-a")
  |> range(start: -1h)
  |> filter(fn: (r) => r.resource == "configmaps" and r._field == "response_object")
  |> group()
  |> count()
  |> keep(columns: ["_value"])')"
[[ "${configmap_bodies}" -gt 0 ]] || fail "bucket team-a holds no configmap response bodies (RequestResponse)"
printf '  ok   %-8s %s\n' team-a "configmap bodies kept at RequestResponse"

kube get auditsinks.kube-audit.dev,auditpipelines.kube-audit.dev -A
log "passed"
