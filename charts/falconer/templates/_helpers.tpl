{{/* Names, labels and the pieces every Falconer pod shares. */}}

{{- define "falconer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object prefix: <release>-falconer, or the release name when it contains the chart name. */}}
{{- define "falconer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>", e.g. falconer-hub (the Service the Policy's default hubUrl names). */}}
{{- define "falconer.component" -}}
{{- printf "%s-%s" (include "falconer.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "falconer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "falconer.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "falconer.labels" -}}
{{ include "falconer.selectorLabels" . }}
app.kubernetes.io/part-of: falconer
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "falconer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "falconer.postgresql" -}}
{{- eq .Values.database.type "postgresql" }}
{{- end }}

{{/* The hub serves HTTPS on its own listener. */}}
{{- define "falconer.hubScheme" -}}
{{- if .Values.hub.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
Environment shared by every Falconer container: the database URL and token hashes from
Secrets (environment variables override the configuration file), then the user's extras.
*/}}
{{- define "falconer.env" -}}
{{- $root := .root -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if eq $root.Values.database.type "postgresql" }}
- name: FALCONER__STORE__DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.database.postgresql.existingSecret }}
      key: {{ $root.Values.database.postgresql.key }}
{{- end }}
{{- $auth := fromYaml (include "falconer.auth" $root) }}
{{- range $kind := list "ingest" "query" }}
{{- $a := get $auth $kind }}
{{- if eq $a.mode "secret" }}
- name: {{ printf "FALCONER__AUTH__%s_TOKEN_SHA256" (upper $kind) }}
  valueFrom:
    secretKeyRef:
      name: {{ $a.secret }}
      key: {{ printf "%s-token-sha256" $kind }}
{{- end }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level settings every component shares. */}}
{{- define "falconer.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A checksum of the generated configuration, so a values change rolls the pods. */}}
{{- define "falconer.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/*
How each API's tokens are configured, as YAML:
  {ingest: {mode, hashes | secret | tokens}, query: {mode, hashes | secret | token}}.
mode is `hashes` (listed in values), `secret` (auth.existingSecret) or `generated`: random
tokens kept in their Secret across upgrades — for ingest one per agent (`tokens`: key →
token, keys `falco`, `kube-bench`, `trivy`, each bound on the hub to its source and this
cluster), for query one. A token found in an existing Secret shorter than 32 characters (less
than 128 bits) fails the render. Computed once per render and cached, so the hashes and the
Secrets always match.
*/}}
{{- define "falconer.auth" -}}
{{- if not (hasKey .Values.auth "_resolved") }}
{{- $resolved := dict }}
{{- range $kind := list "ingest" "query" }}
{{- $hashes := get $.Values.auth (printf "%sTokenSha256" $kind) }}
{{- $secretName := get $.Values.auth.generate (printf "%sSecretName" $kind) }}
{{- if $hashes }}
{{- $_ := set $resolved $kind (dict "mode" "hashes" "hashes" $hashes) }}
{{- else if $.Values.auth.existingSecret }}
{{- $_ := set $resolved $kind (dict "mode" "secret" "secret" $.Values.auth.existingSecret) }}
{{- else if $.Values.auth.generate.enabled }}
{{- $existing := lookup "v1" "Secret" $.Release.Namespace $secretName }}
{{- $data := dict }}
{{- if and $existing $existing.data }}{{ $data = $existing.data }}{{ end }}
{{- $keys := ternary (list "falco" "kube-bench" "trivy") (list "token") (eq $kind "ingest") }}
{{- $tokens := dict }}
{{- range $key := $keys }}
{{- $token := randAlphaNum 48 }}
{{- if hasKey $data $key }}
{{- $token = index $data $key | b64dec }}
{{- if lt (len $token) 32 }}
{{- fail (printf "auth: Secret %s key %s holds a token of %d characters; tokens need at least 32 (128 bits): delete the key and upgrade to generate one" $secretName $key (len $token)) }}
{{- end }}
{{- end }}
{{- $_ := set $tokens $key $token }}
{{- end }}
{{- $_ := set $resolved $kind (dict "mode" "generated" "tokens" $tokens "secret" $secretName) }}
{{- else }}
{{- fail (printf "auth: no %s token: list auth.%sTokenSha256, set auth.existingSecret, or enable auth.generate" $kind $kind) }}
{{- end }}
{{- end }}
{{- $_ := set .Values.auth "_resolved" $resolved }}
{{- end }}
{{- toYaml .Values.auth._resolved }}
{{- end }}

{{/*
The hub's `auth` section, as YAML (`{auth: …}`): kept in a Secret, not the ConfigMap, and
read as a second --config file.
*/}}
{{- define "falconer.authConfig" -}}
{{- $auth := fromYaml (include "falconer.auth" .) }}
{{- $section := dict }}
{{- $tokens := list }}
{{- if eq $auth.ingest.mode "hashes" }}
{{- $_ := set $section "ingest_token_sha256" $auth.ingest.hashes }}
{{- else if eq $auth.ingest.mode "generated" }}
{{- range $agent, $token := $auth.ingest.tokens }}
{{- $tokens = append $tokens (dict "name" (printf "agent-%s" $agent) "sha256" (sha256sum $token) "scopes" (list "ingest") "clusters" (list $.Values.cluster) "sources" (list $agent)) }}
{{- end }}
{{- end }}
{{- if eq $auth.query.mode "hashes" }}
{{- $_ := set $section "query_token_sha256" $auth.query.hashes }}
{{- else if eq $auth.query.mode "generated" }}
{{- $_ := set $section "query_token_sha256" (list (sha256sum $auth.query.tokens.token)) }}
{{- end }}
{{- $tokens = concat $tokens .Values.auth.tokens }}
{{- if $tokens }}
{{- $_ := set $section "tokens" $tokens }}
{{- end }}
{{- toYaml (dict "auth" $section) }}
{{- end }}
