{{/*
Workload of one component: an Argo Rollout (canary with background analysis)
when rollouts.enabled and the component opts in, else a Deployment whose
rolling update never drops below the desired count (maxUnavailable 0).
Replicas are omitted when an autoscaler owns them.
*/}}
{{- define "cascade-lib.workload" -}}
{{- $v := .root.Values -}}
{{- $c := .c -}}
{{- $rollout := include "cascade-lib.isRollout" . -}}
{{- if $rollout }}
{{- include "cascade-lib.requireApi" (list .root "argoproj.io/v1alpha1/Rollout" "rollouts.enabled") }}
apiVersion: argoproj.io/v1alpha1
kind: Rollout
{{- else }}
apiVersion: apps/v1
kind: Deployment
{{- end }}
metadata:
  name: {{ include "cascade-lib.name" . }}
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
spec:
  {{- if not $c.autoscaling.enabled }}
  replicas: {{ $c.replicas }}
  {{- end }}
  revisionHistoryLimit: {{ $v.revisionHistoryLimit }}
  selector:
    matchLabels:
      {{- include "cascade-lib.selectorLabels" . | nindent 6 }}
  template:
    {{- include "cascade-lib.podTemplate" . | nindent 4 }}
  {{- if $rollout }}
  strategy:
    canary:
      maxSurge: {{ $v.rollouts.maxSurge | quote }}
      maxUnavailable: 0
      {{- with $c.canary.analyses }}
      analysis:
        startingStep: {{ $v.rollouts.analysisStartingStep }}
        templates:
          {{- range . }}
          - templateName: {{ printf "%s-%s" (include "cascade-lib.fullname" $.root) . }}
          {{- end }}
        args:
          - name: service
            value: {{ $c.metricsService | default $.name | quote }}
          - name: rollout
            value: {{ include "cascade-lib.name" $ }}
          - name: canary-hash
            valueFrom:
              podTemplateHashValue: Latest
      {{- end }}
      steps:
        {{- toYaml $v.rollouts.steps | nindent 8 }}
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ $v.rollingUpdate.maxSurge | quote }}
      maxUnavailable: 0
  {{- end }}
{{- end -}}
