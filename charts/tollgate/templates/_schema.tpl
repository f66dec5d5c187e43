{{/*
A config given as a string (`--set-file config=tollgate.yaml`) is invisible to helm's
values.schema.json check, so the chart checks it here, against files/config.schema.json
(the same schema values.schema.json applies to a config given as a mapping). A typo then
fails `helm install`, not a pod. This walks the subset of JSON Schema that file uses:
type, enum, properties, additionalProperties, required, items, minItems, minLength,
minimum, maximum. `tollgate check` (which the pod also runs before serving) remains the
full validation.
*/}}

{{/* Every problem of value .v against schema .s at path .p, one per line. */}}
{{- define "tollgate.schemaProblems" -}}
{{- $v := .v }}
{{- $s := .s }}
{{- $p := .p }}
{{- $where := $p | default "config" }}
{{- $typeOk := true }}
{{- with $s.type }}
{{- $types := . }}
{{- if kindIs "string" $types }}{{ $types = list $types }}{{ end }}
{{- $typeOk = false }}
{{- $isNumber := or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
{{- range $types }}
{{- if and (eq . "object") (kindIs "map" $v) }}{{ $typeOk = true }}{{ end }}
{{- if and (eq . "array") (kindIs "slice" $v) }}{{ $typeOk = true }}{{ end }}
{{- if and (eq . "string") (kindIs "string" $v) }}{{ $typeOk = true }}{{ end }}
{{- if and (eq . "boolean") (kindIs "bool" $v) }}{{ $typeOk = true }}{{ end }}
{{- if and (eq . "null") (kindIs "invalid" $v) }}{{ $typeOk = true }}{{ end }}
{{- if and (eq . "number") $isNumber }}{{ $typeOk = true }}{{ end }}
{{- if and (eq . "integer") $isNumber }}{{ if eq (float64 $v) (floor (float64 $v)) }}{{ $typeOk = true }}{{ end }}{{ end }}
{{- end }}
{{- if not $typeOk }}
{{- printf "%s: %s is not %s\n" $where (toJson $v) (join " or " $types) }}
{{- end }}
{{- end }}
{{- if $typeOk }}
{{- if hasKey $s "enum" }}
{{- if not (has $v $s.enum) }}
{{- printf "%s: %s is not one of %s\n" $where (toJson $v) (join ", " $s.enum) }}
{{- end }}
{{- end }}
{{- if and (kindIs "string" $v) (hasKey $s "minLength") }}
{{- if lt (len $v) (int $s.minLength) }}{{ printf "%s: must not be empty\n" $where }}{{ end }}
{{- end }}
{{- if and (or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v)) }}
{{- if and (hasKey $s "minimum") (lt (float64 $v) (float64 $s.minimum)) }}{{ printf "%s: %v is less than %v\n" $where $v $s.minimum }}{{ end }}
{{- if and (hasKey $s "maximum") (gt (float64 $v) (float64 $s.maximum)) }}{{ printf "%s: %v is more than %v\n" $where $v $s.maximum }}{{ end }}
{{- end }}
{{- if kindIs "map" $v }}
{{- $props := $s.properties | default dict }}
{{- range $k := keys $v | sortAlpha }}
{{- $child := printf "%s.%s" $p $k | trimPrefix "." }}
{{- if hasKey $props $k }}
{{- include "tollgate.schemaProblems" (dict "v" (get $v $k) "s" (get $props $k) "p" $child) }}
{{- else if kindIs "map" $s.additionalProperties }}
{{- include "tollgate.schemaProblems" (dict "v" (get $v $k) "s" $s.additionalProperties "p" $child) }}
{{- else if and (hasKey $s "additionalProperties") (not $s.additionalProperties) }}
{{- printf "%s: unknown key `%s` (expected one of: %s)\n" $where $k (keys $props | sortAlpha | join ", ") }}
{{- end }}
{{- end }}
{{- range $s.required }}
{{- if not (hasKey $v .) }}{{ printf "%s: missing `%s`\n" $where . }}{{ end }}
{{- end }}
{{- end }}
{{- if kindIs "slice" $v }}
{{- if and (hasKey $s "minItems") (lt (len $v) (int $s.minItems)) }}{{ printf "%s: needs at least %d item(s)\n" $where (int $s.minItems) }}{{ end }}
{{- with $s.items }}
{{- $items := . }}
{{- range $i, $x := $v }}
{{- include "tollgate.schemaProblems" (dict "v" $x "s" $items "p" (printf "%s[%d]" $p $i)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails, listing every problem, when a string config does not match the schema. */}}
{{- define "tollgate.checkConfigString" -}}
{{- if and (kindIs "string" .Values.config) (trim .Values.config) }}
{{- $cfg := fromYaml (include "tollgate.userConfig" .) }}
{{- $schema := .Files.Get "files/config.schema.json" | fromJson }}
{{- $problems := include "tollgate.schemaProblems" (dict "v" $cfg "s" $schema "p" "") | trim }}
{{- if $problems }}
{{- fail (printf "config (a string, e.g. from --set-file config=FILE) does not match the tollgate.yaml schema:\n%s\n(run `tollgate check -c FILE` for the full validation with line numbers)" $problems) }}
{{- end }}
{{- end }}
{{- end }}
