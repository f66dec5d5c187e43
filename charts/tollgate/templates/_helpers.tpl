{{/* Names and labels. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tollgate.fullname" -}}
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

{{- define "tollgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tollgate.labels" -}}
helm.sh/chart: {{ include "tollgate.chart" . }}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: egress-proxy
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tollgate.image" -}}
{{- $repo := required "image.repository is required: there is no published tollgate image; build the repository's Dockerfile, push it to your registry and set image.repository (docs/kubernetes.md, \"The image\")" .Values.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/* Where the config and the credential Secrets are mounted in the pod. */}}
{{- define "tollgate.configDir" -}}/etc/tollgate{{- end }}
{{- define "tollgate.configPath" -}}/etc/tollgate/tollgate.yaml{{- end }}
{{- define "tollgate.secretsDir" -}}/var/run/secrets/tollgate{{- end }}
{{- define "tollgate.interceptionDir" -}}/var/run/secrets/tollgate-interception{{- end }}
{{- define "tollgate.storeDir" -}}/var/run/secrets/tollgate-store{{- end }}

{{/*
The user's config (values.config: a mapping, or the whole tollgate.yaml as a string) as
a dict, before the chart's additions.
*/}}
{{- define "tollgate.userConfig" -}}
{{- $raw := .Values.config }}
{{- $cfg := dict }}
{{- if kindIs "string" $raw }}
{{- if trim $raw }}
{{- $cfg = fromYaml $raw }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "config: the string is not a YAML mapping (a tollgate.yaml): %s" (get $cfg "Error")) }}
{{- end }}
{{- end }}
{{- else if kindIs "map" $raw }}
{{- $cfg = deepCopy $raw }}
{{- else if not (kindIs "invalid" $raw) }}
{{- fail "config: must be a mapping (the tollgate.yaml) or a string holding it" }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The config the pod runs: the user's, plus listen addresses on all interfaces unless the
user set them (tollgate's default, 127.0.0.1, is unreachable from outside the pod), and
`threads` from .Values.threads unless the user set it.
*/}}
{{- define "tollgate.config" -}}
{{- $cfg := fromYaml (include "tollgate.userConfig" .) }}
{{- $listen := dict }}
{{- if hasKey $cfg "listen" }}
{{- if kindIs "map" $cfg.listen }}
{{- $listen = $cfg.listen }}
{{- else if not (kindIs "invalid" $cfg.listen) }}
{{- fail "config.listen: must be a mapping with `proxy` and/or `admin`" }}
{{- end }}
{{- end }}
{{- if not (hasKey $listen "proxy") }}
{{- $_ := set $listen "proxy" (printf "0.0.0.0:%d" (int .Values.ports.proxy)) }}
{{- end }}
{{- if not (hasKey $listen "admin") }}
{{- $_ := set $listen "admin" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- end }}
{{- $_ := set $cfg "listen" $listen }}
{{- if and (not (hasKey $cfg "threads")) (not (kindIs "invalid" .Values.threads)) }}
{{- $_ := set $cfg "threads" (int .Values.threads) }}
{{- end }}
{{- with .Values.interception.caSecret }}
{{- $i := get $cfg "interception" | default dict }}
{{- if not (kindIs "map" $i) }}
{{- fail "config.interception: must be a mapping (ca_cert_file, ca_key_file, leaf_lifetime)" }}
{{- end }}
{{- $dir := include "tollgate.interceptionDir" $ }}
{{- if not (hasKey $i "ca_cert_file") }}{{ $_ := set $i "ca_cert_file" (printf "%s/tls.crt" $dir) }}{{ end }}
{{- if not (hasKey $i "ca_key_file") }}{{ $_ := set $i "ca_key_file" (printf "%s/tls.key" $dir) }}{{ end }}
{{- $_ := set $cfg "interception" $i }}
{{- end }}
{{- $ts := .Values.tokenStore }}
{{- if and $ts $ts.enabled (not (hasKey $cfg "token_store")) }}
{{- $_ := set $cfg "token_store" (fromYaml (include "tollgate.tokenStore" .)) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The `token_store` block the chart writes from .Values.tokenStore (empty unless enabled):
merged into a mapping config, appended to a string one.
*/}}
{{- define "tollgate.tokenStore" -}}
{{- $ts := .Values.tokenStore }}
{{- if and $ts $ts.enabled }}
{{- if not $ts.url }}
{{- fail "tokenStore.url: required with tokenStore.enabled (redis://HOST:PORT/DB or rediss://...)" }}
{{- end }}
{{- if not $ts.encryptionKeySecret.name }}
{{- fail "tokenStore.encryptionKeySecret.name: required with tokenStore.enabled: an existing Secret holding 32-byte keys (openssl rand -base64 32)" }}
{{- end }}
{{- $dir := include "tollgate.storeDir" . }}
{{- $redis := dict "url" $ts.url }}
{{- with $ts.username }}{{ $_ := set $redis "username" . }}{{ end }}
{{- if $ts.passwordSecret.name }}
{{- $_ := set $redis "password_file" (printf "%s/redis/%s" $dir $ts.passwordSecret.key) }}
{{- end }}
{{- with $ts.keyPrefix }}{{ $_ := set $redis "key_prefix" . }}{{ end }}
{{- with $ts.timeout }}{{ $_ := set $redis "timeout" . }}{{ end }}
{{- $files := list }}
{{- range $ts.encryptionKeySecret.keys }}
{{- $files = append $files (printf "%s/keys/%s" $dir .) }}
{{- end }}
{{- $store := dict "redis" $redis "encryption_key_files" $files }}
{{- with $ts.lockTimeout }}{{ $_ := set $store "lock_timeout" . }}{{ end }}
{{- toYaml $store }}
{{- end }}
{{- end }}

{{/*
The tollgate.yaml the ConfigMap holds. A config given as a mapping is rendered with the
chart's additions merged in (tollgate.config). A config given as a string is kept as
written, byte for byte, so that FILE:LINE:COL in a pod's log points into the user's own
file; the chart's additions (listen addresses, threads, the interception CA's files, the
token store) are appended after it, and only for keys the text does not set.
*/}}
{{- define "tollgate.configFile" -}}
{{- $raw := .Values.config }}
{{- if and (kindIs "string" $raw) (trim $raw) }}
{{- $user := fromYaml (include "tollgate.userConfig" .) }}
{{- if regexMatch "(?m)^(\\.\\.\\.|---)[ \\t]*(#.*)?$" (regexReplaceAll "\\A(\\s*(#[^\\n]*)?\\n)*---[ \\t]*\\n" $raw "") }}
{{- fail "config: the string holds a document marker (--- or ...) after its start; tollgate reads one YAML document: remove it" }}
{{- end }}
{{- $extra := "" }}
{{- if hasKey $user "listen" }}
{{- $l := get $user "listen" }}
{{- if or (not (kindIs "map" $l)) (not (hasKey $l "proxy")) (not (hasKey $l "admin")) }}
{{- fail "config.listen: a config given as a string is kept as written, so the chart cannot add to its `listen`: set both `proxy` and `admin` (e.g. 0.0.0.0:3128 and 0.0.0.0:9901), or leave `listen` out and the chart appends it" }}
{{- end }}
{{- else }}
{{- $extra = printf "%slisten:\n  proxy: 0.0.0.0:%d\n  admin: 0.0.0.0:%d\n" $extra (int .Values.ports.proxy) (int .Values.ports.admin) }}
{{- end }}
{{- if and (not (hasKey $user "threads")) (not (kindIs "invalid" .Values.threads)) }}
{{- $extra = printf "%sthreads: %d\n" $extra (int .Values.threads) }}
{{- end }}
{{- if .Values.interception.caSecret }}
{{- $dir := include "tollgate.interceptionDir" . }}
{{- if hasKey $user "interception" }}
{{- $i := get $user "interception" }}
{{- if or (not (kindIs "map" $i)) (not (hasKey $i "ca_cert_file")) (not (hasKey $i "ca_key_file")) }}
{{- fail (printf "config.interception: a config given as a string is kept as written, so the chart cannot add to its `interception`: set both `ca_cert_file` and `ca_key_file` (%s/tls.crt and %s/tls.key), or leave `interception` out and the chart appends it" $dir $dir) }}
{{- end }}
{{- else }}
{{- $extra = printf "%sinterception:\n  ca_cert_file: %s/tls.crt\n  ca_key_file: %s/tls.key\n" $extra $dir $dir }}
{{- end }}
{{- end }}
{{- $ts := .Values.tokenStore }}
{{- if and $ts $ts.enabled (not (hasKey $user "token_store")) }}
{{- $extra = printf "%s%s\n" $extra (toYaml (dict "token_store" (fromYaml (include "tollgate.tokenStore" .)))) }}
{{- end }}
{{- $text := $raw }}
{{- if not (hasSuffix "\n" $text) }}{{ $text = printf "%s\n" $text }}{{ end }}
{{- if $extra }}
{{- $text = printf "%s# Added by the tollgate chart (the pod's listen addresses, threads, interception CA, token store):\n%s" $text $extra }}
{{- $check := fromYaml $text }}
{{- if or (hasKey $check "Error") (not (hasKey $check "listen")) }}
{{- fail "config: the chart cannot append `listen`/`threads` to this text (a flow-style `{...}` document?): set them in the config yourself" }}
{{- end }}
{{- end }}
{{- $text }}
{{- else }}
{{- include "tollgate.config" . }}
{{- end }}
{{- end }}

{{/*
`drain_timeout` of the config in whole seconds (rounded up), for the grace-period guard;
10 when unset (tollgate's default); empty when it comes from the environment (`${VAR}`) or
is not a duration the chart can read (then `tollgate check` in the pod reports it).
*/}}
{{- define "tollgate.drainSeconds" -}}
{{- $cfg := fromYaml (include "tollgate.config" .) }}
{{- if not (hasKey $cfg "drain_timeout") }}10
{{- else }}
{{- $d := toString (get $cfg "drain_timeout") | trim }}
{{- if and (not (contains "${" $d)) (regexMatch "^([0-9]+ *[a-zµ]+ *)+$" $d) }}
{{- $units := dict "ns" 0.000000001 "nsec" 0.000000001 "us" 0.000001 "usec" 0.000001 "µs" 0.000001 "ms" 0.001 "msec" 0.001 "s" 1 "sec" 1 "secs" 1 "second" 1 "seconds" 1 "m" 60 "min" 60 "mins" 60 "minute" 60 "minutes" 60 "h" 3600 "hr" 3600 "hrs" 3600 "hour" 3600 "hours" 3600 "d" 86400 "day" 86400 "days" 86400 }}
{{- $total := 0.0 }}
{{- $known := true }}
{{- range regexFindAll "[0-9]+ *[a-zµ]+" $d -1 }}
{{- $n := regexFind "^[0-9]+" . | float64 }}
{{- $u := regexFind "[a-zµ]+$" . }}
{{- if hasKey $units $u }}{{ $total = addf $total (mulf $n (get $units $u)) }}{{ else }}{{ $known = false }}{{ end }}
{{- end }}
{{- if $known }}{{ ceil $total | int }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The container port of a listen address: (dict "root" $ "key" "proxy"|"admin").
Fails on an address the pod cannot serve from (loopback, port 0, a host name).
*/}}
{{- define "tollgate.listenPort" -}}
{{- $cfg := fromYaml (include "tollgate.config" .root) }}
{{- $addr := toString (get $cfg.listen .key) }}
{{- if contains "${" $addr }}
{{- /* From the environment at run time: trust ports.<key>. */}}
{{- get .root.Values.ports .key | int }}
{{- else }}
{{- if not (regexMatch "^(\\[[0-9A-Fa-f:.]+\\]|[0-9]{1,3}(\\.[0-9]{1,3}){3}):[0-9]{1,5}$" $addr) }}
{{- fail (printf "config.listen.%s: `%s` is not IP:PORT (e.g. 0.0.0.0:3128 or \"[::]:3128\")" .key $addr) }}
{{- end }}
{{- if or (hasPrefix "127." $addr) (hasPrefix "[::1]:" $addr) }}
{{- fail (printf "config.listen.%s: `%s` is loopback, unreachable from outside the pod (probes, Service); use 0.0.0.0 or [::], or leave it to the chart" .key $addr) }}
{{- end }}
{{- $port := regexFind "[0-9]+$" $addr | int }}
{{- if or (lt $port 1) (gt $port 65535) }}
{{- fail (printf "config.listen.%s: `%s` needs a fixed port (1-65535) for the Service and probes" .key $addr) }}
{{- end }}
{{- $port }}
{{- end }}
{{- end }}

{{/*
What a running pod cannot pick up by hot reload: listen addresses and threads. Their
hash goes into the pod template, so changing them (and only them) rolls the pods.
*/}}
{{- define "tollgate.restartChecksum" -}}
{{- $cfg := fromYaml (include "tollgate.config" .) }}
{{- $restart := dict "listen" $cfg.listen "threads" (get $cfg "threads") }}
{{- /* token_store.redis (and whether there is a store) is read at start only. */}}
{{- $ts := get $cfg "token_store" }}
{{- if kindIs "map" $ts }}
{{- $_ := set $restart "token_store_redis" (get $ts "redis") }}
{{- end }}
{{- toYaml $restart | sha256sum }}
{{- end }}

{{/*
Every file path in the config must be absolute (the pod's working directory is /), and
one that points into the credential Secrets' mount must name a mounted Secret (and one
of its `items`, when listed), one into the interception CA's mount needs
interception.caSecret: otherwise the pod would start with a missing file.
*/}}
{{- define "tollgate.checkSecretPaths" -}}
{{- $cfg := fromYaml (include "tollgate.config" .) }}
{{- $root := printf "%s/" (include "tollgate.secretsDir" .) }}
{{- $paths := list }}
{{- $creds := get $cfg "credentials" }}
{{- if kindIs "map" $creds }}
{{- range $name, $c := $creds }}
{{- if kindIs "map" $c }}
{{- range $k := list "client_secret_file" "private_key_file" "ca_file" "value_file" "certificate_file" "service_account_file" "client_assertion_file" "subject_token_file" "client_cert_file" "client_key_file" }}
{{- if hasKey $c $k }}
{{- $paths = append $paths (list (printf "credentials.%s.%s" $name $k) (toString (get $c $k))) }}
{{- end }}
{{- end }}
{{- $dpop := get $c "dpop" }}
{{- if and (kindIs "map" $dpop) (hasKey $dpop "key_file") }}
{{- $paths = append $paths (list (printf "credentials.%s.dpop.key_file" $name) (toString (get $dpop "key_file"))) }}
{{- end }}
{{- if kindIs "slice" (get $c "client_secret_files") }}
{{- range $i, $f := get $c "client_secret_files" }}
{{- $paths = append $paths (list (printf "credentials.%s.client_secret_files[%d]" $name $i) (toString $f)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $callers := get $cfg "callers" }}
{{- if kindIs "map" $callers }}
{{- $basic := get $callers "basic" }}
{{- if and (kindIs "map" $basic) (hasKey $basic "htpasswd_file") }}
{{- $paths = append $paths (list "callers.basic.htpasswd_file" (toString (get $basic "htpasswd_file"))) }}
{{- end }}
{{- $jwt := get $callers "jwt" }}
{{- if and (kindIs "map" $jwt) (hasKey $jwt "jwks_file") }}
{{- $paths = append $paths (list "callers.jwt.jwks_file" (toString (get $jwt "jwks_file"))) }}
{{- end }}
{{- end }}
{{- $routes := get $cfg "routes" }}
{{- if kindIs "slice" $routes }}
{{- range $i, $r := $routes }}
{{- if and (kindIs "map" $r) (hasKey $r "upstream_ca_file") }}
{{- $paths = append $paths (list (printf "routes[%d].upstream_ca_file" $i) (toString (get $r "upstream_ca_file"))) }}
{{- end }}
{{- end }}
{{- end }}
{{- $icpt := get $cfg "interception" }}
{{- if kindIs "map" $icpt }}
{{- range $k := list "ca_cert_file" "ca_key_file" }}
{{- if hasKey $icpt $k }}
{{- $paths = append $paths (list (printf "interception.%s" $k) (toString (get $icpt $k))) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $p := $paths }}
{{- $where := index $p 0 }}
{{- $path := index $p 1 }}
{{- if and (not (hasPrefix "/" $path)) (not (contains "${" $path)) }}
{{- fail (printf "config %s: `%s` is relative (to the pod's working directory, /); use an absolute path, e.g. %s<name>/<key> with credentialSecrets.<name>" $where $path $root) }}
{{- end }}
{{- $idir := printf "%s/" (include "tollgate.interceptionDir" $) }}
{{- if and (hasPrefix $idir $path) (not $.Values.interception.caSecret) }}
{{- fail (printf "config %s: %s is in no mounted Secret: set interception.caSecret (an existing kubernetes.io/tls Secret)" $where $path) }}
{{- end }}
{{- if and (hasPrefix $idir $path) (not (has (trimPrefix $idir $path) (list "tls.crt" "tls.key"))) }}
{{- fail (printf "config %s: %s: the interception Secret is mounted with tls.crt and tls.key only" $where $path) }}
{{- end }}
{{- if hasPrefix $root $path }}
{{- $rest := trimPrefix $root $path }}
{{- $dir := regexFind "^[^/]+" $rest }}
{{- $entry := get $.Values.credentialSecrets $dir }}
{{- if not $entry }}
{{- fail (printf "config %s: %s is in no mounted Secret: add credentialSecrets.%s (an existing Secret)" $where $path $dir) }}
{{- end }}
{{- $file := trimPrefix (printf "%s/" $dir) $rest }}
{{- if $entry.items }}
{{- $found := false }}
{{- range $it := $entry.items }}
{{- if eq (toString $it.path) $file }}{{ $found = true }}{{ end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "config %s: %s is not among credentialSecrets.%s.items paths" $where $path $dir) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the tollgate container needs from the pod, shared by the Deployment and the helm
test pod (which runs `tollgate route` on the same config, so it needs the same
environment for `${VAR}` and the same files).
*/}}
{{- define "tollgate.podEnv" -}}
env:
  - name: TOLLGATE_CONFIG
    value: {{ include "tollgate.configPath" . }}
  - name: TOLLGATE_LOG_FORMAT
    value: {{ .Values.log.format | quote }}
  - name: RUST_LOG
    value: {{ .Values.log.level | quote }}
  {{- with .Values.otlpEndpoint }}
  - name: OTEL_EXPORTER_OTLP_ENDPOINT
    value: {{ . | quote }}
  - name: OTEL_SERVICE_NAME
    value: {{ include "tollgate.fullname" $ | quote }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.extraEnvFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "tollgate.podVolumeMounts" -}}
# A directory mount (never subPath), so ConfigMap updates reach the pod: the
# kubelet swaps the `..data` symlink and tollgate sees the file change.
- name: config
  mountPath: {{ include "tollgate.configDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- range $name, $s := .Values.credentialSecrets }}
- name: cred-{{ $name }}
  mountPath: {{ include "tollgate.secretsDir" $ }}/{{ $name }}
  readOnly: true
{{- end }}
{{- if .Values.callersJwks.configMap }}
- name: callers-jwks
  mountPath: /etc/tollgate-callers
  readOnly: true
{{- end }}
{{- if .Values.interception.caSecret }}
- name: interception-ca
  mountPath: {{ include "tollgate.interceptionDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.tokenStore.enabled }}
{{- if .Values.tokenStore.passwordSecret.name }}
- name: store-redis
  mountPath: {{ include "tollgate.storeDir" . }}/redis
  readOnly: true
{{- end }}
- name: store-keys
  mountPath: {{ include "tollgate.storeDir" . }}/keys
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tollgate.podVolumes" -}}
- name: config
  configMap:
    name: {{ include "tollgate.fullname" . }}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- range $name, $s := .Values.credentialSecrets }}
- name: cred-{{ $name }}
  secret:
    secretName: {{ $s.secretName }}
    defaultMode: 0440
    {{- with $s.items }}
    items:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if $s.optional }}
    optional: true
    {{- end }}
{{- end }}
{{- with .Values.callersJwks.configMap }}
- name: callers-jwks
  configMap:
    name: {{ . }}
    items:
      - key: {{ $.Values.callersJwks.key }}
        path: {{ $.Values.callersJwks.key }}
{{- end }}
{{- with .Values.interception.caSecret }}
- name: interception-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- with .Values.tokenStore }}
{{- if .enabled }}
{{- if .passwordSecret.name }}
# The token store's Redis password (tokenStore.passwordSecret).
- name: store-redis
  secret:
    secretName: {{ .passwordSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .passwordSecret.key }}
        path: {{ .passwordSecret.key }}
{{- end }}
# The token store's encryption keys (tokenStore.encryptionKeySecret): every key of
# the Secret, so a key added for rotation appears without a restart.
- name: store-keys
  secret:
    secretName: {{ .encryptionKeySecret.name }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
