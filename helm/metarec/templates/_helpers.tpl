{{/* Chart name. */}}
{{- define "metarec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-metarec unless overridden; component names are suffixed to it. */}}
{{- define "metarec.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "metarec.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels. */}}
{{- define "metarec.labels" -}}
helm.sh/chart: {{ include "metarec.chart" . }}
app.kubernetes.io/name: {{ include "metarec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: metarec
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "metarec.selectorLabels" (list $ "api"). */}}
{{- define "metarec.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "metarec.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of one component: common labels + component. */}}
{{- define "metarec.componentLabels" -}}
{{ include "metarec.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Workload ServiceAccount name. */}}
{{- define "metarec.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "metarec.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Names of the objects other templates refer to. */}}
{{- define "metarec.controllerName" -}}{{ include "metarec.fullname" . }}-rollout-controller{{- end -}}
{{- define "metarec.routeName" -}}{{ include "metarec.fullname" . }}-serving{{- end -}}
{{- define "metarec.productionName" -}}{{ include "metarec.fullname" . }}-serving-production{{- end -}}
{{- define "metarec.canaryName" -}}{{ include "metarec.fullname" . }}-serving-canary{{- end -}}
{{- define "metarec.deployerName" -}}{{ include "metarec.fullname" . }}-deployer{{- end -}}

{{/*
The Deployment the retrain pipeline's deploy step sets the new version on (empty: no deploy
step, the retrain pod runs the local canary): engine flagger, Flagger's target (the production
Deployment); engine embedded, the canary Deployment (needs serving.canary.enabled and the
rollout controller, which carries the rollout out).
*/}}
{{- define "metarec.deploy.target" -}}
{{- if and .Values.retrain.enabled .Values.retrain.deploy.enabled -}}
{{- if eq .Values.rollout.engine "flagger" -}}
{{ include "metarec.productionName" . }}
{{- else if and .Values.serving.canary.enabled .Values.rollout.controller.enabled -}}
{{ include "metarec.canaryName" . }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The retrain pod's settings of the deploy step (rollout.deploy) and, embedded, its router. */}}
{{- define "metarec.deploy.env" -}}
{{- $flagger := eq .Values.rollout.engine "flagger" -}}
- name: METAREC_ROLLOUT__DEPLOY__KIND
  value: kubernetes
- name: METAREC_ROLLOUT__DEPLOY__ENGINE
  value: {{ ternary "flagger" "embedded" $flagger }}
- name: METAREC_ROLLOUT__DEPLOY__NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: METAREC_ROLLOUT__DEPLOY__DEPLOYMENT
  value: {{ include "metarec.deploy.target" . | quote }}
- name: METAREC_ROLLOUT__DEPLOY__CONTAINER
  value: adaptation
- name: METAREC_ROLLOUT__DEPLOY__PORT
  value: {{ .Values.serving.port | quote }}
- name: METAREC_ROLLOUT__DEPLOY__READY_TIMEOUT_S
  value: {{ .Values.retrain.deploy.readyTimeoutSeconds | quote }}
{{- if $flagger }}
- name: METAREC_ROLLOUT__DEPLOY__FLAGGER_CANARY
  value: {{ include "metarec.routeName" . | quote }}
{{- else }}
- name: METAREC_ROLLOUT__ROUTER__KIND
  value: gateway-api
- name: METAREC_ROLLOUT__ROUTER__NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: METAREC_ROLLOUT__ROUTER__HTTPROUTE
  value: {{ include "metarec.routeName" . | quote }}
- name: METAREC_ROLLOUT__ROUTER__PRODUCTION_BACKEND
  value: {{ include "metarec.productionName" . | quote }}
- name: METAREC_ROLLOUT__ROUTER__CANARY_BACKEND
  value: {{ include "metarec.canaryName" . | quote }}
{{- end }}
{{- end -}}

{{/* The platform image; image.repository is required. */}}
{{- define "metarec.image" -}}
{{- $repo := required "image.repository is required: set it to the MetaRec platform image (e.g. --set image.repository=ghcr.io/acme/metarec)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Checks that fail rendering with the values path to fix. */}}
{{- define "metarec.validate" -}}
{{- $w := .Values.route.weights -}}
{{- if ne (add $w.production $w.canary | int) 100 -}}
{{- fail (printf "route.weights.production (%v) + route.weights.canary (%v) must sum to 100" $w.production $w.canary) -}}
{{- end -}}
{{- if and (not .Values.serving.canary.enabled) (gt ($w.canary | int) 0) -}}
{{- fail "route.weights.canary must be 0 while serving.canary.enabled is false" -}}
{{- end -}}
{{- if and .Values.serving.canary.enabled (not (include "metarec.deploy.target" .)) -}}
{{- $_ := required "serving.canary.version is required when serving.canary.enabled is true and no deploy step sets it (retrain.deploy.enabled with the rollout controller): the registry version the canary serves" .Values.serving.canary.version -}}
{{- end -}}
{{- if and .Values.serving.autoscaling.enabled (gt (.Values.serving.autoscaling.minReplicas | int) (.Values.serving.autoscaling.maxReplicas | int)) -}}
{{- fail "serving.autoscaling.minReplicas must not exceed serving.autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}

{{/* Pod-level fields shared by every pod: service account, security context, pull secrets. */}}
{{- define "metarec.podCommon" -}}
{{- $root := index . 0 -}}
{{- $sa := index . 1 -}}
serviceAccountName: {{ $sa }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling fields of a component values block (nodeSelector, tolerations, affinity). */}}
{{- define "metarec.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The writable volumes of every pod: /tmp and the MetaRec home. */}}
{{- define "metarec.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: metarec-home
{{- if .Values.home.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.home.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.home.sizeLimit }}
{{- end }}
{{- end -}}

{{- define "metarec.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: metarec-home
  mountPath: {{ .Values.home.path }}
{{- end -}}

{{/* Container security context. */}}
{{- define "metarec.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* Probe timing: include "metarec.probeTiming" (list $ "liveness"). */}}
{{- define "metarec.probeTiming" -}}
{{- $root := index . 0 -}}
{{- toYaml (index $root.Values.probes (index . 1)) -}}
{{- end -}}

{{/* HTTP liveness + readiness probes: include "metarec.httpProbes" (list $ "/livez" "/readyz" "http"). */}}
{{- define "metarec.httpProbes" -}}
{{- $root := index . 0 -}}
livenessProbe:
  httpGet:
    path: {{ index . 1 }}
    port: {{ index . 3 }}
  {{- include "metarec.probeTiming" (list $root "liveness") | nindent 2 }}
readinessProbe:
  httpGet:
    path: {{ index . 2 }}
    port: {{ index . 3 }}
  {{- include "metarec.probeTiming" (list $root "readiness") | nindent 2 }}
{{- end -}}

{{/*
Environment of every MetaRec container: home, telemetry off, stores. Credentials come from
existing Secrets by reference only (secretKeyRef); no value of a Secret is ever rendered.
The registry database URL is the writer role's (API, jobs, Prefect work pool); serving pods and
the rollout controller use "metarec.envAs" with their own role.
*/}}
{{- define "metarec.env" -}}
{{- include "metarec.envAs" (list . "writer") -}}
{{- end -}}

{{/*
The registry database URL Secret key of a database role: owner (the db-migrate hook Job
only), serving, controller or writer.
*/}}
{{- define "metarec.databaseUrlKey" -}}
{{- $db := (index . 0).Values.externalDatabase -}}
{{- $role := index . 1 -}}
{{- $keys := dict "owner" $db.ownerUrlKey "serving" $db.servingUrlKey "controller" $db.controllerUrlKey "writer" $db.registryUrlKey -}}
{{- $field := dict "owner" "ownerUrlKey" "serving" "servingUrlKey" "controller" "controllerUrlKey" "writer" "registryUrlKey" -}}
{{- required (printf "externalDatabase.%s is required: the Secret key of the %s role's registry database URL" (index $field $role) $role) (index $keys $role) -}}
{{- end -}}

{{/*
include "metarec.envAs" (list $ "serving"): the env of a container whose registry database
role is the second item. Every role but the owner opens the registry without migrating
(METAREC_REGISTRY__MIGRATE_ON_OPEN=false): the db-migrate hook Job migrates, as the owner.
*/}}
{{- define "metarec.envAs" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{- with $root -}}
{{- $db := .Values.externalDatabase -}}
{{- $redis := .Values.externalRedis -}}
{{- $s3 := .Values.externalS3 -}}
- name: METAREC_HOME
  value: {{ .Values.home.path | quote }}
- name: HOME
  value: {{ .Values.home.path | quote }}
- name: PREFECT_HOME
  value: {{ printf "%s/prefect" .Values.home.path | quote }}
- name: BENTOML_HOME
  value: {{ printf "%s/bentoml" .Values.home.path | quote }}
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: DO_NOT_TRACK
  value: "1"
- name: PREFECT_SERVER_ANALYTICS_ENABLED
  value: "false"
- name: BENTOML_DO_NOT_TRACK
  value: "true"
- name: METAREC_FEAST__ENVIRONMENT
  value: cluster
- name: METAREC_FEAST__PROJECT
  value: {{ .Values.feastConfig.project | quote }}
- name: METAREC_FEAST__REPO_PATH
  value: {{ .Values.feastConfig.repoPath | quote }}
- name: METAREC_FEAST__REDIS_CONNECTION_STRING
  valueFrom:
    secretKeyRef:
      name: {{ required "externalRedis.existingSecret is required: the name of an existing Secret holding the Redis connection string" $redis.existingSecret }}
      key: {{ required "externalRedis.connectionStringKey is required" $redis.connectionStringKey }}
- name: METAREC_FEAST__REGISTRY_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "externalDatabase.existingSecret is required: the name of an existing Secret holding the database URLs" $db.existingSecret }}
      key: {{ required "externalDatabase.feastRegistryUrlKey is required" $db.feastRegistryUrlKey }}
{{- with $s3.offlineRoot }}
- name: METAREC_FEAST__OFFLINE_ROOT
  value: {{ . | quote }}
{{- end }}
- name: METAREC_REGISTRY__DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $db.existingSecret }}
      key: {{ include "metarec.databaseUrlKey" (list $root $role) }}
{{- if eq $role "owner" }}
{{- range $workload, $login := $db.roles }}
{{- if $login }}
- name: METAREC_REGISTRY__DATABASE_ROLES__{{ upper $workload }}
  value: {{ $login | quote }}
{{- end }}
{{- end }}
{{- else }}
- name: METAREC_REGISTRY__MIGRATE_ON_OPEN
  value: "false"
{{- end }}
- name: METAREC_REGISTRY__ARTIFACT_ROOT
  value: {{ required "externalS3.artifactRoot is required: the s3:// URI where registered model artifacts are stored" $s3.artifactRoot | quote }}
{{- with $s3.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $s3.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- if $s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret }}
      key: {{ $s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret }}
      key: {{ $s3.secretAccessKeyKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Training compute: effective tolerations (GPU toleration added), as in metarec.compute. */}}
{{- define "metarec.training.tolerations" -}}
{{- $c := .Values.training.compute -}}
{{- $tols := list -}}
{{- range $c.tolerations }}{{- $tols = append $tols . -}}{{- end -}}
{{- if gt ($c.gpuCount | int) 0 -}}
{{- $has := false -}}
{{- range $c.tolerations }}{{- if eq .key $c.gpuResource }}{{- $has = true -}}{{- end -}}{{- end -}}
{{- if not $has -}}
{{- $tols = append $tols (dict "key" $c.gpuResource "operator" "Exists" "effect" "NoSchedule") -}}
{{- end -}}
{{- end -}}
{{- toJson $tols -}}
{{- end -}}

{{/* Training compute: effective node selector (GPU model label added). */}}
{{- define "metarec.training.nodeSelector" -}}
{{- $c := .Values.training.compute -}}
{{- $sel := deepCopy $c.nodeSelector -}}
{{- if and (gt ($c.gpuCount | int) 0) $c.gpuType -}}
{{- if not (hasKey $sel $c.gpuTypeLabel) -}}
{{- $_ := set $sel $c.gpuTypeLabel $c.gpuType -}}
{{- end -}}
{{- end -}}
{{- toJson $sel -}}
{{- end -}}

{{/* Training compute: container resources (GPUs as limits only). */}}
{{- define "metarec.training.resources" -}}
{{- $c := .Values.training.compute -}}
{{- $limits := dict "cpu" $c.cpuLimit "memory" $c.memoryLimit -}}
{{- if gt ($c.gpuCount | int) 0 -}}
{{- $_ := set $limits $c.gpuResource ($c.gpuCount | toString) -}}
{{- end -}}
{{- toJson (dict "requests" (dict "cpu" $c.cpuRequest "memory" $c.memoryRequest) "limits" $limits) -}}
{{- end -}}

{{/*
The training pod spec shared by the training Job template and the retraining CronJob:
include "metarec.training.podSpec" (list $ "train" (list "train" "--device" "cuda")).
An optional fourth item, a dict, gives a ServiceAccount whose token is mounted
("serviceAccount") and env appended to the platform's ("env"): the retrain pod's deploy step.
*/}}
{{- define "metarec.training.podSpec" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $args := index . 2 -}}
{{- $extra := dict -}}
{{- if gt (len .) 3 }}{{ $extra = index . 3 }}{{ end -}}
{{- $c := $root.Values.training.compute -}}
{{ include "metarec.podCommon" (list $root ($extra.serviceAccount | default (include "metarec.serviceAccountName" $root))) }}
automountServiceAccountToken: {{ not (empty $extra.serviceAccount) }}
restartPolicy: Never
{{- $sel := include "metarec.training.nodeSelector" $root | fromJson }}
{{- with $sel }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tols := include "metarec.training.tolerations" $root | fromJsonArray }}
{{- with $tols }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ $name }}
    image: {{ include "metarec.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: ["metarec"]
    args:
      {{- toYaml $args | nindent 6 }}
    env:
      {{- include "metarec.env" $root | nindent 6 }}
      {{- with $extra.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- include "metarec.training.resources" $root | fromJson | toYaml | nindent 6 }}
    {{- include "metarec.containerSecurityContext" $root | nindent 4 }}
    volumeMounts:
      {{- include "metarec.volumeMounts" $root | nindent 6 }}
volumes:
  {{- include "metarec.volumes" $root | nindent 2 }}
{{- end -}}

{{/* The `metarec train` arguments. */}}
{{- define "metarec.training.args" -}}
{{- $t := .Values.training -}}
{{- $gpus := $t.compute.gpuCount | int -}}
{{- $device := $t.device | default (ternary "cuda" "cpu" (gt $gpus 0)) -}}
{{- if and (eq $device "cuda") (eq $gpus 0) -}}
{{- fail "training.device is cuda but training.compute.gpuCount is 0: request GPUs or set training.device to cpu" -}}
{{- end -}}
{{- $args := list "train" "--device" $device "--training-set" (required "training.trainingSet is required: the training set path or s3:// URI passed to metarec train --training-set" $t.trainingSet) -}}
{{- range $t.extraArgs }}{{- $args = append $args . -}}{{- end -}}
{{- toJson $args -}}
{{- end -}}
