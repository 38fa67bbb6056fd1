"""OpenAI fine-tuning requests to FineTuneJob manifests, and FineTuneJobs back to OpenAI's objects.

Pure functions over plain dicts: the FineTuneJob stays the source of truth and every OpenAI object is a
view of one. A job's id is the FineTuneJob's name (the API names the ones it creates `ftjob-<hex>`), so a
job made with `kubectl apply` is listed too. A job is cancelled by `spec.suspend: true` plus the
`kubetune.dev/cancelled` annotation (what `kubectl get -o yaml` shows); pause/resume is `spec.suspend`.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubetune import constants as c
from kubetune.api.admission import admit
from kubetune.api.clock import parse_time
from kubetune.api.finetunejob import Hyperparameters
from kubetune.data.formats import CHAT, PREFERENCE, PROMPT_COMPLETION, REINFORCEMENT, TEXT
from kubetune.openai.errors import OpenAIError, invalid, not_found

DEFAULT_LEARNING_RATE = 2.0e-4  # the FineTuneJob default that learning_rate_multiplier scales
# spec.hyperparameters.learningRate's upper bound, as the limit of the multiplier the user sends
MAX_LEARNING_RATE = next(m.le for m in Hyperparameters.model_fields["learning_rate"].metadata if hasattr(m, "le"))
MAX_SEED = 2**32 - 1  # numpy's seeding range (np.random.seed); OpenAI documents no bound, int32 clients stay inside
# OpenAI's metadata limits: at most 16 pairs, keys up to 64 characters, string values up to 512
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
METHODS = {"supervised": "sft", "dpo": "dpo", "reinforcement": "rft"}
METHOD_NAMES = {v: k for k, v in METHODS.items()}
# OpenAI hyperparameter -> (FineTuneJob spec path, conversion)
HYPERPARAMETERS: dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]] = {
    "n_epochs": (("hyperparameters", "epochs"), float),
    "batch_size": (("hyperparameters", "batchSize"), int),
    "learning_rate_multiplier": (("hyperparameters", "learningRate"), lambda m: DEFAULT_LEARNING_RATE * m),
    "beta": (("dpo", "beta"), float),
}
INTEGER_HYPERPARAMETERS = frozenset({"n_epochs", "batch_size"})  # OpenAI's types: integers, not 2.5 or true
METHOD_HYPERPARAMETERS = {
    "sft": ("n_epochs", "batch_size", "learning_rate_multiplier"),
    "dpo": ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"),
    "rft": ("n_epochs", "batch_size", "learning_rate_multiplier"),
}
STATUSES = {
    c.Phase.PENDING: "queued",
    c.Phase.QUEUED: "queued",
    c.Phase.VALIDATING: "validating_files",
    c.Phase.RUNNING: "running",
    c.Phase.SUCCEEDED: "succeeded",
    c.Phase.FAILED: "failed",
    c.Phase.SUSPENDED: "paused",
}
DECLARABLE_FORMATS = frozenset({CHAT, PROMPT_COMPLETION, PREFERENCE, TEXT, REINFORCEMENT})  # detected -> declared
JOB_PREFIX = "ftjob-"
MAX_SUFFIX = 64  # OpenAI's limit


def new_job_name() -> str:
    """A FineTuneJob name that is also an OpenAI-style job id (a DNS-1123 label)."""
    return JOB_PREFIX + secrets.token_hex(12)


def _put(spec: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _method(request: Mapping[str, Any]) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """(kubetune method, OpenAI hyperparameters, the method's own section) of a request."""
    method = request.get("method")
    if method is None:  # the deprecated top-level `hyperparameters` means supervised
        return "sft", request.get("hyperparameters") or {}, {}
    if not isinstance(method, Mapping) or method.get("type") not in METHODS:
        raise invalid(
            f"method.type must be one of {', '.join(METHODS)}; got {method.get('type') if isinstance(method, Mapping) else method!r}",
            "method.type",
        )
    name = method["type"]
    section = method.get(name) or {}
    if not isinstance(section, Mapping):
        raise invalid(f"method.{name} must be an object", f"method.{name}")
    return METHODS[name], section.get("hyperparameters") or {}, section


def _hyperparameters(spec: dict[str, Any], method: str, given: Mapping[str, Any], param: str) -> None:
    """Each given value onto the spec; "auto" (or absent) keeps kubetune's default. Types are strict, as
    OpenAI's: n_epochs and batch_size are integers (not 2.5, not true), the others numbers (not booleans)."""
    if not isinstance(given, Mapping):
        raise invalid("hyperparameters must be an object", param)
    for key, value in given.items():
        if key not in METHOD_HYPERPARAMETERS[method]:
            allowed = ", ".join(METHOD_HYPERPARAMETERS[method])
            raise invalid(f"unknown hyperparameter {key!r} for this method (supported: {allowed})", f"{param}.{key}")
        if value is None or value == "auto":
            continue
        if key in INTEGER_HYPERPARAMETERS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise invalid(f"{key} must be an integer or 'auto'; got {value!r}", f"{param}.{key}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise invalid(f"{key} must be a number or 'auto'; got {value!r}", f"{param}.{key}")
        if key == "learning_rate_multiplier" and not 0 < value <= MAX_LEARNING_RATE / DEFAULT_LEARNING_RATE:
            raise invalid(
                f"learning_rate_multiplier must be above 0 and at most {MAX_LEARNING_RATE / DEFAULT_LEARNING_RATE:g} "
                f"(it scales kubetune's learning rate {DEFAULT_LEARNING_RATE:g}, whose limit is {MAX_LEARNING_RATE:g}); "
                f"got {value!r}",
                f"{param}.{key}",
            )
        path, convert = HYPERPARAMETERS[key]
        _put(spec, path, convert(value))


def _metadata(metadata: Any) -> dict[str, str]:
    """OpenAI's job metadata: string keys up to 64 characters, string values up to 512, at most 16 pairs."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise invalid("metadata must be an object of strings", "metadata")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise invalid(f"metadata has {len(metadata)} pairs; at most {MAX_METADATA_PAIRS} are allowed", "metadata")
    for key, value in metadata.items():
        if not isinstance(key, str) or len(key) > MAX_METADATA_KEY:
            raise invalid(
                f"metadata keys are strings of at most {MAX_METADATA_KEY} characters; got {key!r}", "metadata"
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise invalid(
                f"metadata[{key!r}] must be a string of at most {MAX_METADATA_VALUE} characters; got {value!r:.80}",
                f"metadata.{key}",
            )
    return dict(metadata)


def _graders(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's reinforcement grader as kubetune graders: string_check `eq` -> exact_match, text_similarity
    -> string_similarity, multi -> each of its graders; the reference field is the `{{item.FIELD}}` it names."""
    grader = section.get("grader")
    if not isinstance(grader, Mapping):
        raise invalid("method.reinforcement.grader is required", "method.reinforcement.grader")

    def one(g: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
        kind = g.get("type")
        if kind == "multi":
            return [
                x for i, sub in enumerate((g.get("graders") or {}).values()) for x in one(sub, f"{param}.graders[{i}]")
            ]
        reference = str(g.get("reference") or "{{item.answer}}")
        field = reference.removeprefix("{{").removesuffix("}}").strip().removeprefix("item.") or "answer"
        out: dict[str, Any] = {"field": field}
        if g.get("name"):
            out["name"] = str(g["name"])[:63]
        if kind == "string_check" and g.get("operation", "eq") == "eq":
            return [{"type": "exact_match", **out}]
        if kind == "text_similarity":
            return [{"type": "string_similarity", **out}]
        raise invalid(
            f"grader type {kind!r} is not supported here (supported: string_check with operation eq, "
            "text_similarity, multi of those)",
            f"{param}.type",
        )

    return one(grader, "method.reinforcement.grader")


def base_model_source(model: Any, models: Mapping[str, str], job_exists: Callable[[str], bool]) -> dict[str, Any]:
    """spec.baseModel for an OpenAI model name: a configured hf:// / pvc:// source, or for a fine-tuned model
    `ft:BASE:SUFFIX:ID` of this namespace its job's best checkpoint (continual fine-tuning)."""
    if not isinstance(model, str) or not model:
        raise invalid("model is required", "model")
    if model in models:
        return {"uri": models[model]}
    if model.startswith("ft:"):
        job = model.rsplit(":", 1)[-1]
        if job_exists(job):
            return {"fromJob": {"name": job, "checkpoint": "best"}}
    known = ", ".join(sorted(models)) or "none are configured"
    raise OpenAIError(
        400,
        f"Model {model!r} is not available for fine-tuning here. Base models: {known} "
        "(set in the API server's model map), or a fine-tuned model of yours (ft:...).",
        param="model",
        code="model_not_available",
    )


def job_manifest(
    request: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    file_uri: Callable[[str], str | None],
    models: Mapping[str, str],
    defaults: Mapping[str, Any] | None = None,
    job_exists: Callable[[str], bool] = lambda _: False,
    file_format: Callable[[str], str | None] = lambda _: None,
) -> dict[str, Any]:
    """The FineTuneJob for `POST /v1/fine_tuning/jobs`, admitted as any other manifest would be.

    `file_uri(file_id)` is where a file of this namespace lives (None when there is no such file); `models`
    maps OpenAI base model names to sources; `defaults` is merged into the spec first (resources, storage...).
    `file_format(file_id)` is the format detected at upload: it becomes spec.dataset.format, so admission
    applies `kubetune validate`'s method/format rule (a dpo job on a chat file is refused here)."""
    if not isinstance(request, Mapping):
        raise invalid("the request body must be a JSON object")
    method, hyper, section = _method(request)
    spec: dict[str, Any] = _merge({}, defaults or {})
    spec["method"] = method
    spec["baseModel"] = base_model_source(request.get("model"), models, job_exists)
    dataset: dict[str, Any] = spec.setdefault("dataset", {})
    for key, role in (("training_file", "train"), ("validation_file", "validation")):
        file_id = request.get(key)
        if file_id is None and role == "validation":
            continue
        if not isinstance(file_id, str) or not file_id:
            raise invalid(f"{key} is required", key)
        uri = file_uri(file_id)
        if uri is None:
            raise not_found("file", file_id, param=key)
        dataset[role] = {"uri": uri}
        if role == "train" and (fmt := file_format(file_id)) in DECLARABLE_FORMATS:
            dataset["format"] = fmt
    method_type = METHOD_NAMES[method]
    param = f"method.{method_type}.hyperparameters" if "method" in request else "hyperparameters"
    _hyperparameters(spec, method, hyper, param)
    if method == "dpo":
        spec.setdefault("dpo", {})
    if method == "rft":
        spec["rft"] = {"graders": _graders(section)}
    seed = request.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
            raise invalid(
                f"seed must be an integer from 0 to {MAX_SEED} (2**32-1, the range the trainer's random generators "
                f"take; OpenAI's clients send 32-bit seeds); got {seed!r}",
                "seed",
            )
        _put(spec, ("hyperparameters", "seed"), seed)
    suffix = request.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or len(suffix) > MAX_SUFFIX):
        raise invalid(f"suffix must be a string of at most {MAX_SUFFIX} characters", "suffix")
    annotations = {
        c.ANNOTATION_OPENAI_MODEL: str(request["model"]),
        c.ANNOTATION_OPENAI_TRAINING_FILE: request["training_file"],
    }
    if suffix:
        annotations[c.ANNOTATION_OPENAI_SUFFIX] = suffix
    if request.get("validation_file"):
        annotations[c.ANNOTATION_OPENAI_VALIDATION_FILE] = request["validation_file"]
    metadata = _metadata(request.get("metadata"))
    if metadata:  # one JSON annotation: any OpenAI-valid key, not only Kubernetes annotation names
        annotations[c.ANNOTATION_OPENAI_METADATA] = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
    manifest = {
        "apiVersion": c.API_VERSION,
        "kind": c.FINETUNEJOB,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {c.LABEL_CREATED_BY_API: "true"},
            "annotations": annotations,
        },
        "spec": spec,
    }
    _, errors = admit(manifest, "request")
    if errors:
        first = errors[0]
        message = "; ".join(f"{e.path}: {e.message}" if e.path else e.message for e in errors)
        raise invalid(f"The job was refused: {message}", _param(first.path, param))
    return manifest


def _param(path: str, hyperparameters: str = "hyperparameters") -> str | None:
    """The request field a FineTuneJob field path came from, where there is one (`hyperparameters`: where
    the request put them, e.g. method.supervised.hyperparameters)."""
    for prefix, param in (
        ("spec.hyperparameters.epochs", f"{hyperparameters}.n_epochs"),
        ("spec.hyperparameters.batchSize", f"{hyperparameters}.batch_size"),
        ("spec.hyperparameters.learningRate", f"{hyperparameters}.learning_rate_multiplier"),
        ("spec.hyperparameters.seed", "seed"),
        ("spec.dpo.beta", f"{hyperparameters}.beta"),
        ("spec.baseModel", "model"),
        ("spec.dataset.validation", "validation_file"),
        ("spec.dataset", "training_file"),
        ("spec.rft", "method.reinforcement.grader"),
    ):
        if path.startswith(prefix):
            return param
    return None


# --- views ----------------------------------------------------------------------------------------


def _seconds(value: str | None) -> int | None:
    when = parse_time(value)
    return int(when.timestamp()) if when else None


def _meta(ftj: Mapping[str, Any]) -> Mapping[str, Any]:
    return ftj.get("metadata") or {}


def _annotation(ftj: Mapping[str, Any], key: str) -> str | None:
    return (_meta(ftj).get("annotations") or {}).get(key)


def job_id(ftj: Mapping[str, Any]) -> str:
    return _meta(ftj)["name"]


def base_model_name(ftj: Mapping[str, Any]) -> str:
    """The model the job started from, as the request named it (or the spec's URI for a kubectl-made job)."""
    named = _annotation(ftj, c.ANNOTATION_OPENAI_MODEL)
    if named:
        return named
    source = (ftj.get("spec") or {}).get("baseModel") or {}
    return str(source.get("uri") or (source.get("fromJob") or {}).get("name") or "unknown")


def fine_tuned_model(ftj: Mapping[str, Any]) -> str:
    """`ft:BASE:SUFFIX:ID`; the suffix defaults to the namespace (the managed APIs put the organisation there)."""
    suffix = _annotation(ftj, c.ANNOTATION_OPENAI_SUFFIX) or _meta(ftj).get("namespace") or "default"
    return f"ft:{base_model_name(ftj)}:{suffix}:{job_id(ftj)}"


def job_of_model(model: str) -> str | None:
    """The job id in a fine-tuned model name (`ft:...:ID`), or None for another name."""
    return model.rsplit(":", 1)[-1] if model.startswith("ft:") and model.count(":") >= 2 else None


def is_cancelled(ftj: Mapping[str, Any]) -> bool:
    return bool(_annotation(ftj, c.ANNOTATION_CANCELLED))


def job_status(ftj: Mapping[str, Any]) -> str:
    """OpenAI's status of a FineTuneJob: its phase mapped; a cancelled job that had not finished is cancelled.
    spec.suspend is the requested state and shows before the operator acts on it: paused once suspended,
    queued once resumed (until the operator starts it again)."""
    phase = (ftj.get("status") or {}).get("phase")
    if phase in c.FINISHED_PHASES:
        return STATUSES[phase]
    if is_cancelled(ftj):
        return "cancelled"
    suspend = (ftj.get("spec") or {}).get("suspend")
    if suspend is True:
        return "paused"
    if suspend is False and phase == c.Phase.SUSPENDED:
        return "queued"
    return STATUSES.get(phase or "", "validating_files")


def _error(ftj: Mapping[str, Any]) -> dict[str, Any] | None:
    status = ftj.get("status") or {}
    if status.get("phase") != c.Phase.FAILED:
        return None
    failed = next((x for x in status.get("conditions") or [] if x.get("type") == c.Condition.FAILED), {})
    data_errors = (status.get("data") or {}).get("errors") or []
    message = failed.get("message") or "; ".join(data_errors) or "the job failed"
    code = failed.get("reason") or "failed"
    param = "training_file" if code == c.Reason.DATA_VALIDATION_FAILED else None
    return {"code": code, "message": message, "param": param}


def job_view(ftj: Mapping[str, Any]) -> dict[str, Any]:
    """The `fine_tuning.job` object of a FineTuneJob."""
    spec, status, meta = ftj.get("spec") or {}, ftj.get("status") or {}, _meta(ftj)
    hyper = spec.get("hyperparameters") or {}
    method = spec.get("method", "sft")
    hyperparameters: dict[str, Any] = {
        "n_epochs": hyper.get("epochs", "auto"),
        "batch_size": hyper.get("batchSize", "auto"),
        "learning_rate_multiplier": (
            hyper["learningRate"] / DEFAULT_LEARNING_RATE if "learningRate" in hyper else "auto"
        ),
    }
    if method == "dpo":
        hyperparameters["beta"] = (spec.get("dpo") or {}).get("beta", "auto")
    method_name = METHOD_NAMES.get(method, method)
    dataset = spec.get("dataset") or {}
    state = job_status(ftj)
    metadata = job_metadata(ftj)
    return {
        "id": job_id(ftj),
        "object": "fine_tuning.job",
        "created_at": _seconds(meta.get("creationTimestamp")) or 0,
        "finished_at": _seconds(status.get("completionTime")) if state in ("succeeded", "failed") else None,
        "model": base_model_name(ftj),
        "fine_tuned_model": fine_tuned_model(ftj) if state == "succeeded" else None,
        "organization_id": meta.get("namespace"),
        "status": state,
        "training_file": _annotation(ftj, c.ANNOTATION_OPENAI_TRAINING_FILE) or (dataset.get("train") or {}).get("uri"),
        "validation_file": _annotation(ftj, c.ANNOTATION_OPENAI_VALIDATION_FILE)
        or (dataset.get("validation") or {}).get("uri"),
        "result_files": [],
        "trained_tokens": (status.get("data") or {}).get("trainTokens") if state == "succeeded" else None,
        "error": _error(ftj),
        "hyperparameters": {k: v for k, v in hyperparameters.items() if k != "beta"},
        "method": {"type": method_name, method_name: {"hyperparameters": hyperparameters}}
        if method in METHOD_NAMES
        else None,
        "seed": hyper.get("seed", 42),
        "suffix": _annotation(ftj, c.ANNOTATION_OPENAI_SUFFIX),
        "estimated_finish": None,
        "integrations": [],
        "metadata": metadata or None,
        "user_provided_suffix": _annotation(ftj, c.ANNOTATION_OPENAI_SUFFIX),
    }


def job_metadata(ftj: Mapping[str, Any]) -> dict[str, str]:
    """The job's OpenAI metadata (the kubetune.dev/openai-metadata JSON annotation)."""
    try:
        found = json.loads(_annotation(ftj, c.ANNOTATION_OPENAI_METADATA) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def events_view(ftj: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`fine_tuning.job.event` objects, newest first: the FineTuneJob's Kubernetes Events, then its
    progress and latest metrics as one `metrics` event (the step the trainer last reported)."""
    out: list[dict[str, Any]] = []
    for event in events:
        meta = event.get("metadata") or {}
        at = event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp")
        reason, message = event.get("reason") or "", event.get("message") or ""
        out.append(
            {
                "id": f"ftevent-{meta.get('uid') or meta.get('name')}",
                "object": "fine_tuning.job.event",
                "created_at": _seconds(at) or 0,
                "level": "warn" if event.get("type") == "Warning" else "info",
                "message": f"{reason}: {message}" if reason else message,
                "type": "message",
                "data": {"reason": reason},
            }
        )
    status = ftj.get("status") or {}
    progress, metrics = status.get("progress") or {}, status.get("metrics") or {}
    if progress.get("step") is not None:
        total = progress.get("totalSteps")
        data = {"step": progress["step"], "total_steps": total, **{_snake(k): v for k, v in metrics.items()}}
        text = f"Step {progress['step']}/{total}" if total else f"Step {progress['step']}"
        if "trainLoss" in metrics:
            text += f": training loss={metrics['trainLoss']:.4f}"
        latest = max((e["created_at"] for e in out), default=_seconds(_meta(ftj).get("creationTimestamp")) or 0)
        out.append(
            {
                "id": f"ftevent-{job_id(ftj)}-step-{progress['step']}",
                "object": "fine_tuning.job.event",
                "created_at": latest,
                "level": "info",
                "message": text,
                "type": "metrics",
                "data": data,
            }
        )
    out.sort(key=lambda e: (e["created_at"], e["type"] == "metrics"), reverse=True)
    return out


def _snake(key: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in key)


def checkpoints_view(ftj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`fine_tuning.job.checkpoint` objects from status.checkpoints, newest (highest step) first."""
    status = ftj.get("status") or {}
    at = _seconds(status.get("completionTime")) or _seconds(_meta(ftj).get("creationTimestamp")) or 0
    model = fine_tuned_model(ftj)
    out = []
    for ckpt in status.get("checkpoints") or []:
        step = ckpt.get("step") or 0
        metrics = {_snake(k): v for k, v in (ckpt.get("metrics") or {}).items()}
        metrics.setdefault("step", step)
        out.append(
            {
                "id": f"ftckpt-{job_id(ftj)}-{ckpt['name']}",
                "object": "fine_tuning.job.checkpoint",
                "created_at": at,
                "fine_tuned_model_checkpoint": f"{model}:{ckpt['name']}",
                "fine_tuning_job_id": job_id(ftj),
                "metrics": metrics,
                "step_number": step,
            }
        )
    out.sort(key=lambda x: x["step_number"], reverse=True)
    return out


def page(items: Sequence[Mapping[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """An OpenAI cursor page: the `limit` items after the one whose id is `after` (the order is the caller's)."""
    start = 0
    if after:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chunk = list(items[start : start + limit])
    return {
        "object": "list",
        "data": chunk,
        "has_more": start + limit < len(items),
        "first_id": chunk[0]["id"] if chunk else None,
        "last_id": chunk[-1]["id"] if chunk else None,
    }


def cancel_patch(now: str) -> dict[str, Any]:
    """The merge patch that cancels a job: suspended (the Job's pods go) and marked cancelled."""
    return {"metadata": {"annotations": {c.ANNOTATION_CANCELLED: now}}, "spec": {"suspend": True}}
