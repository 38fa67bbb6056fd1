"""The API of kubetune: pydantic models of FineTuneJob, Evaluation and ModelDeployment (spec + status),
the run configs the trainer image reads, and the CRDs generated from them."""

from kubetune.api.common import Condition, KubeModel, ObjectMeta, ResourcesSpec, SecretKeyRef
from kubetune.api.evaluation import METRICS, Evaluation, EvaluationSpec, EvaluationStatus
from kubetune.api.finetunejob import FineTuneJob, FineTuneJobSpec, FineTuneJobStatus
from kubetune.api.manifests import KINDS, ManifestError, Resource, iter_documents, parse_resource
from kubetune.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity, ServeRunConfig, StorageMap, TrainRunConfig

__all__ = [
    "KINDS",
    "METRICS",
    "Condition",
    "EvalRunConfig",
    "EvalTarget",
    "Evaluation",
    "EvaluationSpec",
    "EvaluationStatus",
    "FineTuneJob",
    "FineTuneJobSpec",
    "FineTuneJobStatus",
    "Identity",
    "KubeModel",
    "ManifestError",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ObjectMeta",
    "Resource",
    "ResourcesSpec",
    "SecretKeyRef",
    "ServeRunConfig",
    "StorageMap",
    "TrainRunConfig",
    "iter_documents",
    "parse_resource",
]
