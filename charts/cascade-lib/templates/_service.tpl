{{/*
Services of one component:
  <name>           ClusterIP: stable name for humans/kube-proxy clients and the
                   metrics endpoint ServiceMonitors select.
  <name>-headless  clusterIP None: DNS returns every ready pod IP so gRPC
                   clients using dns:/// + round_robin spread calls per pod
                   (kube-proxy balances connections, not requests).
*/}}
{{- define "cascade-lib.services" -}}
{{- $c := .c -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "cascade-lib.name" . }}
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "cascade-lib.selectorLabels" . | nindent 4 }}
  ports:
    {{- if eq $c.type "grpc" }}
    - {name: grpc, port: {{ $c.port }}, targetPort: grpc, appProtocol: grpc}
    - {name: metrics, port: {{ $c.metricsPort }}, targetPort: metrics, appProtocol: http}
    {{- else if eq $c.type "http" }}
    - {name: http, port: {{ $c.port }}, targetPort: http, appProtocol: http}
    {{- else if eq $c.type "worker" }}
    - {name: metrics, port: {{ $c.metricsPort }}, targetPort: metrics, appProtocol: http}
    {{- else if eq $c.type "triton" }}
    - {name: http, port: {{ $c.httpPort }}, targetPort: http, appProtocol: http}
    - {name: grpc, port: {{ $c.port }}, targetPort: grpc, appProtocol: grpc}
    - {name: metrics, port: {{ $c.metricsPort }}, targetPort: metrics, appProtocol: http}
    {{- end }}
{{- if has $c.type (list "grpc" "triton") }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "cascade-lib.name" . }}-headless
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  clusterIP: None
  # Only ready (warm) pods are published to clients.
  publishNotReadyAddresses: false
  selector:
    {{- include "cascade-lib.selectorLabels" . | nindent 4 }}
  ports:
    - {name: grpc, port: {{ $c.port }}, targetPort: grpc, appProtocol: grpc}
{{- end }}
{{- end -}}
