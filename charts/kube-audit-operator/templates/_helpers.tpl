{{/*
Names, labels and the values derived from several others. Kubernetes names are at most 63
characters (a DNS label), so each name is cut there.
*/}}

{{- define "kube-audit-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The base name of every resource: the release name, plus the chart name unless it has it. */}}
{{- define "kube-audit-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A resource name: the full name with a suffix, cut so that the suffix survives. */}}
{{- define "kube-audit-operator.suffixed" -}}
{{- $base := include "kube-audit-operator.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .suffix }}
{{- end }}

{{- define "kube-audit-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-audit-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-audit-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-audit-operator.labels" -}}
helm.sh/chart: {{ include "kube-audit-operator.chart" . }}
{{ include "kube-audit-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-audit-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The leader-election Lease; its name also prefixes and labels the replicas' status reports. */}}
{{- define "kube-audit-operator.leaseName" -}}
{{- default (include "kube-audit-operator.fullname" .) .Values.operator.leaseName }}
{{- end }}

{{- define "kube-audit-operator.serviceAccountName" -}}
{{- default (include "kube-audit-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "kube-audit-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Secrets: the serving certificate, the CA that signs it, the receiver token, the native key. */}}
{{- define "kube-audit-operator.tlsSecretName" -}}
{{- if eq .Values.certificate.mode "existing-secret" }}
{{- .Values.certificate.existingSecret }}
{{- else }}
{{- include "kube-audit-operator.suffixed" (dict "root" . "suffix" "tls") }}
{{- end }}
{{- end }}

{{- define "kube-audit-operator.caSecretName" -}}
{{- include "kube-audit-operator.suffixed" (dict "root" . "suffix" "ca") }}
{{- end }}

{{- define "kube-audit-operator.tokenSecretName" -}}
{{- default (include "kube-audit-operator.suffixed" (dict "root" . "suffix" "token")) .Values.receiverToken.existingSecret }}
{{- end }}

{{- define "kube-audit-operator.tokenSecretKey" -}}
{{- if .Values.receiverToken.existingSecret }}{{ .Values.receiverToken.key }}{{ else }}token{{ end }}
{{- end }}

{{- define "kube-audit-operator.nativeKeySecretName" -}}
{{- default (include "kube-audit-operator.suffixed" (dict "root" . "suffix" "native-key")) .Values.nativeKey.existingSecret }}
{{- end }}

{{- define "kube-audit-operator.nativeKeySecretKey" -}}
{{- if .Values.nativeKey.existingSecret }}{{ .Values.nativeKey.key }}{{ else }}key{{ end }}
{{- end }}

{{/* The Service's DNS names, which every serving certificate carries. */}}
{{- define "kube-audit-operator.dnsNames" -}}
{{- $svc := include "kube-audit-operator.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.certificate.clusterDomain) }}
{{- concat $names .Values.certificate.extraDnsNames | uniq | toJson }}
{{- end }}

{{/*
The IP addresses of the serving certificate: the pinned ClusterIP, or else the one Kubernetes gave
the Service at install (known from the first upgrade on), and the extra ones.
*/}}
{{- define "kube-audit-operator.ipAddresses" -}}
{{- $ips := list }}
{{- if .Values.service.clusterIP }}
{{- $ips = append $ips .Values.service.clusterIP }}
{{- else }}
{{- $svc := lookup "v1" "Service" .Release.Namespace (include "kube-audit-operator.fullname" .) }}
{{- $ip := dig "spec" "clusterIP" "" ($svc | default dict) }}
{{- if and $ip (ne $ip "None") }}
{{- $ips = append $ips $ip }}
{{- end }}
{{- end }}
{{- concat $ips .Values.certificate.extraIPAddresses | uniq | toJson }}
{{- end }}

{{/*
The receivers' base URL as the kube-apiserver reaches them. Without a pinned ClusterIP, the
address Kubernetes puts into the pod's environment for the Service (service links), which the
kubelet expands in the arguments: Helm creates the Service before the workload, so it is there.
*/}}
{{- define "kube-audit-operator.advertiseUrl" -}}
{{- if .Values.operator.advertiseUrl }}
{{- .Values.operator.advertiseUrl }}
{{- else if .Values.service.clusterIP }}
{{- printf "https://%s:%d" .Values.service.clusterIP (int .Values.service.port) }}
{{- else }}
{{- printf "https://$(%s):%d" (include "kube-audit-operator.serviceHostVar" .) (int .Values.service.port) }}
{{- end }}
{{- end }}

{{/* The service link variable of the Service's ClusterIP: FOO_BAR_SERVICE_HOST for foo-bar. */}}
{{- define "kube-audit-operator.serviceHostVar" -}}
{{- printf "%s_SERVICE_HOST" (include "kube-audit-operator.fullname" . | upper | replace "-" "_") }}
{{- end }}

{{/* Mount paths inside the container. */}}
{{- define "kube-audit-operator.dataDir" -}}/var/lib/kube-audit{{- end }}
{{- define "kube-audit-operator.tlsDir" -}}/etc/kube-audit/tls{{- end }}
{{- define "kube-audit-operator.tokenDir" -}}/etc/kube-audit/token{{- end }}
{{- define "kube-audit-operator.nativeKeyDir" -}}/etc/kube-audit/native-key{{- end }}
