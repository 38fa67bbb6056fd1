"""spec.export: after training, the training pod writes the chosen checkpoint, its tokenizer and a model card
to s3:// or a Hugging Face Hub repository, and reports where it went and a digest (status.export).

The training pod does it (not a separate Job): it already has the PVC with the checkpoints, the
credentials, and the reporter that may patch its own job's status. A failed export fails the pod (exit
EXIT_EXPORT_FAILED); a retry finds final/ written and only exports again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kubetune import constants as c
from kubetune.api.checkpoints import FINAL, Checkpoint, complete_checkpoints, rank, read_meta
from kubetune.api.runconfig import TrainRunConfig
from kubetune.objectstore import file_sha256, is_s3, upload_folder
from kubetune_trainer.modelcard import model_card

log = logging.getLogger(__name__)

# What is copied from a checkpoint: weights, configs, tokenizer, kubetune.json. Not the optimizer state,
# the RNG state or the Trainer's bookkeeping (resume files nobody outside this job can use).
SKIP = ("optimizer.pt", "scheduler.pt", "rng_state", "trainer_state.json", "training_args.bin", "pytorch_model_fsdp")


EXPORT_RECORD = "export.json"  # in the output folder once the export is done: its status.export entry


class ExportError(RuntimeError):
    """The export cannot be done; the message says what to change."""


def best_checkpoint(cfg: TrainRunConfig) -> str:
    """The best of the kept checkpoints and final/ by spec.checkpoints.selectBy (as the job's status says)."""
    out = Path(cfg.output_dir)
    candidates = complete_checkpoints(out)
    final = read_meta(out / FINAL)
    if final is not None:
        candidates.append(Checkpoint(FINAL, int(final.get("step") or 0), out / FINAL, final))
    select = cfg.spec.checkpoints.select_by
    ranked = rank(candidates, select.metric, select.mode)
    return ranked[0].name if ranked else FINAL


def checkpoint_dir(cfg: TrainRunConfig, wanted: str) -> Path:
    """The folder spec.export.checkpoint names: best, final, or a kept checkpoint."""
    out = Path(cfg.output_dir)
    name = best_checkpoint(cfg) if wanted == "best" else wanted
    path = out / name
    if not (path / c.CHECKPOINT_META).is_file():
        kept = sorted(p.name for p in out.iterdir() if (p / c.CHECKPOINT_META).is_file())
        raise ExportError(f"spec.export.checkpoint {wanted!r}: no complete checkpoint {name!r}; kept: {kept}")
    return path


def stage(src: Path, dest: Path, *, merge: bool, base_model_uri: str | None, storage: Any) -> str:
    """Copy (or merge) the checkpoint into `dest`; returns its kind: adapter, merged or full."""
    adapter = (src / "adapter_config.json").is_file()
    if adapter and merge:
        from kubetune.api.runconfig import Identity, ServeRunConfig
        from kubetune_trainer.merge import merge as merge_into

        cfg = ServeRunConfig(
            job=Identity(name="export"),
            output_dir=str(dest.parent),
            model_uri=str(src),
            base_model_uri=base_model_uri,
            served_model_name="export",
            storage=storage,
        )
        merge_into(cfg, dest)
        shutil.copy2(src / c.CHECKPOINT_META, dest / c.CHECKPOINT_META)
        return "merged"
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith(SKIP):
            shutil.copy2(f, dest / f.name)
    return "adapter" if adapter else "full"


def manifest(files: list[tuple[str, int, str]]) -> str:
    """One 'SHA256  SIZE  PATH' line per file, sorted by path: what the digest is taken over."""
    return "".join(f"{sha}  {size}  {path}\n" for path, size, sha in sorted(files))


EVALUATIONS = "evaluations"  # beside the job's output on its claim: evaluations/<Evaluation>/results.json


def evaluation_of(out: Path, checkpoint: str) -> tuple[dict[str, float], str | None] | None:
    """An Evaluation's scores of `checkpoint` (metric -> score, and the dataset they were measured on), from the
    newest results.json under <output>/../evaluations/ holding a result for this job's `checkpoint`; None if none.

    Evaluations of a FineTuneJob write there (kubetune.builders.evaluation.output_uri) and may score checkpoints
    while the job trains; one that has not finished when the export runs is not in the card."""
    found: list[tuple[str, dict[str, float], str | None]] = []
    for path in sorted((out.parent / EVALUATIONS).glob("*/results.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("model card: %s is unreadable, its results are left out: %s", path, err)
            continue
        for result in doc.get("results") or []:
            uri = str(result.get("uri") or "").rstrip("/")
            ours = result.get("model") == checkpoint and uri.endswith(f"/{out.name}/{checkpoint}")
            if ours and isinstance(result.get("metrics"), dict):
                found.append((str(doc.get("createdAt") or ""), result["metrics"], doc.get("dataset")))
    if not found:
        return None
    _, metrics, dataset = max(found, key=lambda f: f[0])
    return metrics, dataset


def export(cfg: TrainRunConfig, evaluation: dict[str, float] | None = None) -> dict[str, Any]:
    """Stage, write the model card, upload; the status.export entry. `evaluation` (metric -> score) defaults to
    an Evaluation's results of the exported checkpoint, if one has finished (evaluation_of)."""
    spec = cfg.spec.export
    assert spec is not None
    out = Path(cfg.output_dir)
    src = checkpoint_dir(cfg, spec.checkpoint)
    meta = json.loads((src / c.CHECKPOINT_META).read_text())
    evaluation_dataset = None
    if evaluation is None and (found := evaluation_of(out, src.name)) is not None:
        evaluation, evaluation_dataset = found
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp:
        staged = Path(tmp) / "model"
        kind = stage(src, staged, merge=spec.merge, base_model_uri=meta.get("base_model"), storage=cfg.storage)
        (staged / "README.md").write_text(
            model_card(
                meta,
                kind=kind,
                checkpoint=src.name,
                hyperparameters=meta.get("hyperparameters") or cfg.spec.hyperparameters.to_k8s(),
                evaluation=evaluation,
                evaluation_dataset=evaluation_dataset,
            ),
            encoding="utf-8",
        )
        files = [(p.relative_to(staged).as_posix(), p.stat().st_size, file_sha256(p)) for p in staged.rglob("*")]
        files = [f for f in files if (staged / f[0]).is_file()]
        (staged / "MANIFEST.sha256").write_text(manifest(files), encoding="utf-8")
        digest = "sha256:" + hashlib.sha256(manifest(files).encode()).hexdigest()
        log.info("exporting %s (%s, %d files) to %s", src.name, kind, len(files), spec.uri)
        where = _upload(staged, spec.uri, src.name)
    from kubetune.api.clock import now_iso

    return {
        "uri": where,
        "checkpoint": src.name,
        "kind": kind,
        "digest": digest,
        "files": len(files),
        "bytes": sum(size for _, size, _ in files),
        "exportedAt": now_iso(),
    }


def _upload(folder: Path, uri: str, checkpoint: str) -> str:
    if is_s3(uri):
        upload_folder(folder, uri)
        return uri
    from huggingface_hub import HfApi

    from kubetune.api.common import split_hf_uri

    repo, revision = split_hf_uri(uri)
    token = os.environ.get(c.ENV_HF_EXPORT_TOKEN) or os.environ.get(c.ENV_HF_TOKEN) or None
    api = HfApi(token=token)  # HF_ENDPOINT points it at another Hub (a mirror, a test server)
    api.create_repo(repo, private=True, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo, folder_path=str(folder), revision=revision, commit_message=f"kubetune export of {checkpoint}"
    )
    commit = getattr(info, "oid", None)
    return f"hf://{repo}@{commit}" if commit else f"hf://{repo}"


def run_export(cfg: TrainRunConfig, reporter: Any) -> int:
    """Export once per finished run (a retry of the pod exports again only if it had not finished)."""
    done = Path(cfg.output_dir) / EXPORT_RECORD
    if done.is_file():
        return c.EXIT_OK
    try:
        entry = export(cfg)
    except Exception as err:  # the pod fails with one line that names the destination; secrets are never in it
        from kubetune_trainer import termination

        # huggingface_hub's HTTP errors span lines (status, url, a docs link, the server's message): one line here
        detail = " ".join(termination.redact(str(err) or type(err).__name__).split())
        log.error("export to %s failed: %s", cfg.spec.export.uri if cfg.spec.export else "?", detail)
        termination.write(termination.EXPORT_ERROR, f"export failed: {detail}")
        return c.EXIT_FAILED
    done.write_text(json.dumps(entry, indent=2, sort_keys=True), encoding="utf-8")
    reporter.exported(entry)
    reporter.flush()
    log.info("exported %s to %s (%s)", entry["checkpoint"], entry["uri"], entry["digest"])
    return c.EXIT_OK
