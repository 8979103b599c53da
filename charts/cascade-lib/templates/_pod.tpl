{{/*
Pod template shared by Deployments and Rollouts: hardened securityContext,
native gRPC probes, metrics port, env wiring, /tmp emptyDir (the root
filesystem is read-only), topology spread and the model-artifact init container.
*/}}
{{- define "cascade-lib.podTemplate" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $v := $root.Values -}}
metadata:
  labels:
    {{- include "cascade-lib.labels" . | nindent 4 }}
  annotations:
    # Roll pods when shared configuration changes.
    checksum/config: {{ list $v.config $v.grpc $v.modelVersion | toJson | sha256sum }}
    {{- with $c.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "cascade-lib.fullname" $root }}
  # Workloads never call the Kubernetes API; IRSA tokens are projected separately.
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds | default 30 }}
  {{- with $v.global.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  topologySpreadConstraints:
    {{- range $v.topologySpread }}
    - maxSkew: {{ .maxSkew }}
      topologyKey: {{ .topologyKey }}
      whenUnsatisfiable: {{ .whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "cascade-lib.selectorLabels" $ | nindent 10 }}
    {{- end }}
  {{- if or $c.artifacts (eq $c.type "triton") }}
  initContainers:
    {{- include "cascade-lib.fetchContainer" . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .name }}
      image: {{ include "cascade-lib.image" . }}
      imagePullPolicy: {{ $c.image.pullPolicy | default $v.global.imagePullPolicy }}
      {{- with $c.command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if ne $c.type "triton" }}
      envFrom:
        - configMapRef:
            name: {{ include "cascade-lib.fullname" $root }}-config
      {{- end }}
      env:
        {{- include "cascade-lib.env" . | nindent 8 }}
      ports:
        {{- include "cascade-lib.containerPorts" . | nindent 8 }}
      {{- include "cascade-lib.probes" . | nindent 6 }}
      resources:
        {{- toYaml $c.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $c.artifacts }}
        - name: artifacts
          mountPath: {{ $v.artifacts.mountPath }}
          readOnly: true
        {{- end }}
        {{- if eq $c.type "triton" }}
        - name: models
          mountPath: /models
          readOnly: true
        - name: dshm
          mountPath: /dev/shm
        {{- end }}
        {{- if and (include "cascade-lib.usesKafka" .) $v.config.kafka.tls.caSecret }}
        - name: kafka-ca
          mountPath: /etc/cascade/kafka-ca
          readOnly: true
        {{- end }}
        {{- include "cascade-lib.configMounts" . | nindent 8 }}
        {{- include "cascade-lib.securityMounts" . | nindent 8 }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $c.tmpSizeLimit | default "256Mi" }}
    {{- if $c.artifacts }}
    - name: artifacts
      emptyDir:
        sizeLimit: {{ $v.artifacts.sizeLimit }}
    {{- end }}
    {{- if eq $c.type "triton" }}
    - name: models
      emptyDir:
        sizeLimit: {{ $v.artifacts.sizeLimit }}
    # Triton backends exchange tensors through shared memory; the runtime default is 64Mi.
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: 1Gi
    {{- end }}
    {{- if and (include "cascade-lib.usesKafka" .) $v.config.kafka.tls.caSecret }}
    - name: kafka-ca
      secret:
        secretName: {{ $v.config.kafka.tls.caSecret }}
        items:
          - key: {{ $v.config.kafka.tls.caKey }}
            path: ca.crt
    {{- end }}
    {{- include "cascade-lib.configVolumes" . | nindent 4 }}
    {{- include "cascade-lib.securityVolumes" . | nindent 4 }}
{{- end -}}

{{/* Init container: copy the model registry (services) or the Triton model repository from object storage. */}}
{{- define "cascade-lib.fetchContainer" -}}
{{- $v := .root.Values -}}
{{- $triton := eq .c.type "triton" -}}
{{- $dest := ternary "/models" $v.artifacts.mountPath $triton -}}
{{- $src := ternary (printf "%s/%s/%s/" $v.artifacts.uri $v.artifacts.tritonPrefix $v.modelVersion) (printf "%s/%s/%s/" $v.artifacts.uri $v.artifacts.registryPrefix $v.modelVersion) $triton -}}
{{- $dst := ternary (printf "%s/" $dest) (printf "%s/registry/%s/" $dest $v.modelVersion) $triton -}}
- name: fetch-models
  image: {{ $v.artifacts.fetcher.image }}
  imagePullPolicy: {{ $v.global.imagePullPolicy }}
  {{- if and (not $triton) .c.routing .c.routing.enabled }}
  {{- /* Ranking with hot-reloaded routing: the ranker files of every registry version, so any version
  the routing ConfigMap names later (kubectl cascade promote) is on disk; versions uploaded after the
  pod started need a restart of the ranking pods. */}}
  command: ["aws", "s3", "sync", "--only-show-errors", "--no-progress",
            "--exclude", "*", "--include", "LATEST", "--include", "*/manifest.json", "--include", "*/ranker.onnx",
            {{ printf "%s/%s/" $v.artifacts.uri $v.artifacts.registryPrefix | quote }}, {{ printf "%s/registry/" $dest | quote }}]
  {{- else }}
  command: ["aws", "s3", "sync", "--only-show-errors", "--no-progress", {{ $src | quote }}, {{ $dst | quote }}]
  {{- end }}
  env:
    - name: HOME
      value: /tmp
    {{- with $v.artifacts.region }}
    - name: AWS_REGION
      value: {{ . | quote }}
    {{- end }}
  resources:
    {{- toYaml $v.artifacts.fetcher.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: {{ ternary "models" "artifacts" $triton }}
      mountPath: {{ $dest }}
{{- end -}}

{{/* Container ports by component type. */}}
{{- define "cascade-lib.containerPorts" -}}
{{- $c := .c -}}
{{- if eq $c.type "grpc" }}
- name: grpc
  containerPort: {{ $c.port }}
- name: metrics
  containerPort: {{ $c.metricsPort }}
{{- else if eq $c.type "http" }}
- name: http
  containerPort: {{ $c.port }}
{{- else if eq $c.type "worker" }}
- name: metrics
  containerPort: {{ $c.metricsPort }}
{{- else if eq $c.type "triton" }}
- name: http
  containerPort: {{ $c.httpPort }}
- name: grpc
  containerPort: {{ $c.port }}
- name: metrics
  containerPort: {{ $c.metricsPort }}
{{- end }}
{{- end -}}

{{/*
Probes: gRPC services use native gRPC probes against grpc.health.v1 (SERVING
only once warm); a startup probe covers slow warm-up (index and model loads).
*/}}
{{- define "cascade-lib.probes" -}}
{{- $c := .c -}}
{{- $p := $c.probes -}}
{{- if eq $c.type "grpc" }}
{{- $h := dict "grpc" (dict "port" (int (include "cascade-lib.grpcProbePort" .))) }}
startupProbe:
  {{- toYaml $h | nindent 2 }}
  periodSeconds: 5
  failureThreshold: {{ $p.startupFailureThreshold }}
livenessProbe:
  {{- toYaml $h | nindent 2 }}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  {{- toYaml $h | nindent 2 }}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- else }}
{{- $port := ternary "metrics" "http" (eq $c.type "worker") }}
startupProbe:
  httpGet: {path: {{ $p.readinessPath }}, port: {{ $port }}}
  periodSeconds: 5
  failureThreshold: {{ $p.startupFailureThreshold }}
livenessProbe:
  httpGet: {path: {{ $p.livenessPath }}, port: {{ $port }}}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: {path: {{ $p.readinessPath }}, port: {{ $port }}}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- end }}
{{- end -}}

{{/* "true" when the container talks to Kafka: a kafka connection or the router's exposure producer. */}}
{{- define "cascade-lib.usesKafka" -}}
{{- if or (has "kafka" (.c.connections | default list)) (and .c.exposures .c.exposures.enabled) -}}true{{- end -}}
{{- end -}}

{{/*
Hot-reloaded config files (ranking routing, router experiments). Always whole
ConfigMap volumes, never subPath: kubelet updates a ConfigMap volume by swapping
a symlink, which a subPath mount never sees. The services poll the file content.
*/}}
{{- define "cascade-lib.configMounts" -}}
{{- with .c.routing }}{{ if .enabled }}
- name: model-routing
  mountPath: {{ .mountPath }}
  readOnly: true
{{- end }}{{ end }}
{{- with .c.experiments }}{{ if .enabled }}
- name: experiments
  mountPath: {{ .mountPath }}
  readOnly: true
{{- end }}{{ end }}
{{- end -}}

{{- define "cascade-lib.configVolumes" -}}
{{- $full := include "cascade-lib.fullname" .root -}}
{{- with .c.routing }}{{ if .enabled }}
- name: model-routing
  configMap:
    name: {{ printf "%s-model-routing" $full }}
{{- end }}{{ end }}
{{- with .c.experiments }}{{ if .enabled }}
- name: experiments
  configMap:
    name: {{ printf "%s-experiments" $full }}
{{- end }}{{ end }}
{{- end -}}
