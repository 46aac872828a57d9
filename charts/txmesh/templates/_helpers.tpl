{{/*
The chart name, or nameOverride.
*/}}
{{- define "txmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: "<release>-<chart>", or just the release name when it
already holds the chart name. Cut to 54 characters so that "-operator" (and the coming
"-webhook") still make a valid Service name.
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
