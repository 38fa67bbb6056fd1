"""`kubetune-trainer train --config FILE`: validate the data, then train, checkpoint and report.

Order of work, so that a failure leaves nothing half-made:
1. a finished run (final/kubetune.json exists) is not repeated;
2. the data is validated; invalid data writes `data-validation.txt`, reports, exits 3 — nothing else;
3. several GPUs or nodes: the workers are started with `accelerate launch` (launcher.py);
4. the model is loaded, the method's TRL trainer built, training resumes from the newest complete
   checkpoint if there is one;
5. the result goes to `final/` (written aside, then renamed) with its kubetune.json.

SIGTERM/SIGINT during training (a pod being preempted, evicted, suspended or deleted; Ctrl-C of
`kubetune run`) ends the current step, saves a complete checkpoint and exits 143/130 without final/;
the next start resumes from it (callbacks.GracefulStop).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune import constants as c
from kubetune.api.checkpoints import FINAL, Checkpoint, complete_checkpoints, latest_complete, rank, read_meta
from kubetune.api.runconfig import TrainRunConfig
from kubetune.data.promptformat import META_KEY
from kubetune_trainer import tracking
from kubetune_trainer.inputs import DataValidationError, ValidatedData, load_datasets, validate
from kubetune_trainer.launcher import Topology, launch_command, needs_launch
from kubetune_trainer.planstatus import report_memory_plan
from kubetune_trainer.progress import NullReporter, ProgressReporter, make_reporter

if TYPE_CHECKING:
    from kubetune_trainer.checkpoints import CheckpointCallback

log = logging.getLogger("kubetune_trainer")

# Exit statuses (their values live in kubetune.constants; these names say what they mean to the trainer).
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_DATA = c.EXIT_OK, c.EXIT_FAILED, c.EXIT_USAGE, c.EXIT_DATA_VALIDATION_FAILED
EXIT_SIGTERM = c.EXIT_STOPPED_WITH_CHECKPOINT  # stopped by SIGTERM with a checkpoint (128 + 15)
EXIT_SIGINT = c.EXIT_INTERRUPTED  # stopped by SIGINT (Ctrl-C) with a checkpoint
VALIDATION_REPORT = "data-validation.txt"
SHUTDOWN_TIMEOUT_SECONDS = 600  # how long torchrun's agent waits for workers after passing a signal on


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def reporter_for(cfg: TrainRunConfig) -> ProgressReporter:
    if not is_main_process():
        return NullReporter()
    p = cfg.progress
    return make_reporter(
        p.backend, path=p.path, name=cfg.job.name, namespace=cfg.job.namespace, min_interval=p.min_interval_seconds
    )


def output_uri(cfg: TrainRunConfig, name: str | None = None) -> str:
    base = cfg.output_uri or str(Path(cfg.output_dir).resolve())
    return f"{base.rstrip('/')}/{name}" if name else base


def write_validation_report(output_dir: Path, report: str) -> Path:
    """The report beside the checkpoints; only this one file is written (atomically)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / VALIDATION_REPORT
    tmp = path.with_name(f".{VALIDATION_REPORT}.tmp")
    tmp.write_text(report.rstrip() + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def data_failed(out: Path, reporter: ProgressReporter, err: DataValidationError, report: bool = True) -> int:
    """Invalid data: the report beside the checkpoints (the termination message's source), status.data.errors,
    and EXIT_DATA, so the Job fails at once instead of retrying."""
    if is_main_process() and report:
        path = write_validation_report(out, err.report)
        reporter.data_failed(err.report, err.status)
        reporter.flush()
        print(f"data validation failed; nothing was trained. Report: {path}\n{err.report}", file=sys.stderr)
    return EXIT_DATA


def run_info(cfg: TrainRunConfig, data: ValidatedData, loaded: Any, precision: str) -> dict[str, Any]:
    """What every kubetune.json records about the run."""
    spec = cfg.spec
    adapter = None
    if spec.adapter.type != "none":
        adapter = spec.adapter.model_dump(by_alias=True, mode="json")
        peft = loaded.peft_config or (getattr(loaded.model, "peft_config", None) or {}).get("default")
        if peft is not None:
            adapter["peft"] = {
                k: (sorted(v) if isinstance(v, set) else str(v) if k.endswith("_type") else v)
                for k, v in peft.to_dict().items()
                if k in ("r", "lora_alpha", "lora_dropout", "target_modules", "peft_type", "task_type")
            }
    return {
        "job": cfg.job.name,
        "method": spec.method,
        "base_model": loaded.base_model,
        "started_from": loaded.started_from,
        "adapter": adapter,
        "freeze_layers": spec.freeze_layers,
        "dataset": {
            "train": spec.dataset.train.uri,
            "validation": spec.dataset.validation.uri if spec.dataset.validation else None,
            "format": data.format,
            "hash": data.dataset_hash,
            "max_examples": spec.dataset.max_examples,
        },
        "dataset_hash": data.dataset_hash,
        "precision": precision,
        "hyperparameters": spec.hyperparameters.model_dump(by_alias=True, mode="json"),
    }


def build_trainer(
    cfg: TrainRunConfig, data: ValidatedData, reporter: ProgressReporter, extra_callbacks: list, stop: Any = None
):
    """(trainer, checkpoint callback, loaded model, throughput) for this run; `stop`: a GracefulStop."""
    from kubetune_trainer import methods, prompting, seqlength, sharding
    from kubetune_trainer.callbacks import ProgressCallback, Throughput
    from kubetune_trainer.checkpoints import CheckpointCallback
    from kubetune_trainer.modeling import choose_precision, load_model, use_gradient_checkpointing
    from kubetune_trainer.shardrecord import debug_callbacks

    spec = cfg.spec
    hp = spec.hyperparameters
    method = methods.method_for(spec)
    train, evals = load_datasets(cfg, data)
    examples = method.prepare(cfg, methods.MethodData(train, evals, data.format))

    precision = choose_precision(hp.precision)
    loaded = load_model(spec, cfg.base_model_uri, cfg.storage, precision, sharded=cfg.sharding == "fsdp")
    for note in loaded.notes:
        log.info("%s", note)
    # TRL would drop every example cut to nothing to learn and crash later: a data error now, in kubetune's words
    seqlength.check_run(method.trains_as, spec, examples.train, examples.evals, examples.fmt, loaded.tokenizer)
    n_params = sum(p.numel() for p in loaded.model.parameters())
    trainable = n_params if loaded.peft_config is None else n_params // 100
    weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    grad_ckpt = use_gradient_checkpointing(hp.gradient_checkpointing, trainable * 4, weight_bytes)
    fsdp = None
    if cfg.sharding == "fsdp":
        # FSDP's own activation checkpointing replaces the Trainer's (the Trainer refuses both)
        fsdp = sharding.fsdp_arguments(
            loaded.model, activation_checkpointing=grad_ckpt, cpu_offload=spec.resources.sharding.cpu_offload
        )

    has_eval = bool(examples.evals) and method.evaluates
    run_settings = methods.RunSettings(
        cfg=cfg,
        precision=precision,
        schedule=methods.schedule(spec, has_eval),
        gradient_checkpointing=grad_ckpt and fsdp is None,
        has_eval=has_eval,
        liger=methods.liger_available(),
        fsdp=fsdp,
        processes=int(os.environ.get("WORLD_SIZE", "1")),
    )
    throughput = Throughput()
    info = run_info(cfg, data, loaded, precision.name)
    # How the trainer formats prompts; evaluation and serving read it back from kubetune.json.
    info[META_KEY] = prompting.training_record(method.trains_as, examples.fmt, examples.train[0], loaded.tokenizer)
    ckpt_cb = CheckpointCallback(
        output_dir=cfg.output_dir,
        keep=spec.checkpoints.keep,
        metric=spec.checkpoints.select_by.metric,
        mode=spec.checkpoints.select_by.mode,
        run_info=info,
        reporter=reporter,
        uri_of=lambda name: output_uri(cfg, name),
        every_epochs=run_settings.schedule.every_epochs,
        evaluate=run_settings.schedule.eval_every_save,
        throughput=throughput,
        stop=stop,
        sharded=fsdp is not None,
    )
    # GracefulStop before CheckpointCallback: it asks for the save that the other then marks complete.
    callbacks = [
        ProgressCallback(reporter, throughput),
        *([stop] if stop else []),
        ckpt_cb,
        *debug_callbacks(),
        *extra_callbacks,
    ]
    config = method.build_config(run_settings, examples, loaded)
    trainer = method.build_trainer(run_settings, config, loaded, examples, callbacks)
    if fsdp is not None:
        sharding.enable_on_cpu(trainer)
    model = trainer.model  # PEFT-wrapped when an adapter trains; None only for a Trainer built with model_init
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if model is not None else 0
    log.info(
        "method %s, %s parameters (%s trainable), precision %s, gradient checkpointing %s, %s, "
        "%d train / %s eval examples%s",
        spec.method,
        f"{n_params:,}",
        f"{trainable:,}",
        precision.name,
        "on" if grad_ckpt else "off",
        f"FSDP2 over {trainer.args.world_size} processes" if fsdp else "not sharded",
        len(examples.train),
        len(examples.evals) if examples.evals else 0,
        ", Liger kernels" if run_settings.liger else "",
    )
    return trainer, ckpt_cb, loaded, throughput


def save_final(cfg: TrainRunConfig, trainer: Any, ckpt_cb: CheckpointCallback, loaded: Any) -> dict[str, Any] | None:
    """Write final/ aside and rename it into place; returns its kubetune.json (None on ranks other than 0).

    A sharded model is gathered by every rank and written by rank 0 in the usual HF/PEFT layout.
    """
    from kubetune_trainer.checkpoints import _barrier, write_json_atomic
    from kubetune_trainer.sharding import save_consolidated

    out = Path(cfg.output_dir)
    tmp = out / f".{FINAL}.tmp"
    main = trainer.args.should_save
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    if ckpt_cb.sharded:
        _barrier()
        save_consolidated(trainer.model, loaded.tokenizer, tmp, main=main)
    else:
        trainer.save_model(str(tmp))
        if main:
            loaded.tokenizer.save_pretrained(str(tmp))
    if not main:
        return None
    meta = ckpt_cb.meta(trainer.state, FINAL)
    write_json_atomic(tmp / c.CHECKPOINT_META, meta)
    final = out / FINAL
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return meta


def finish(cfg: TrainRunConfig, ckpt_cb: CheckpointCallback, reporter: ProgressReporter, final_meta: dict) -> None:
    """Report the kept checkpoints plus final, the best of them and the job's output."""
    kept, _ = ckpt_cb.publish()
    final_cp = Checkpoint(FINAL, final_meta["step"], Path(cfg.output_dir) / FINAL, final_meta)
    candidates = [*kept, final_cp]
    ranked = rank(candidates, ckpt_cb.metric, ckpt_cb.mode)
    best = ranked[0].name if ranked else FINAL
    reporter.checkpoints([ckpt_cb.status_entry(cp) for cp in candidates], best)
    metrics = {}
    m = final_meta.get("metrics") or {}
    if "train_loss" in m:
        metrics["trainLoss"] = round(m["train_loss"], 6)
    if "eval_loss" in m:
        metrics["evalLoss"] = round(m["eval_loss"], 6)
    if "reward" in m:  # rft
        metrics["reward"] = round(m["reward"], 6)
    reporter.finished({"uri": output_uri(cfg), "checkpoint": best}, metrics)
    reporter.flush()


def run(
    cfg: TrainRunConfig, *, config_path: str | None = None, worker: bool = False, callbacks: list | None = None
) -> int:
    """Train as the run config says; returns the process exit code."""
    out = Path(cfg.output_dir)
    reporter = reporter_for(cfg)
    final_meta = read_meta(out / FINAL)
    if final_meta is not None:
        log.info("%s already holds a finished run (step %s); nothing to do", out / FINAL, final_meta.get("step"))
        return _export(cfg, reporter)

    try:
        data = validate(cfg)
    except DataValidationError as err:
        return data_failed(out, reporter, err, report=not worker)
    if not worker:
        reporter.data(data.status)
        report_memory_plan(cfg, data.status, reporter)  # status.memoryPlan: config.json, the data's tokens, the GPU
    from kubetune_trainer.startchecks import TrainerConfigError, check_machine, check_rft_groups

    try:
        check_machine(cfg.spec)  # QLoRA without a GPU: said now, not after the teacher's labels and the model load
    except TrainerConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG

    topo = Topology.from_env(cfg.spec.resources.gpus, cfg.spec.resources.nodes)
    try:
        check_rft_groups(cfg.spec, topo.world_size)  # before any worker starts
    except TrainerConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    given_path = config_path
    if not worker:
        cfg, config_path = resolve_sharding(cfg, config_path, topo.world_size)
    try:
        if needs_launch(topo, cfg.sharding) and not worker:
            return _launch_workers(topo, cfg, config_path)
    finally:
        # resolve_sharding's copy of the run config (a temporary file) is only for the workers: removed once
        # they exit, or at once when this process trains by itself
        if config_path is not None and config_path != given_path:
            Path(config_path).unlink(missing_ok=True)

    from kubetune_trainer.callbacks import GracefulStop
    from kubetune_trainer.checkpoints import discard_incomplete

    if is_main_process():
        removed = discard_incomplete(out)
        if removed:
            log.warning("discarded incomplete checkpoints: %s", ", ".join(removed))
    stop = GracefulStop()
    tracking.configure_environment(cfg)
    tracked = tracking.start(cfg) if is_main_process() else None
    if tracked is None:
        return _train(cfg, data, reporter, stop, callbacks)
    reporter = tracking.TrackedReporter(reporter, tracked)
    reporter.tracking(tracked.status())
    tracked.log_params({f"data.{k}": str(v) for k, v in data.status.items() if not isinstance(v, list | dict)})
    outcome = "FAILED"
    try:
        rc = _train(cfg, data, reporter, stop, callbacks)
        outcome = {EXIT_OK: "FINISHED", EXIT_SIGTERM: "KILLED", EXIT_SIGINT: "KILLED"}.get(rc, "FAILED")
        return rc
    finally:
        tracked.end(outcome)


def _launch_workers(topo: Topology, cfg: TrainRunConfig, config_path: str | None) -> int:
    """Start this pod's training workers (accelerate launch) on the run config at `config_path`; their exit code."""
    if config_path is None:
        raise ValueError("a distributed run needs the config file path to hand to its workers")
    cmd = launch_command(topo, config_path, sharding=cfg.sharding)
    log.info("starting %d workers: %s", topo.world_size, " ".join(cmd))
    launched = time.time()
    rc = run_forwarding_signals(cmd)
    stopped = _interrupted_since(Path(cfg.output_dir), launched)
    if rc not in (EXIT_OK, EXIT_SIGTERM, EXIT_SIGINT) and stopped:
        # another pod's rank was told to stop, so these workers stopped with it (torchrun says 1)
        log.warning("the workers stopped with %s (exit code %s); exiting as interrupted", stopped, rc)
        return EXIT_SIGTERM
    return rc


def _train(
    cfg: TrainRunConfig, data: ValidatedData, reporter: ProgressReporter, stop: Any, callbacks: list | None
) -> int:
    """Build the trainer, train (resuming from the newest complete checkpoint) and write the result."""
    from kubetune_trainer.startchecks import TrainerConfigError

    out = Path(cfg.output_dir)
    final_meta = None
    try:
        trainer, ckpt_cb, loaded, _ = build_trainer(cfg, data, reporter, list(callbacks or []), stop)
    except TrainerConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except DataValidationError as err:  # found with the model's tokenizer (seqlength): as invalid data, exit 3
        return data_failed(out, reporter, err)
    resume = latest_complete(out)
    if resume:
        log.info("resuming from %s (step %d)", resume.path, resume.step)
    started = time.monotonic()
    with stop.installed():
        trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
    if stop.stopped_at is not None:
        return interrupted(cfg, trainer, stop, reporter)
    if stop.received is not None:
        log.warning("a stop signal came after the last step; writing the finished run's output")
    if trainer.eval_dataset is not None and cfg.spec.method != "rft":
        trainer.evaluate()
    if trainer.args.should_save or ckpt_cb.sharded:
        final_meta = save_final(cfg, trainer, ckpt_cb, loaded)
    if trainer.args.should_save and final_meta is not None:
        finish(cfg, ckpt_cb, reporter, final_meta)
        rc = _export(cfg, reporter)
        if rc != EXIT_OK:
            return rc
        log.info(
            "trained %d steps in %.0fs; output %s (%d checkpoints kept)",
            trainer.state.global_step,
            time.monotonic() - started,
            out / FINAL,
            len(complete_checkpoints(out)),
        )
    return EXIT_OK


def resolve_sharding(
    cfg: TrainRunConfig, config_path: str | None, world_size: int
) -> tuple[TrainRunConfig, str | None]:
    """The run config with spec.resources.sharding resolved (auto: by the memory plan, here where the model's
    config.json and the GPU are known), and the path of a copy of it for the workers when it changed."""
    from kubetune_trainer.sharding import resolve

    if cfg.sharding is not None:
        return cfg, config_path
    requested = cfg.spec.resources.sharding.strategy
    model_path = None
    if requested == "auto" and world_size > 1:
        from kubetune_trainer.sources import resolve_model

        model_path = resolve_model(
            cfg.base_model_uri, cfg.storage, token_env=c.ENV_HF_TOKEN, revision=cfg.spec.base_model.revision
        )
    choice, why = resolve(requested, cfg.spec, model_path, world_size)
    log.info("sharding: %s (%s)", choice, why)
    resolved = cfg.model_copy(update={"sharding": choice})
    if config_path is None:
        return resolved, None
    import tempfile

    fd, path = tempfile.mkstemp(prefix="kubetune-run-config.", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        fh.write(resolved.dump())
    return resolved, path


def _export(cfg: TrainRunConfig, reporter: ProgressReporter) -> int:
    """spec.export, after the run's output is written (kubetune_trainer.export)."""
    if cfg.spec.export is None or not is_main_process():
        return EXIT_OK
    from kubetune_trainer.export import run_export

    return run_export(cfg, reporter)


def interrupted(cfg: TrainRunConfig, trainer: Any, stop: Any, reporter: ProgressReporter) -> int:
    """A run stopped by SIGTERM/SIGINT: its checkpoint is saved; no final/, no success; 143 or 130."""
    import signal

    name = f"checkpoint-{stop.stopped_at}"
    saved = read_meta(Path(cfg.output_dir) / name) is not None
    sig = signal.Signals(stop.received).name
    if is_main_process():
        reporter.interrupted(signal=sig, step=trainer.state.global_step, checkpoint=name if saved else None)
        reporter.flush()
        where = f"saved {Path(cfg.output_dir) / name}" if saved else "no checkpoint could be saved"
        log.warning("stopped by %s at step %d; %s; run again to resume", sig, trainer.state.global_step, where)
    return stop.exit_code


def _interrupted_since(out: Path, since: float) -> str | None:
    """The newest complete checkpoint if a stop signal had it written after `since` (epoch seconds)."""
    cp = latest_complete(out)
    if cp and cp.meta.get("interrupted") and (cp.path / c.CHECKPOINT_META).stat().st_mtime >= since:
        return cp.name
    return None


def run_forwarding_signals(cmd: list[str]) -> int:
    """Run the workers' launcher and pass SIGTERM/SIGINT on to it; its exit code, 128+N for a signal.

    In a pod only PID 1 (this process) gets the SIGTERM; torchrun's agent (under `accelerate launch`)
    sends it on to every worker and waits TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds (30 unless set) for
    them before SIGKILL, so that wait is raised to cover a checkpoint save.

    The launcher runs in its own process group, and only this process signals it, once: a signal sent to
    this process's group (`kubetune run`, a shell) must not reach the agent a second time, because a second
    SIGTERM/SIGINT raised inside the agent's shutdown aborts it before the workers (each in its own session)
    are told to stop: they kept training, orphaned. A later signal is not passed on; whoever insists kills
    the process tree (SIGKILL after the grace period). This process returns only when the launcher has exited.
    """
    import signal

    env = {**os.environ}
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT_SECONDS))
    received: list[int] = []
    launched: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1 and launched:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launched[0].pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        proc = subprocess.Popen(cmd, env=env, process_group=0)
        launched.append(proc)
        if received:  # a signal came while it was starting
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, received[0])
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if rc < 0:
        return 128 - rc
    if received and rc != 0:
        return 128 + received[0]
    return rc


def load_config(path: str) -> TrainRunConfig:
    return TrainRunConfig.load(path)
