{{/* ServiceMonitor (prometheus-operator): scrape the component's metrics port on its ClusterIP Service. */}}
{{- define "cascade-lib.serviceMonitor" -}}
{{- $sm := .root.Values.monitoring.serviceMonitor -}}
{{- include "cascade-lib.requireApi" (list .root "monitoring.coreos.com/v1/ServiceMonitor" "monitoring.serviceMonitor.enabled") -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "cascade-lib.name" . }}
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "cascade-lib.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace }}]
  endpoints:
    - port: {{ include "cascade-lib.metricsPortName" . }}
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
{{- end -}}

{{/*
NetworkPolicy (ingress only): serving port(s) open to the listed in-release
components and namespace selectors; metrics port open to the monitoring
namespace. A release-wide default-deny (app chart) closes everything else.
*/}}
{{- define "cascade-lib.networkPolicy" -}}
{{- $root := .root -}}
{{- $np := $root.Values.networkPolicy -}}
{{- $c := .c -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "cascade-lib.name" . }}
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "cascade-lib.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    {{- if or $c.allowFrom $c.allowFromNamespaces }}
    - from:
        {{- range $c.allowFrom }}
        - podSelector:
            matchLabels:
              {{- include "cascade-lib.selectorLabels" (dict "root" $root "name" .) | nindent 14 }}
        {{- end }}
        {{- range $c.allowFromNamespaces }}
        - namespaceSelector:
            {{- toYaml . | nindent 12 }}
        {{- end }}
      ports:
        {{- if has $c.type (list "grpc" "triton") }}
        - {port: {{ $c.port }}, protocol: TCP}
        {{- end }}
        {{- if has $c.type (list "http" "triton") }}
        - {port: {{ $c.httpPort | default $c.port }}, protocol: TCP}
        {{- end }}
    {{- end }}
    - from:
        - namespaceSelector:
            {{- toYaml $np.monitoringNamespaceSelector | nindent 12 }}
      ports:
        - {port: {{ ternary $c.port $c.metricsPort (eq $c.type "http") }}, protocol: TCP}
{{- end -}}
