{{/* The release's name for everything it creates. */}}
{{- define "kamajid.fullname" -}}
{{- if contains "kamajid" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kamajid" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kamajid.labels" -}}
app.kubernetes.io/name: kamajid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kamajid.selector" -}}
app.kubernetes.io/name: kamajid
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kamajid.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kamajid.tlsSecret" -}}
{{ .Values.tls.existingSecret | default (printf "%s-tls" (include "kamajid.fullname" .)) }}
{{- end -}}

{{- define "kamajid.tokensSecret" -}}
{{ .Values.tokens.existingSecret | default (printf "%s-tokens" (include "kamajid.fullname" .)) }}
{{- end -}}

{{- define "kamajid.kekSecret" -}}
{{ .Values.kek.existingSecret | default (printf "%s-kek" (include "kamajid.fullname" .)) }}
{{- end -}}

{{- define "kamajid.etcdName" -}}
{{ printf "%s-etcd" (include "kamajid.fullname" .) }}
{{- end -}}

{{- define "kamajid.etcdSecret" -}}
{{- if .Values.stateEtcd.endpoints -}}
{{ required "stateEtcd.existingSecret is required with stateEtcd.endpoints (ca.crt, tls.crt, tls.key)" .Values.stateEtcd.existingSecret }}
{{- else -}}
{{ printf "%s-etcd-client" (include "kamajid.fullname" .) }}
{{- end -}}
{{- end -}}

{{- define "kamajid.etcdEndpoints" -}}
{{- if .Values.stateEtcd.endpoints -}}
{{ join "," .Values.stateEtcd.endpoints }}
{{- else if .Values.stateEtcd.bundled.enabled -}}
{{ printf "https://%s.%s.svc:2379" (include "kamajid.etcdName" .) .Release.Namespace }}
{{- else -}}
{{ fail "set stateEtcd.endpoints (and stateEtcd.existingSecret), or stateEtcd.bundled.enabled" }}
{{- end -}}
{{- end -}}

{{/* The container security context every container here runs with. */}}
{{- define "kamajid.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
