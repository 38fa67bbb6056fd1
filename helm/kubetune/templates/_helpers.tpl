{{/* vim: set filetype=mustache: */}}

{{/*
The chart's name: the Chart name or nameOverride, cut to 63 characters (the DNS label limit that
Kubernetes applies to names and label values).
*/}}
{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's resources: fullnameOverride, or "<release>-<name>", or the release
name alone when it already contains the chart name. Cut to 63 characters for the same reason.
*/}}
{{- define "kubetune.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The full name with a suffix ("<fullname>-<suffix>"), the full name cut first so that the suffix
always survives the 63-character limit. Call with (dict "ctx" $ "suffix" "metrics").
*/}}
{{- define "kubetune.suffixedName" -}}
{{- $suffix := .suffix -}}
{{- $base := include "kubetune.fullname" .ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{/*
"<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The labels that select the operator pod. They never change between upgrades, because a
Deployment's selector is immutable.
*/}}
{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
The labels of every resource: the recommended app.kubernetes.io labels, helm.sh/chart and
commonLabels.
*/}}
{{- define "kubetune.labels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetune
helm.sh/chart: {{ include "kubetune.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The name of the operator's ServiceAccount: serviceAccount.name, or the full name when the chart
creates it, or "default" when it neither creates one nor is told which to use.
*/}}
{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
An image reference from {repository, tag, digest}: the digest wins over the tag, and an empty tag
means the chart's appVersion. Call with (dict "image" .Values.image "ctx" $).
*/}}
{{/*
The trainer image: repository@digest, or repository:tag with "-<variant>" appended (e.g. 0.1.0-cuda).
*/}}
{{- define "kubetune.trainerImage" -}}
{{- $image := .Values.trainer.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- $tag := default .Chart.AppVersion $image.tag -}}
{{- if $image.variant -}}{{- $tag = printf "%s-%s" $tag $image.variant -}}{{- end -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "kubetune.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The arguments of `kubetune operator`: which namespaces to watch (all of them, or --namespace for
each of watchNamespaces), the liveness endpoint, and extraArgs.
*/}}
{{- define "kubetune.operatorArgs" -}}
- operator
{{- if .Values.watchNamespaces }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
{{- if .Values.livenessProbe.enabled }}
- --liveness=http://0.0.0.0:{{ .Values.livenessProbe.port }}/healthz
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
The permissions the operator needs in every namespace it watches besides its own kinds (kubetune.ownKindRules):
the rules of its ClusterRole, or of its Role in each of watchNamespaces. Least privilege: no Secrets (pods reference them by name,
the operator never reads them), no nodes, no "escalate" and no "bind" (see rbac.yaml).
*/}}
{{- define "kubetune.operatorRules" -}}
# Training and evaluation run as batch Jobs (watched); patch suspends and resumes them, and a
# superseded evaluation run is deleted.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods of those Jobs (watched): their state and termination messages become the job's phase and
# conditions. Not their logs: the trainer reports what went wrong in its termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# A job's checkpoint PVC, run-config ConfigMap, headless Service (multi-node) or serving Service,
# and the per-run ServiceAccount of the trainer and evaluation pods: created if absent (get), a
# ModelDeployment's ConfigMap patched, an operator-made PVC and a superseded run's ConfigMap deleted.
# Never listed or watched, except PVCs (below).
- apiGroups: [""]
  resources: ["persistentvolumeclaims", "configmaps", "services", "serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
# PVCs kept after their FineTuneJob was deleted (still in use, storage.retentionPolicy): watched, by
# the label kubetune.dev/retention, so the operator deletes one once nothing uses it any more.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "watch"]
# The per-run Role and RoleBinding that let a trainer or evaluation pod patch its own resource's status.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch", "delete"]
# ModelDeployments become an apps/v1 Deployment and, with autoscaling, a HorizontalPodAutoscaler.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# ModelDeployments' NetworkPolicy (spec.networkPolicy), KEDA ScaledObject (autoscaling where KEDA is installed)
# and PodMonitor (scraping where the Prometheus Operator is): applied, and deleted when the spec drops them.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
{{- if .Values.serving.autoscaling.keda }}
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- if .Values.serving.podMonitor.enabled }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
# ModelDeployments' traffic split as a Gateway API HTTPRoute (spec.gateway, where the cluster serves HTTPRoute).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "create", "patch", "delete"]
# Events about the three kinds (Kopf posts core/v1 Events; newer clients use events.k8s.io).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.jobset.enabled }}
# Multi-node training as JobSets (watched): created, suspended and resumed, re-created after a spec edit.
- apiGroups: ["jobset.x-k8s.io"]
  resources: ["jobsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end -}}

{{/*
kubetune's own three kinds, always granted by the ClusterRole (with watchNamespaces too), as operators built
on controller-runtime hold their own kinds cluster-wide: when a watched namespace is deleted, the namespace
controller deletes the chart's Role and RoleBinding there as early as anything else, and an operator that
could then no longer patch its kinds could never remove its finalizer (the namespace would stay Terminating).
Holding these, it still can; what it acts on stays in the watched namespaces (Kopf's --namespace), and
everything else (Jobs, PVCs, pods, ...) stays in the namespaced Roles.
*/}}
{{- define "kubetune.ownKindRules" -}}
# The three kinds: watch them, keep Kopf's state in their annotations, add and remove the finalizer.
- apiGroups: ["kubetune.dev"]
  resources: ["finetunejobs", "evaluations", "modeldeployments"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Their status subresource (phase, conditions, progress) and their finalizers (owner references
# with blockOwnerDeletion need update on <kind>/finalizers).
- apiGroups: ["kubetune.dev"]
  resources:
    - finetunejobs/status
    - evaluations/status
    - modeldeployments/status
    - finetunejobs/finalizers
    - evaluations/finalizers
    - modeldeployments/finalizers
  verbs: ["get", "list", "watch", "patch", "update"]
{{- end -}}

{{/*
Cluster-scoped permissions: Kopf reads CustomResourceDefinitions to find the resources it serves.
With --namespace (watchNamespaces) Kopf also lists and watches namespaces; refused, it retries each
call 9 times with backoff (about a minute of errors, nothing handled) before it falls back to the
names it was given, on every start (seen on a real kube-apiserver, tests/integration). The default,
--all-namespaces, never reads them.
*/}}
{{- define "kubetune.clusterRules" -}}
{{ include "kubetune.ownKindRules" . }}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end -}}
