{{/*
The chart name, or nameOverride.
*/}}
{{- define "txmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: "<release>-<chart>", or just the release name when it
already holds the chart name. Cut to 54 characters so that "-operator" and "-webhook" still
make valid Service names.
*/}}
{{- define "txmesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The operator's objects: Deployment, Service, roles, and its leader Lease.
*/}}
{{- define "txmesh.operator.fullname" -}}
{{- printf "%s-operator" (include "txmesh.fullname" .) }}
{{- end }}

{{- define "txmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object (the Kubernetes recommended app.kubernetes.io set) but the component.
*/}}
{{- define "txmesh.commonLabels" -}}
helm.sh/chart: {{ include "txmesh.chart" . }}
app.kubernetes.io/name: {{ include "txmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: txmesh
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels of the operator's objects.
*/}}
{{- define "txmesh.labels" -}}
{{ include "txmesh.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels of the sidecar injector's objects (all that injector.enabled=false leaves out). Its own
component, so that the operator's ServiceMonitor does not select the webhook Service.
*/}}
{{- define "txmesh.injectorLabels" -}}
{{ include "txmesh.commonLabels" . }}
app.kubernetes.io/component: sidecar-injector
{{- end }}

{{/*
What selects the operator pods. The component keeps them apart from the coordinator pods,
which the operator labels app.kubernetes.io/name=txmesh with instance = the resource's name.
*/}}
{{- define "txmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "txmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "txmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "txmesh.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "txmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The sidecar injector's objects. The Service (the API server reaches the webhook through it,
and the serving certificate is made for its DNS names) has the operator's 54-character prefix,
so it stays a valid Service name.
*/}}
{{- define "txmesh.webhook.service" -}}
{{- printf "%s-webhook" (include "txmesh.fullname" .) }}
{{- end }}

{{/*
cert-manager mode: the serving certificate (named like the Service it is for).
*/}}
{{- define "txmesh.webhook.certificate" -}}
{{- printf "%s-webhook" (include "txmesh.fullname" .) }}
{{- end }}

{{- define "txmesh.webhook.config" -}}
{{- printf "%s-sidecar-injector" (include "txmesh.fullname" .) }}
{{- end }}

{{/*
The Secret with the webhook's serving certificate. Self-managed, the operator keeps its own CA
in it too; with cert-manager, cert-manager issues into it. Two names, so that switching modes
never hands one the other's Secret (cert-manager's has no CA key, the operator's is no
Certificate's).
*/}}
{{- define "txmesh.webhook.secret" -}}
{{- if .Values.injector.certManager.enabled }}
{{- printf "%s-webhook-tls" (include "txmesh.fullname" .) }}
{{- else }}
{{- printf "%s-webhook-certs" (include "txmesh.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The sidecar's image: injector.sidecar.image, each part defaulting to the operator's.
*/}}
{{- define "txmesh.sidecarImage" -}}
{{- $repository := .Values.injector.sidecar.image.repository | default .Values.image.repository }}
{{- $tag := .Values.injector.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/*
"true" when the injection watchdog runs (values.yaml: injector.watchdog), else empty: its
settings (deployment.yaml) and its ClusterRole (injection-watchdog-rbac.yaml) come together.
*/}}
{{- define "txmesh.injectionWatchdog" -}}
{{- if and .Values.injector.enabled (gt (int .Values.injector.watchdog.intervalSeconds) 0) }}true{{ end }}
{{- end }}
