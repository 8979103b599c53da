{{/*
Naming, labels and small utilities shared by every Cascade template.

Calling convention for component templates: a dict with
  root - the top-level context ($)
  name - the component key (router, retrieval, ..., triton)
  c    - the component's values (.Values.components.<name>)
*/}}

{{/* Release-level prefix: fullnameOverride or the release name. */}}
{{- define "cascade-lib.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name of one component, e.g. cascade-retrieval. */}}
{{- define "cascade-lib.name" -}}
{{- printf "%s-%s" (include "cascade-lib.fullname" .root) .name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels used in selectors: must never change between upgrades. */}}
{{- define "cascade-lib.selectorLabels" -}}
app.kubernetes.io/name: cascade
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Full label set for objects and pods. */}}
{{- define "cascade-lib.labels" -}}
{{ include "cascade-lib.selectorLabels" . }}
app.kubernetes.io/part-of: cascade
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Release-wide labels (objects not tied to one component). */}}
{{- define "cascade-lib.releaseLabels" -}}
app.kubernetes.io/name: cascade
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: cascade
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Image reference: [global.imageRegistry/]repository:tag (tag defaults to global tag, then appVersion). */}}
{{- define "cascade-lib.image" -}}
{{- $g := .root.Values.global -}}
{{- $repo := .c.image.repository -}}
{{- if and $g.imageRegistry (not (contains "/" $repo)) -}}
{{- $repo = printf "%s/%s" $g.imageRegistry $repo -}}
{{- end -}}
{{- $tag := .c.image.tag | default $g.imageTag | default .root.Chart.AppVersion -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/*
"true" when an API group/version/kind is served: from .Capabilities (a live
cluster or `helm template --api-versions`) or listed in global.extraApiVersions
(for GitOps renderers that cannot see the cluster). Args: list root "group/version/Kind".
*/}}
{{- define "cascade-lib.apiAvailable" -}}
{{- $root := index . 0 -}}
{{- $api := index . 1 -}}
{{- if or ($root.Capabilities.APIVersions.Has $api) (has $api ($root.Values.global.extraApiVersions | default list)) -}}
true
{{- end -}}
{{- end -}}

{{/* Fail rendering with an actionable message when a feature needs a missing CRD. Args: list root api feature. */}}
{{- define "cascade-lib.requireApi" -}}
{{- $root := index . 0 -}}
{{- $api := index . 1 -}}
{{- if not (include "cascade-lib.apiAvailable" (list $root $api)) -}}
{{- fail (printf "%s needs the %s API (install its CRDs, pass --api-versions %s, or add it to global.extraApiVersions); disable %s otherwise" (index . 2) $api $api (index . 2)) -}}
{{- end -}}
{{- end -}}

{{/* Name of the port Prometheus scrapes: gateway-style HTTP apps serve /metrics on their main port. */}}
{{- define "cascade-lib.metricsPortName" -}}
{{- if eq .c.type "http" -}}http{{- else -}}metrics{{- end -}}
{{- end -}}

{{/* True when this component renders as an Argo Rollout. */}}
{{- define "cascade-lib.isRollout" -}}
{{- if and .root.Values.rollouts.enabled .c.canary .c.canary.enabled -}}true{{- end -}}
{{- end -}}
