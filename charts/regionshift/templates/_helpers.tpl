{{/* The release's full name: the release name, with the chart's in front unless it has it. */}}
{{- define "regionshift.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "regionshift.region" -}}
{{- required "region is required: this cluster's region, as its RegionFailovers name it (--set region=us-east)" .Values.region -}}
{{- end -}}

{{- define "regionshift.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "regionshift.labels" -}}
{{ include "regionshift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: regionshift
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
regionshift.io/region: {{ include "regionshift.region" . }}
{{- end -}}

{{- define "regionshift.serviceAccountName" -}}
{{- default (include "regionshift.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "regionshift.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The operator's permissions, one rule per resource, each needed by a call of the operator
(docs/install.md lists what each is for; tests/integration/test_rbac.py removes each in turn
and shows what breaks). The same rules go into a Role per watched namespace, or into one
ClusterRole when the operator watches every namespace.
*/}}
{{- define "regionshift.rules" -}}
- apiGroups: [regionshift.io]
  resources: [regionfailovers]
  verbs: [get, list, watch, patch]
- apiGroups: [regionshift.io]
  resources: [regionfailovers/status]
  verbs: [patch]
- apiGroups: [regionshift.io]
  resources: [darkclusters]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [regionshift.io]
  resources: [darkclusters/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, patch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- with .Values.prometheus.tokenSecret }}
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ . | quote }}]
  verbs: [get]
{{- end }}
{{- if or .Values.providers.gatewayAPI .Values.providers.ingressNginx }}
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, create, patch, delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, create, update, delete, deletecollection]
{{- end }}
{{- if .Values.providers.gatewayAPI }}
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, patch]
{{- end }}
{{- if .Values.providers.ingressNginx }}
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, create, update, delete]
{{- end }}
{{- if .Values.providers.externalDNS }}
- apiGroups: [externaldns.k8s.io]
  resources: [dnsendpoints]
  verbs: [get, list, patch]
{{- end }}
{{- end -}}
