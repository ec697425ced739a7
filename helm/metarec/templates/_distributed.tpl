{{/*
Distributed training and hyper-parameter search: helpers of trainjob.yaml and
katib-experiment.yaml, built from the training compute spec helpers of _helpers.tpl.
*/}}

{{/* Training processes per node: one per GPU, one on a CPU node (ComputeSpec.processes_per_node). */}}
{{- define "metarec.training.procsPerNode" -}}
{{- max 1 (.Values.training.compute.gpuCount | int) -}}
{{- end -}}

{{/*
"true" when training runs as a distributed job: nodes × processes per node above 1, or
training.distributed.enabled (ComputeSpec.distributed); empty otherwise.
*/}}
{{- define "metarec.training.distributed" -}}
{{- $nodes := .Values.training.compute.nodes | default 1 | int -}}
{{- $procs := include "metarec.training.procsPerNode" . | int -}}
{{- if or .Values.training.distributed.enabled (gt (mul $nodes $procs) 1) -}}true{{- end -}}
{{- end -}}

{{/* The torchrun command line of every node (ComputeSpec.torchrun_command), as JSON. */}}
{{- define "metarec.training.torchrunCommand" -}}
{{- $nodes := .Values.training.compute.nodes | default 1 | int -}}
{{- $cmd := list "torchrun" (printf "--nnodes=%d" $nodes) (printf "--nproc-per-node=%s" (include "metarec.training.procsPerNode" .)) "-m" "metarec" -}}
{{- range (include "metarec.training.args" . | fromJsonArray) }}{{- $cmd = append $cmd . -}}{{- end -}}
{{- toJson $cmd -}}
{{- end -}}

{{/*
Container resources of the training compute spec with a given GPU count (GPUs as limits only):
include "metarec.training.resourcesWithGpus" (list $ 1).
*/}}
{{- define "metarec.training.resourcesWithGpus" -}}
{{- $root := index . 0 -}}
{{- $gpus := index . 1 | int -}}
{{- $c := $root.Values.training.compute -}}
{{- $limits := dict "cpu" $c.cpuLimit "memory" $c.memoryLimit -}}
{{- if gt $gpus 0 -}}
{{- $_ := set $limits $c.gpuResource ($gpus | toString) -}}
{{- end -}}
{{- toJson (dict "requests" (dict "cpu" $c.cpuRequest "memory" $c.memoryRequest) "limits" $limits) -}}
{{- end -}}

{{/*
A pod spec on the training compute spec running a full command line (not `metarec` args):
include "metarec.training.commandPodSpec" (dict "root" $ "name" "pytorch" "command" $cmd
"gpus" 2 "restartPolicy" "OnFailure"). Same service account, hardening, scheduling, env and
volumes as metarec.training.podSpec.
*/}}
{{- define "metarec.training.commandPodSpec" -}}
{{- $root := .root -}}
{{ include "metarec.podCommon" (list $root (include "metarec.serviceAccountName" $root)) }}
automountServiceAccountToken: false
restartPolicy: {{ .restartPolicy | default "Never" }}
{{- with (include "metarec.training.nodeSelector" $root | fromJson) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (include "metarec.training.tolerations" $root | fromJsonArray) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "metarec.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      {{- toYaml .command | nindent 6 }}
    env:
      {{- include "metarec.env" $root | nindent 6 }}
    resources:
      {{- include "metarec.training.resourcesWithGpus" (list $root .gpus) | fromJson | toYaml | nindent 6 }}
    {{- include "metarec.containerSecurityContext" $root | nindent 4 }}
    volumeMounts:
      {{- include "metarec.volumeMounts" $root | nindent 6 }}
volumes:
  {{- include "metarec.volumes" $root | nindent 2 }}
{{- end -}}

{{/*
The `metarec tune trial` command of a Katib trial, as JSON: one `--param name=${trialParameters.name}`
per Experiment parameter, then the search space, training set and extra arguments.
*/}}
{{- define "metarec.tuning.trialCommand" -}}
{{- $k := .Values.tuning.katib -}}
{{- $cmd := list "metarec" "tune" "trial" -}}
{{- range $k.parameters }}
{{- $cmd = concat $cmd (list "--param" (printf "%s=${trialParameters.%s}" .name .name)) -}}
{{- end }}
{{- with $k.space }}{{- $cmd = concat $cmd (list "--space" .) -}}{{- end }}
{{- $cmd = concat $cmd (list "--training-set" ($k.trainingSet | default .Values.training.trainingSet)) -}}
{{- range $k.extraArgs }}{{- $cmd = append $cmd . -}}{{- end }}
{{- toJson $cmd -}}
{{- end -}}
