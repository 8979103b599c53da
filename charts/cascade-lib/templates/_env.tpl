{{/*
Per-container environment. Shared, non-secret settings come from the release
ConfigMap (envFrom); here: ports, downstream gRPC targets (headless Services
+ dns:/// so clients can round_robin across pods), and secrets by reference
only (secretKeyRef: the chart never holds a secret value).
*/}}
{{- define "cascade-lib.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $c := .c -}}
{{- $full := include "cascade-lib.fullname" $root -}}
{{- $conns := $c.connections | default list -}}
- name: CASCADE_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if ne $c.type "triton" }}
- name: CASCADE_SERVICE_NAME
  value: {{ .name | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "cascade-%s" .name | quote }}
{{- end }}
{{- if has $c.type (list "grpc" "http") }}
- name: CASCADE_PORT
  value: {{ $c.port | quote }}
{{- end }}
{{- if has $c.type (list "grpc" "worker") }}
- name: CASCADE_METRICS_PORT
  value: {{ $c.metricsPort | quote }}
{{- end }}
{{- range $dep := $c.dependsOn | default list }}
{{- $d := index $v.components $dep }}
- name: {{ printf "CASCADE_%s_TARGET" (upper $dep) }}
  value: {{ printf "dns:///%s-%s-headless:%v" $full $dep $d.port | quote }}
{{- end }}
{{- if eq ($c.rankerBackend | default "") "triton" }}
# tritonclient keeps one channel per ranking pod: the ClusterIP spreads those across Triton pods.
- name: CASCADE_BACKEND__TYPE
  value: triton
- name: CASCADE_BACKEND__URL
  value: {{ printf "%s-triton:%v" $full $v.components.triton.port | quote }}
{{- end }}
{{- if $c.artifacts }}
- name: CASCADE_ARTIFACTS_DIR
  value: {{ $v.artifacts.mountPath | quote }}
{{- end }}
{{- with $c.routing }}{{ if .enabled }}
{{- /* Ranking: the routing ConfigMap is mounted as a directory (never subPath), see cascade-lib.configVolumes. */}}
- name: CASCADE_MODEL_ROUTING_FILE
  value: {{ printf "%s/routing.json" .mountPath | quote }}
- name: CASCADE_ROUTING_POLL_S
  value: {{ .pollSeconds | quote }}
{{- end }}{{ end }}
{{- with $c.experiments }}{{ if .enabled }}
{{- /* Router: the experiments ConfigMap is mounted as a directory (never subPath). */}}
- name: CASCADE_EXPERIMENTS_FILE
  value: {{ printf "%s/experiments.yaml" .mountPath | quote }}
- name: CASCADE_EXPERIMENTS_POLL_S
  value: {{ .pollSeconds | quote }}
{{- end }}{{ end }}
{{- with $c.exposures }}{{ if .enabled }}
{{- /* Router: exposure events to Kafka, same cluster and security settings as the stream worker. */}}
- name: CASCADE_EXPOSURES__BOOTSTRAP_SERVERS
  value: {{ $v.config.kafka.bootstrapServers | quote }}
- name: CASCADE_EXPOSURES__TOPIC
  value: {{ .topic | quote }}
- name: CASCADE_EXPOSURES__QUEUE_SIZE
  value: {{ .queueSize | quote }}
- name: CASCADE_EXPOSURES__SECURITY_PROTOCOL
  value: {{ $v.config.kafka.securityProtocol | quote }}
{{- with $v.config.kafka.sasl.existingSecret }}
- name: CASCADE_EXPOSURES__SASL_MECHANISM
  value: {{ $v.config.kafka.sasl.mechanism | quote }}
- name: CASCADE_EXPOSURES__SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.config.kafka.sasl.usernameKey }}}
- name: CASCADE_EXPOSURES__SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.config.kafka.sasl.passwordKey }}}
{{- end }}
{{- if $v.config.kafka.tls.caSecret }}
- name: CASCADE_EXPOSURES__SSL_CAFILE
  value: /etc/cascade/kafka-ca/ca.crt
{{- end }}
{{- end }}{{ end }}
{{- if has "kafka" $conns }}
{{- with $c.kafka }}
{{- /* Stream worker: consumer groups are <groupId>.users and <groupId>.items; topics are managed
by the platform (Strimzi KafkaTopic / MSK), never auto-created by the worker. */}}
- name: CASCADE_GROUP_ID
  value: {{ .groupId | quote }}
- name: CASCADE_TOPICS__EVENTS
  value: {{ .topics.events | quote }}
- name: CASCADE_TOPICS__DLQ
  value: {{ .topics.dlq | quote }}
- name: CASCADE_TOPICS__BY_ITEM
  value: {{ .topics.byItem | quote }}
- name: CASCADE_TOPICS__PARTITIONS
  value: {{ .partitions | quote }}
- name: CASCADE_CREATE_TOPICS
  value: "false"
{{- end }}
{{- with $v.config.kafka.sasl.existingSecret }}
- name: CASCADE_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.config.kafka.sasl.usernameKey }}}
- name: CASCADE_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.config.kafka.sasl.passwordKey }}}
{{- end }}
{{- if $v.config.kafka.tls.caSecret }}
- name: CASCADE_KAFKA__SSL_CAFILE
  value: /etc/cascade/kafka-ca/ca.crt
{{- end }}
{{- end }}
{{- if has "redis" $conns }}
{{- with $v.config.redis.existingSecret }}
- name: CASCADE_ONLINE_STORE__PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.config.redis.passwordKey }}}
{{- end }}
{{- end }}
{{- if has "mlflow" $conns }}
{{- with $v.config.mlflow.existingSecret }}
- name: CASCADE_MLFLOW_TRACKING_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.config.mlflow.tokenKey }}}
{{- end }}
{{- end }}
{{- include "cascade-lib.securityEnv" . }}
{{- range $k, $val := $c.env }}
- name: {{ $k }}
  value: {{ $val | quote }}
{{- end }}
{{- end -}}
