{{/* Labels every object carries; the selector uses the name alone, as the plain manifest. */}}
{{- define "faultline-agent.labels" -}}
app.kubernetes.io/name: faultline-agent
{{- end -}}

{{/* The Secret holding tokens.toml. */}}
{{- define "faultline-agent.tokensSecret" -}}
{{- .Values.tokens.existingSecret | default "faultline-agent-tokens" -}}
{{- end -}}

{{/* The probes' scheme: the agent serves HTTPS when TLS is configured. */}}
{{- define "faultline-agent.scheme" -}}
{{- if .Values.tls.secretName }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}
