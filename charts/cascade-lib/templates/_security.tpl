{{/*
Security wiring (values `security:`): client authentication, rate limits and
load shedding at the router; the internal service token; mTLS between
services. Secrets are mounted from existing Secrets by name, never rendered
from values; whole-Secret volumes (never subPath) so rotation reaches the
running pods (the services re-read the files when they change).
*/}}

{{/* "true" when this component serves mTLS. */}}
{{- define "cascade-lib.mtlsServer" -}}
{{- $m := .root.Values.security.mtls -}}
{{- if and $m.enabled (eq .c.type "grpc") (has .name $m.servers) -}}true{{- end -}}
{{- end -}}

{{/* "true" when this component calls a component that serves mTLS. */}}
{{- define "cascade-lib.mtlsClient" -}}
{{- $m := .root.Values.security.mtls -}}
{{- if $m.enabled -}}
{{- range $dep := .c.dependsOn | default list -}}{{- if has $dep $m.servers -}}true{{- end -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when this component holds the internal service token (gRPC services: servers check it, the router sends it). */}}
{{- define "cascade-lib.serviceToken" -}}
{{- if and .root.Values.security.internalToken.existingSecret (eq .c.type "grpc") -}}true{{- end -}}
{{- end -}}

{{/* Port of the native gRPC probes: mTLS servers answer kubelet on a plaintext health-only port. */}}
{{- define "cascade-lib.grpcProbePort" -}}
{{- if include "cascade-lib.mtlsServer" . -}}{{ .root.Values.security.mtls.healthPort }}{{- else -}}{{ .c.port }}{{- end -}}
{{- end -}}

{{- define "cascade-lib.securityEnv" -}}
{{- $s := .root.Values.security -}}
{{- if eq .name "router" }}
{{- with $s.auth }}
- name: CASCADE_AUTH__MODE
  value: {{ .mode | quote }}
{{- if eq .mode "api_key" }}
- name: CASCADE_AUTH__API_KEYS_FILE
  value: {{ printf "/etc/cascade/auth/%s" .apiKeys.key | quote }}
{{- else if eq .mode "jwt" }}
- name: CASCADE_AUTH__JWT__JWKS_FILE
  value: {{ printf "/etc/cascade/auth/%s" .jwt.jwks.key | quote }}
- name: CASCADE_AUTH__JWT__ISSUER
  value: {{ .jwt.issuer | quote }}
- name: CASCADE_AUTH__JWT__AUDIENCE
  value: {{ .jwt.audience | quote }}
- name: CASCADE_AUTH__JWT__CLIENT_ID_CLAIM
  value: {{ .jwt.clientIdClaim | quote }}
{{- end }}
{{- end }}
{{- with $s.rateLimit }}
- name: CASCADE_RATE_LIMIT__ENABLED
  value: {{ .enabled | quote }}
- name: CASCADE_RATE_LIMIT__DEFAULT__RATE_PER_S
  value: {{ .default.ratePerSecond | quote }}
- name: CASCADE_RATE_LIMIT__DEFAULT__BURST
  value: {{ .default.burst | quote }}
{{- $clients := dict }}
{{- range $id, $l := .clients }}
{{- $_ := set $clients $id (dict "rate_per_s" $l.ratePerSecond "burst" $l.burst) }}
{{- end }}
- name: CASCADE_RATE_LIMIT__CLIENTS
  value: {{ $clients | toJson | quote }}
{{- end }}
{{- with $s.shedding }}
{{- if .enabled }}
- name: CASCADE_SHEDDING__SOFT_LIMIT
  value: {{ .softLimit | quote }}
- name: CASCADE_SHEDDING__HARD_LIMIT
  value: {{ .hardLimit | quote }}
- name: CASCADE_SHEDDING__MIN_QUALITY
  value: {{ .minQuality | quote }}
- name: CASCADE_SHEDDING__RETRY_AFTER_S
  value: {{ .retryAfterSeconds | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if include "cascade-lib.serviceToken" . }}
- name: CASCADE_INTERNAL_AUTH__TOKEN_FILE
  value: {{ printf "/etc/cascade/service-token/%s" $s.internalToken.key | quote }}
{{- end }}
{{- if include "cascade-lib.mtlsServer" . }}
- name: CASCADE_TLS__ENABLED
  value: "true"
- name: CASCADE_TLS__CERT_FILE
  value: /etc/cascade/mtls/tls.crt
- name: CASCADE_TLS__KEY_FILE
  value: /etc/cascade/mtls/tls.key
- name: CASCADE_TLS__CA_FILE
  value: /etc/cascade/mtls/ca.crt
- name: CASCADE_TLS__HEALTH_PORT
  value: {{ $s.mtls.healthPort | quote }}
{{- end }}
{{- if include "cascade-lib.mtlsClient" . }}
- name: CASCADE_CLIENT_TLS__ENABLED
  value: "true"
- name: CASCADE_CLIENT_TLS__CERT_FILE
  value: /etc/cascade/mtls/tls.crt
- name: CASCADE_CLIENT_TLS__KEY_FILE
  value: /etc/cascade/mtls/tls.key
- name: CASCADE_CLIENT_TLS__CA_FILE
  value: /etc/cascade/mtls/ca.crt
{{- with $s.mtls.serverName }}
- name: CASCADE_CLIENT_TLS__SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cascade-lib.authSecret" -}}
{{- $a := .root.Values.security.auth -}}
{{- if and (eq .name "router") (eq $a.mode "api_key") -}}
{{ required "security.auth.apiKeys.existingSecret is required when security.auth.mode=api_key" $a.apiKeys.existingSecret }}
{{- else if and (eq .name "router") (eq $a.mode "jwt") -}}
{{ required "security.auth.jwt.jwks.existingSecret is required when security.auth.mode=jwt" $a.jwt.jwks.existingSecret }}
{{- end -}}
{{- end -}}

{{- define "cascade-lib.securityMounts" -}}
{{- if include "cascade-lib.authSecret" . }}
- name: client-auth
  mountPath: /etc/cascade/auth
  readOnly: true
{{- end }}
{{- if include "cascade-lib.serviceToken" . }}
- name: service-token
  mountPath: /etc/cascade/service-token
  readOnly: true
{{- end }}
{{- if or (include "cascade-lib.mtlsServer" .) (include "cascade-lib.mtlsClient" .) }}
- name: mtls
  mountPath: /etc/cascade/mtls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "cascade-lib.securityVolumes" -}}
{{- $s := .root.Values.security -}}
{{- with include "cascade-lib.authSecret" . }}
- name: client-auth
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- if include "cascade-lib.serviceToken" . }}
- name: service-token
  secret:
    secretName: {{ $s.internalToken.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if or (include "cascade-lib.mtlsServer" .) (include "cascade-lib.mtlsClient" .) }}
- name: mtls
  secret:
    secretName: {{ required "security.mtls.existingSecret is required when security.mtls.enabled" $s.mtls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}
