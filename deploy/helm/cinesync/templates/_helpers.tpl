{{/* Names, labels and the settings every CineSync role reads from its environment. */}}

{{- define "cinesync.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "cinesync.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "control-plane"). */}}
{{- define "cinesync.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cinesync.image" -}}
{{ printf "%scinesync/%s:%s" .root.Values.image.registry .role .root.Values.image.tag }}
{{- end -}}

{{- define "cinesync.redisUrl" -}}
{{- if .Values.redis.deploy -}}
{{ printf "redis://%s-redis:6379/0" (include "cinesync.fullname" .) }}
{{- else -}}
{{ required "redis.url is required when redis.deploy is false" .Values.redis.url }}
{{- end -}}
{{- end -}}

{{- define "cinesync.adminSecret" -}}
{{- default (printf "%s-admin" (include "cinesync.fullname" .)) .Values.adminTokens.existingSecret -}}
{{- end -}}

{{- define "cinesync.modelRepositoryPath" -}}
{{- default "/models" .Values.modelRepository.uri -}}
{{- end -}}

{{/* The environment shared by the control plane, the workers and the dashboard. */}}
{{- define "cinesync.env" -}}
- name: REDIS_URL
  value: {{ include "cinesync.redisUrl" . | quote }}
- name: TRITON_URL
  value: {{ printf "%s-triton:%d" (include "cinesync.fullname" .) (int .Values.triton.grpcPort) | quote }}
- name: CINESYNC_HOME
  value: /var/lib/cinesync
- name: CINESYNC_MODEL_REPOSITORY
  value: /models
- name: CINESYNC_TRITON_TARGET
  value: stock
- name: CINESYNC_CELERY_QUEUE
  value: {{ .Values.celeryQueue | quote }}
{{- end -}}

{{- define "cinesync.homeClaim" -}}
{{- default (printf "%s-home" (include "cinesync.fullname" .)) .Values.home.existingClaim -}}
{{- end -}}

{{- define "cinesync.modelsClaim" -}}
{{- default (printf "%s-models" (include "cinesync.fullname" .)) .Values.modelRepository.existingClaim -}}
{{- end -}}

{{/* The Celery queue the images' workers consume: cinesync.settings.Settings.job_queue for home
/var/lib/cinesync, repository /models and the images' environment /opt/venv. */}}
{{- define "cinesync.jobQueue" -}}
{{- printf "%s.%s" .Values.celeryQueue ("/var/lib/cinesync|/models|/opt/venv" | sha256sum | trunc 10) -}}
{{- end -}}
