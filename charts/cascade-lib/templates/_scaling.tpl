{{/* Reference to the component's workload (Deployment or Rollout) for autoscalers. */}}
{{- define "cascade-lib.scaleTargetRef" -}}
{{- if include "cascade-lib.isRollout" . -}}
apiVersion: argoproj.io/v1alpha1
kind: Rollout
{{- else -}}
apiVersion: apps/v1
kind: Deployment
{{- end }}
name: {{ include "cascade-lib.name" . }}
{{- end -}}

{{/*
HorizontalPodAutoscaler (autoscaling/v2): CPU utilisation and/or per-pod
custom metrics served by prometheus-adapter (k8s/base/monitoring), e.g.
cascade_grpc_inflight_requests or Triton's queue time per request.
*/}}
{{- define "cascade-lib.hpa" -}}
{{- $a := .c.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "cascade-lib.name" . }}
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    {{- include "cascade-lib.scaleTargetRef" . | nindent 4 }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- with $a.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ . }}}
    {{- end }}
    {{- range $a.podMetrics }}
    - type: Pods
      pods:
        metric: {name: {{ .name }}}
        target: {type: AverageValue, averageValue: {{ .averageValue | quote }}}
    {{- end }}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 30}]
    scaleDown:
      stabilizationWindowSeconds: {{ $a.scaleDownStabilizationSeconds }}
      policies: [{type: Percent, value: 20, periodSeconds: 60}]
{{- end -}}

{{/*
KEDA ScaledObject for the Kafka consumer: scales on consumer-group lag of the
input topics. maxReplicaCount is capped at the partition count (extra consumers
would sit idle); rendering fails if values ask for more.
*/}}
{{- define "cascade-lib.scaledObject" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $a := .c.autoscaling -}}
{{- $k := .c.kafka -}}
{{- if gt (int $a.maxReplicas) (int $k.partitions) -}}
{{- fail (printf "components.%s.autoscaling.maxReplicas (%v) exceeds kafka.partitions (%v)" .name $a.maxReplicas $k.partitions) -}}
{{- end -}}
{{- include "cascade-lib.requireApi" (list $root "keda.sh/v1alpha1/ScaledObject" "keda.enabled") -}}
{{- $auth := $v.config.kafka.sasl.existingSecret -}}
{{- if $auth }}
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: {{ include "cascade-lib.name" . }}-kafka
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  secretTargetRef:
    - {parameter: username, name: {{ $auth }}, key: {{ $v.config.kafka.sasl.usernameKey }}}
    - {parameter: password, name: {{ $auth }}, key: {{ $v.config.kafka.sasl.passwordKey }}}
    {{- with $v.config.kafka.tls.caSecret }}
    - {parameter: ca, name: {{ . }}, key: {{ $v.config.kafka.tls.caKey }}}
    {{- end }}
---
{{- end }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "cascade-lib.name" . }}
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    {{- include "cascade-lib.scaleTargetRef" . | nindent 4 }}
  pollingInterval: {{ $v.keda.pollingInterval }}
  cooldownPeriod: {{ $v.keda.cooldownPeriod }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  # One trigger per consumer group of the worker (users on the events topic, items on the
  # by-item topic), or per entry of kafka.lagTriggers [{name, topic}] (group = groupId);
  # KEDA scales to the larger demand.
  {{- $triggers := list (dict "name" "users" "group" (printf "%s.users" $k.groupId) "topic" $k.topics.events) (dict "name" "items" "group" (printf "%s.items" $k.groupId) "topic" $k.topics.byItem) }}
  {{- with $k.lagTriggers }}
  {{- $triggers = list }}
  {{- range . }}
  {{- $triggers = append $triggers (dict "name" .name "group" $k.groupId "topic" .topic) }}
  {{- end }}
  {{- end }}
  triggers:
    {{- range $triggers }}
    - type: kafka
      name: {{ .name }}-lag
      metadata:
        bootstrapServers: {{ $v.config.kafka.bootstrapServers | quote }}
        consumerGroup: {{ .group | quote }}
        topic: {{ .topic | quote }}
        lagThreshold: {{ $k.lagThreshold | quote }}
        offsetResetPolicy: latest
        allowIdleConsumers: "false"
        {{- if $auth }}
        sasl: {{ get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") $v.config.kafka.sasl.mechanism | quote }}
        {{- end }}
        tls: {{ ternary "enable" "disable" (hasSuffix "SSL" $v.config.kafka.securityProtocol) | quote }}
      {{- if $auth }}
      authenticationRef:
        name: {{ include "cascade-lib.name" $ }}-kafka
      {{- end }}
    {{- end }}
{{- end -}}

{{/*
PodDisruptionBudget (policy/v1) with the same selector as the pods, so
voluntary evictions (node drains, upgrades) keep serving capacity.
*/}}
{{- define "cascade-lib.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "cascade-lib.name" . }}
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  {{- if hasKey .c.pdb "minAvailable" }}
  minAvailable: {{ .c.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .c.pdb.maxUnavailable }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "cascade-lib.selectorLabels" . | nindent 6 }}
{{- end -}}
