{{/* Labels every object carries; the selector labels are the stable subset. */}}
{{- define "aiops.selectorLabels" -}}
app.kubernetes.io/name: aiops
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aiops.labels" -}}
{{ include "aiops.selectorLabels" . }}
app.kubernetes.io/part-of: aiops
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount every binding names. */}}
{{- define "aiops.subject" -}}
- kind: ServiceAccount
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/* The execution journal's namespace: never the release namespace (see values.yaml, journal.namespace). */}}
{{- define "aiops.journalNamespace" -}}
{{- $ns := .Values.journal.namespace | default (printf "%s-journal" .Release.Name) }}
{{- if eq $ns .Release.Namespace }}
{{- fail "journal.namespace must not be the release namespace: the journal's Role would reach the agent's own config" }}
{{- end }}
{{- $ns }}
{{- end }}

{{/* The agent's config file: generated keys, then .Values.config merged over them. */}}
{{- define "aiops.config" -}}
{{- if not (has .Values.mode (list "dry-run" "act")) }}
{{- fail (printf "mode must be dry-run or act, got %q" .Values.mode) }}
{{- end }}
{{- $generated := dict
  "mode" .Values.mode
  "webhook" (dict "listen" (printf "0.0.0.0:%v" .Values.webhook.port) "token_file" "/var/run/secrets/aiops/webhook/token" "peer_service" .Release.Name)
  "prometheus" (dict "url" .Values.prometheus.url)
  "kubernetes" (dict "in_cluster" true "namespaces" .Values.targetNamespaces)
  "playbooks_dir" "/etc/aiops/playbooks"
  "rules_dir" "/etc/aiops/rules"
  "models_dir" "/var/lib/aiops/models"
  "state_dir" "/var/lib/aiops"
  "log_format" "json"
  "leader_election" (dict "enabled" true "namespace" .Release.Namespace "lease_name" (first .Values.leaderElection.leaseNames))
  "journal" (dict "backend" .Values.journal.backend "namespace" (include "aiops.journalNamespace" .)) }}
{{- toYaml (mergeOverwrite $generated (deepCopy .Values.config)) }}
{{- end }}
