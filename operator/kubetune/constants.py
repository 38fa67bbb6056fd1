"""Every label key, annotation key, condition type, reason and finalizer name, in one place."""

from __future__ import annotations

from typing import Final

GROUP: Final = "kubetune.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "kubetune.dev/v1alpha1"  # GROUP/VERSION, spelled out so its type is the Literal the models declare
CATEGORY: Final = "kubetune"

# Kinds and their plurals / short names.
FINETUNEJOB: Final = "FineTuneJob"
EVALUATION: Final = "Evaluation"
MODELDEPLOYMENT: Final = "ModelDeployment"
PLURALS: Final = {FINETUNEJOB: "finetunejobs", EVALUATION: "evaluations", MODELDEPLOYMENT: "modeldeployments"}
SHORT_NAMES: Final = {FINETUNEJOB: ["ftj"], EVALUATION: ["ftev"], MODELDEPLOYMENT: ["mdep"]}

# Labels on every child object.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
MANAGED_BY: Final = "kubetune"
LABEL_JOB: Final = f"{GROUP}/finetunejob"
LABEL_EVALUATION: Final = f"{GROUP}/evaluation"
LABEL_DEPLOYMENT: Final = f"{GROUP}/modeldeployment"
LABEL_ROLE: Final = f"{GROUP}/role"
LABEL_KUEUE_QUEUE: Final = "kueue.x-k8s.io/queue-name"
LABEL_KUEUE_PRIORITY_CLASS: Final = "kueue.x-k8s.io/priority-class"
# On a PVC the operator kept after its FineTuneJob was deleted: the job's retentionPolicy.whenDeleted
# (Delete: the operator deletes it once nothing references it; Retain: kept until a person deletes it).
LABEL_RETENTION: Final = f"{GROUP}/retention"

# Annotations.
ANNOTATION_CREATED_PVC: Final = f"{GROUP}/created-pvc"
ANNOTATION_OWNER_UID: Final = f"{GROUP}/owner-uid"  # on a created PVC: the uid of the FineTuneJob it is for
ANNOTATION_RETAINED_FOR: Final = f"{GROUP}/retained-for"  # on a kept PVC: who still uses it ("ModelDeployment/x")
ANNOTATION_RETAINED_FROM: Final = f"{GROUP}/retained-from"  # on a kept PVC: the deleted FineTuneJob it was for
# On a kept PVC: its own metadata.uid, written when the operator released it (a copy or restore has another uid,
# so the operator never deletes it).
ANNOTATION_RELEASED_CLAIM_UID: Final = f"{GROUP}/released-claim-uid"
# On a kept PVC a FineTuneJob named in spec.storage.claimName: that job (`FineTuneJob/x`); the claim is the user's.
ANNOTATION_ADOPTED_BY: Final = f"{GROUP}/adopted-by"
# Annotations of a resource under this prefix are copied to its children (see builders.meta.Propagation).
ANNOTATION_PROPAGATE_PREFIX: Final = f"propagate.{GROUP}/"
# On a child: the label and annotation keys its parent passed on when it was last written (JSON), so that a key
# the parent drops is dropped from the child too, and keys others set on the child are never touched.
ANNOTATION_PROPAGATED: Final = f"{GROUP}/propagated"
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
ANNOTATION_CHECKPOINT: Final = f"{GROUP}/checkpoint"
KOPF_ANNOTATION_PREFIX: Final = GROUP  # Kopf progress/diff-base storage lives under this prefix.

FINALIZER: Final = f"{GROUP}/finalizer"

# Roles of child objects; names are `<parent>-<role>`.
ROLE_TRAIN: Final = "train"
ROLE_DATA: Final = "data"
ROLE_CONFIG: Final = "config"
ROLE_RUNNER: Final = "runner"
ROLE_HEADLESS: Final = "workers"
ROLE_EVAL: Final = "eval"
ROLE_SERVE: Final = "serve"


class Phase:
    PENDING: Final = "Pending"
    VALIDATING: Final = "Validating"
    QUEUED: Final = "Queued"
    RUNNING: Final = "Running"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    SUSPENDED: Final = "Suspended"
    # ModelDeployment
    DEPLOYING: Final = "Deploying"
    READY: Final = "Ready"


FINISHED_PHASES: Final = frozenset({Phase.SUCCEEDED, Phase.FAILED})


class Condition:
    """Condition types (kstatus: Ready, Reconciling, Stalled; jobs add Succeeded/Failed)."""

    READY: Final = "Ready"
    RECONCILING: Final = "Reconciling"
    STALLED: Final = "Stalled"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    DATA_VALID: Final = "DataValidated"
    SUSPENDED: Final = "Suspended"
    WAITING_FOR_SOURCE: Final = "WaitingForSourceJob"
    WAITING_FOR_JUDGE: Final = "WaitingForJudge"  # a judge's ModelDeployment does not serve yet
    PASSED: Final = "Passed"


class Reason:
    CREATED: Final = "Created"
    PENDING: Final = "Pending"
    QUEUED: Final = "Queued"
    VALIDATING: Final = "ValidatingData"
    TRAINING: Final = "Training"
    EVALUATING: Final = "Evaluating"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    DATA_VALIDATION_FAILED: Final = "DataValidationFailed"
    BACKOFF_LIMIT_EXCEEDED: Final = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
    SUSPENDED: Final = "Suspended"
    RESUMED: Final = "Resumed"
    WAITING_FOR_SOURCE: Final = "WaitingForSourceJob"
    SOURCE_FAILED: Final = "SourceJobFailed"
    WAITING_FOR_JUDGE: Final = "WaitingForJudge"
    INVALID_SPEC: Final = "InvalidSpec"
    CHILD_REFUSED: Final = "ChildRefused"  # the API server refused a child built from the spec (422)
    DEPLOYING: Final = "Deploying"
    READY: Final = "Ready"
    PROMOTED: Final = "Promoted"
    ROLLED_BACK: Final = "RolledBack"
    NO_PASSING_CHECKPOINT: Final = "NoPassingCheckpoint"
    WAITING_FOR_CHECKPOINTS: Final = "WaitingForCheckpoints"
    PASSED: Final = "Passed"
    NOT_PASSED: Final = "CriteriaNotMet"
    # Evaluation and ModelDeployment (appended by the serving engineer).
    ROLLED_FORWARD: Final = "RolledForward"
    PINNED: Final = "Pinned"
    PIN_NOT_FOUND: Final = "PinnedCheckpointNotFound"
    UP_TO_DATE: Final = "UpToDate"
    WAITING_FOR_EVALUATION: Final = "WaitingForEvaluation"
    SAFETY_GATE_FAILED: Final = "SafetyGateFailed"  # a better checkpoint was held back by the safety gate
    CANARY: Final = "Canary"  # a new checkpoint serves a share of requests beside the stable one
    CANARY_STARTED: Final = "CanaryStarted"
    CANARY_ROLLED_BACK: Final = "CanaryRolledBack"
    ADAPTER_INCOMPATIBLE: Final = "AdapterIncompatible"  # spec.adapters[] names a job that cannot be served on the base
    EVALUATED: Final = "Evaluated"
    EVALUATION_FAILED: Final = "EvaluationFailed"
    # FineTuneJob spec edits: applied by re-creating the Job before training starts, refused after.
    RECREATED: Final = "Recreated"
    SPEC_CHANGE_REFUSED: Final = "SpecChangeRefused"
    # Data retention (a FineTuneJob's PVC on its deletion).
    PVC_RETAINED: Final = "PersistentVolumeClaimRetained"
    PVC_DELETED: Final = "PersistentVolumeClaimDeleted"
    PVC_ADOPTED: Final = "PersistentVolumeClaimAdopted"  # a kept PVC named in storage.claimName: now the user's
    # A new FineTuneJob's `<job>-data` exists and is not its own (a deleted namesake's kept checkpoints): it waits.
    PVC_CONFLICT: Final = "PersistentVolumeClaimConflict"


# Environment variables the trainer pod reads.
ENV_RUN_CONFIG: Final = "KUBETUNE_RUN_CONFIG"
ENV_HF_TOKEN: Final = "HF_TOKEN"
ENV_HF_EXPORT_TOKEN: Final = "HF_EXPORT_TOKEN"  # spec.export.tokenSecretRef: a Hub token with write access
ENV_POD_NAMESPACE: Final = "KUBETUNE_NAMESPACE"
ENV_JOB_NAME: Final = "KUBETUNE_JOB_NAME"
# Where the trainer writes why it failed (the container's terminationMessagePath; Kubernetes keeps 4 KiB).
ENV_TERMINATION_LOG: Final = "KUBETUNE_TERMINATION_LOG"
TERMINATION_LOG_PATH: Final = "/dev/termination-log"
RUN_CONFIG_FILE: Final = "run-config.json"
RUN_CONFIG_MOUNT: Final = "/etc/kubetune"
DATA_MOUNT: Final = "/mnt/kubetune"  # the job's PVC
PVC_MOUNT_ROOT: Final = "/mnt/pvc"  # pvc://CLAIM/PATH mounts at /mnt/pvc/CLAIM
CHECKPOINT_META: Final = "kubetune.json"
DEFAULT_TRAINER_IMAGE: Final = "ghcr.io/kubetune/trainer:0.1.0"
SERVE_PORT: Final = 8000
METRICS_PORT: Final = 8080

# --- Operator: training Jobs, their pods, events (appended by the operator engineer) ---
# Exit statuses of every kubetune command (`kubetune`, `kubetune run`, the trainer image's commands).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # something failed or did not pass validation / preflight
EXIT_USAGE: Final = 2  # a usage or configuration error (bad arguments, an unreadable run config)
EXIT_DATA_VALIDATION_FAILED: Final = 3  # the trainer exits 3 when the data is invalid: the Job fails at once
EXIT_INTERRUPTED: Final = 130  # stopped by SIGINT (Ctrl-C; 128 + 2): `kubetune run` again resumes
# The trainer exits 143 after SIGTERM once it has saved a resumable checkpoint (a deleted or stopped pod).
EXIT_STOPPED_WITH_CHECKPOINT: Final = 143
# Time a trainer gets after SIGTERM to finish its step and write that checkpoint (a full fine-tune of a
# large model writes weights and optimizer state: minutes); it exits as soon as it has saved.
TRAINER_GRACE_SECONDS: Final = 600
TRAINER_CONTAINER: Final = "trainer"
TRAINER_USER_ID: Final = 1000  # the trainer image's non-root user (uid and gid)
HF_CACHE_DIR: Final = "/var/cache/huggingface"  # HF_HOME inside pods (an emptyDir; the root fs is read-only)
MASTER_PORT: Final = 29500  # torch.distributed rendezvous on index 0 of a multi-node job
ANNOTATION_COMPLETION_INDEX: Final = "batch.kubernetes.io/job-completion-index"
EVENT_COMPONENT: Final = "kubetune-operator"
ENV_OPERATOR_PREFIX: Final = "KUBETUNE_"  # operator settings come from KUBETUNE_* environment variables
# Pod conditions / Job conditions the operator reads.
POD_DISRUPTION_TARGET: Final = "DisruptionTarget"
JOB_COMPLETE: Final = "Complete"
JOB_FAILED: Final = "Failed"
JOB_FAILURE_TARGET: Final = "FailureTarget"
# Event reasons beyond the condition reasons above.
EVENT_STARTED: Final = "Started"

# --- Evaluation and ModelDeployment (appended by the serving engineer) ---
ANNOTATION_EVALUATED_MODELS: Final = f"{GROUP}/evaluated-models"  # on an evaluation Job: the models it scores
ANNOTATION_MODEL_URI: Final = f"{GROUP}/model-uri"  # on serving pods: the model they serve
EVENT_EVALUATION_STARTED: Final = "EvaluationStarted"
EVALUATION_SCORE_METRIC: Final = "kubetune_evaluation_score"
SERVE_CONCURRENCY_METRIC: Final = "kubetune_serve_requests_in_flight"  # per-pod gauge the HPA scales on

# --- The OpenAI-compatible API (`kubetune api`) ---
LABEL_API_KEY: Final = f"{GROUP}/api-key"  # "true" on a Secret holding an API key (data: key, namespace)
LABEL_CREATED_BY_API: Final = f"{GROUP}/openai-api"  # "true" on FineTuneJobs the API created
ANNOTATION_OPENAI_MODEL: Final = f"{GROUP}/openai-model"  # the base model name the request gave
ANNOTATION_OPENAI_SUFFIX: Final = f"{GROUP}/openai-suffix"
ANNOTATION_OPENAI_TRAINING_FILE: Final = f"{GROUP}/openai-training-file"
ANNOTATION_OPENAI_VALIDATION_FILE: Final = f"{GROUP}/openai-validation-file"
ANNOTATION_OPENAI_METADATA: Final = f"{GROUP}/openai-metadata"  # the job's OpenAI metadata as one JSON object
ANNOTATION_CANCELLED: Final = f"{GROUP}/cancelled"  # when a job was cancelled (spec.suspend is true too)
