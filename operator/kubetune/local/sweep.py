"""`kubetune sweep FILE`: a FineTuneSweep's search, with Optuna on this machine or as a Katib Experiment.

Locally each trial is `kubetune run` of the template with the trial's values (same runtime, same trainer),
one at a time. While a trial trains its progress file is read: each new eval_loss is reported to Optuna,
and when the pruner (MedianPruner, Katib's medianstop) says so the trial's `kubetune run` gets SIGTERM, which
it handles as Ctrl-C, and the FineTuneJob ends Suspended with its checkpoints. The trials are ordinary FineTuneJobs
in the runs folder: `RUNS/sweeps/NAME/best.yaml` is the best one's manifest, and an Evaluation or a
ModelDeployment names it with `fineTuneJob: {name: ...}` like any other job.

`--katib` runs nothing: it writes the ConfigMap (trial template) and the Experiment (kubeflow.org/v1beta1)
that run the same search on a cluster (`kubetune.builders.katib`).

Exit status: EXIT_OK a best trial was found (or the Katib objects were written), EXIT_FAILED no trial
finished, EXIT_USAGE the sweep file is wrong, EXIT_INTERRUPTED Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kubetune import constants as c
from kubetune.api.sweep import FineTuneSweep, SweepError, SweepParameter, get_path, load_sweep, trial_document
from kubetune.local.context import PROGRESS
from kubetune.local.events import JsonlTail
from kubetune.local.state import RunsDir

POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 120.0  # a pruned trial writes its checkpoint before it exits
# How a trial is stopped (pruned, or the sweep interrupted). Not SIGINT: a sweep started in the background by a
# script has SIGINT ignored, its trials inherit that, and a pruned trial would train on to the end.
STOP_SIGNAL = signal.SIGTERM


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubetune sweep",
        description="Search hyperparameters of a FineTuneJob (a FineTuneSweep file): locally with Optuna, each "
        "trial a `kubetune run` of the template, bad trials stopped early; or, with --katib, write the Katib "
        "Experiment that runs the same search on a cluster.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a FineTuneSweep manifest")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the trials run (./runs)")
    p.add_argument("--katib", action="store_true", help="write the Katib ConfigMap + Experiment, run nothing")
    p.add_argument("-o", "--output", type=Path, help="with --katib: write the YAML here (- or none: stdout)")
    p.add_argument(
        "--trainer-container", default=c.TRAINER_CONTAINER, help="with --katib: the primary container's name"
    )
    return p


@dataclass
class TrialResult:
    number: int
    name: str
    values: dict[str, Any]
    state: str  # COMPLETE | PRUNED | FAIL
    objective: float | None = None
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (step, eval_loss)
    best_checkpoint: str | None = None
    seconds: float = 0.0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    try:
        sweep = load_sweep(args.file)
    except SweepError as err:
        for line in err.errors:
            console.print(Text("error: ", style="red") + Text(line), highlight=False, soft_wrap=True)
        return c.EXIT_USAGE
    if args.katib:
        from kubetune.builders.katib import katib_objects, relative_uris, to_yaml

        for where in relative_uris(sweep.spec.template):
            print(
                f"warning: {args.file}: spec.template.{where} is a local path; a cluster's trials cannot read it "
                "(use pvc://, s3:// or hf://)",
                file=sys.stderr,
            )
        text = to_yaml(katib_objects(sweep, args.trainer_container))
        if args.output and str(args.output) != "-":
            args.output.write_text(text)
            console.print(f"wrote {args.output}: ConfigMap and Katib Experiment {sweep.metadata.name}")
        else:
            sys.stdout.write(text)
        return c.EXIT_OK
    try:
        import optuna
    except ModuleNotFoundError:
        console.print("kubetune sweep needs Optuna locally: pip install 'kubetune[sweep]'")
        return c.EXIT_USAGE
    return LocalSweep(sweep, args.file.resolve().parent, RunsDir(args.runs_dir), console, optuna).run()


class LocalSweep:
    """One Optuna study; trials in order, each a `kubetune run` child process."""

    def __init__(self, sweep: FineTuneSweep, base_dir: Path, runs: RunsDir, console: Console, optuna: Any) -> None:
        self.sweep, self.base_dir, self.runs, self.console, self.optuna = sweep, base_dir, runs, console, optuna
        self.folder = runs.root / "sweeps" / sweep.metadata.name
        self.results: list[TrialResult] = []

    def study(self) -> Any:
        spec, optuna = self.sweep.spec, self.optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = spec.algorithm.random_state
        if spec.algorithm.algorithm_name == "grid":
            sampler = _grid_sampler(optuna)(_grid(spec.parameters), seed=seed)
        elif spec.algorithm.algorithm_name == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed)
        es = spec.early_stopping
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=es.min_trials_required, n_warmup_steps=es.start_step)
            if es
            else optuna.pruners.NopPruner()
        )
        direction = "minimize" if spec.objective.type == "minimize" else "maximize"
        study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
        default = {p.name: get_path(spec.template, p.path) for p in spec.parameters}
        if all(v is not None for v in default.values()) and spec.algorithm.algorithm_name != "grid":
            for p in spec.parameters:
                if not _in_space(p, default[p.name]):
                    self.console.print(
                        f"note: the template's {p.name} ({_fmt(default[p.name])}, at {p.path}) is outside its search "
                        "space; trial 0 runs it anyway as the baseline",
                        highlight=False,
                    )
            study.enqueue_trial(default)  # trial 0: the template as written, the baseline the search must beat
        return study

    def run(self) -> int:
        spec = self.sweep.spec
        self.folder.mkdir(parents=True, exist_ok=True)
        study = self.study()
        if spec.parallel_trial_count > 1:
            self.console.print(
                f"note: parallelTrialCount {spec.parallel_trial_count} is for Katib; locally trials run one at a time"
            )
        failed = 0
        trials = spec.max_trial_count
        if spec.algorithm.algorithm_name == "grid":
            trials = min(trials, math.prod(len(v) for v in _grid(spec.parameters).values()))
        try:
            for number in range(trials):
                trial = study.ask()
                with warnings.catch_warnings():
                    # The baseline outside the space: said once by study() in our words.
                    warnings.filterwarnings("ignore", message="Fixed parameter", category=UserWarning)
                    values = {p.name: _suggest(trial, p) for p in spec.parameters}
                result = self.run_trial(number, values, trial)
                self.results.append(result)
                if result.state == "COMPLETE" and result.objective is not None:
                    study.tell(trial, result.objective)
                elif result.state == "PRUNED":
                    study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                    failed += 1
                    if failed > spec.max_failed_trial_count:
                        self.console.print(
                            f"[red]{failed} trials failed (maxFailedTrialCount {spec.max_failed_trial_count}); stopping[/]"
                        )
                        break
                if spec.algorithm.algorithm_name == "grid" and _grid_done(study):
                    break
        except KeyboardInterrupt:
            self.console.print("[yellow]Interrupted.[/]")
            self.report()
            return c.EXIT_INTERRUPTED
        return self.report()

    def run_trial(self, number: int, values: dict[str, Any], trial: Any) -> TrialResult:
        name = f"{self.sweep.metadata.name}-{number}"
        doc = _absolute_uris(trial_document(self.sweep, values, name), self.base_dir)
        manifest = self.folder / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
        namespace = (doc.get("metadata") or {}).get("namespace") or "default"
        rdir = self.runs.resource_dir((namespace, c.FINETUNEJOB, name))
        progress = rdir / PROGRESS
        progress.unlink(missing_ok=True)  # --fresh below removes the rest; an old file must not be read first
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        self.console.print(f"[bold]trial {number}[/] {name}: {shown}", highlight=False)
        argv = [sys.executable, "-m", "kubetune.cli", "run", str(manifest), "--runs-dir", str(self.runs.root)]
        log = (self.folder / f"{name}.log").open("wb")
        started = time.monotonic()
        # Its own session: the terminal's Ctrl-C reaches the sweep, which stops the trial the same way.
        proc = subprocess.Popen(
            [*argv, "--no-serve", "--fresh"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        result = TrialResult(number, name, values, "FAIL")
        tail = JsonlTail(progress)
        last_eval: float | None = None
        pruned = False
        try:
            while True:
                for event in tail.read():
                    ev = (event.get("metrics") or {}).get("evalLoss")
                    if event.get("event") != "progress" or ev is None or ev == last_eval:
                        continue
                    last_eval = float(ev)
                    result.evaluations.append((int((event.get("progress") or {}).get("step") or 0), last_eval))
                    trial.report(last_eval, len(result.evaluations))
                    if not pruned and proc.poll() is None and trial.should_prune():
                        pruned = True
                        self.console.print(
                            f"  pruned after {len(result.evaluations)} evaluation(s): eval_loss {last_eval:.4f}"
                        )
                        proc.send_signal(STOP_SIGNAL)
                if proc.poll() is not None:
                    break
                time.sleep(POLL_SECONDS)
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except KeyboardInterrupt:
            proc.send_signal(STOP_SIGNAL)
            proc.wait(timeout=STOP_GRACE_SECONDS)
            raise
        finally:
            log.close()
        result.seconds = time.monotonic() - started
        status = _status(rdir)
        if pruned and proc.returncode == c.EXIT_INTERRUPTED:
            result.state = "PRUNED"
        elif proc.returncode == c.EXIT_OK:
            result.state = "COMPLETE"
            final = (status.get("metrics") or {}).get("evalLoss")
            seen = [v for _, v in result.evaluations] + ([float(final)] if final is not None else [])
            # Katib's metricStrategy for the objective: the best value observed (min for minimize).
            pick = min if self.sweep.spec.objective.type == "minimize" else max
            result.objective = pick(seen) if seen else None
            result.best_checkpoint = status.get("bestCheckpoint")
            if result.objective is None or math.isnan(result.objective):
                result.state = "FAIL"
                self.console.print("  [red]no eval_loss reported (does the template have validation data?)[/]")
        if result.state == "FAIL":
            self.console.print(f"  [red]failed (exit {proc.returncode}); log {self.folder / (name + '.log')}[/]")
        elif result.state == "COMPLETE":
            self.console.print(f"  eval_loss {result.objective:.4f} ({result.seconds:.0f} s)")
        return result

    def report(self) -> int:
        spec = self.sweep.spec
        table = Table(title=f"FineTuneSweep {self.sweep.metadata.name}")
        for col in (
            "trial",
            *(p.name for p in spec.parameters),
            "state",
            spec.objective.objective_metric_name,
            "evals",
            "best checkpoint",
            "s",
        ):
            table.add_column(col)
        done = [(r.objective, r) for r in self.results if r.state == "COMPLETE" and r.objective is not None]
        pick = min if spec.objective.type == "minimize" else max
        best = pick(done, key=lambda pair: pair[0])[1] if done else None
        for r in self.results:
            objective = (
                f"{r.objective:.4f}"
                if r.objective is not None
                else (f"({r.evaluations[-1][1]:.4f})" if r.evaluations else "-")
            )
            table.add_row(
                r.name + (" *" if r is best else ""),
                *(_fmt(r.values[p.name]) for p in spec.parameters),
                r.state,
                objective,
                str(len(r.evaluations)),
                r.best_checkpoint or "-",
                f"{r.seconds:.0f}",
            )
        self.console.print(table)
        summary = {
            "sweep": self.sweep.metadata.name,
            "objective": spec.objective.to_k8s(),
            "best": best.name if best else None,
            "trials": [
                {
                    "name": r.name,
                    "number": r.number,
                    "values": r.values,
                    "state": r.state,
                    "objective": r.objective,
                    "evaluations": r.evaluations,
                    "bestCheckpoint": r.best_checkpoint,
                    "seconds": round(r.seconds, 1),
                }
                for r in self.results
            ],
        }
        (self.folder / "trials.json").write_text(json.dumps(summary, indent=2) + "\n")
        if best is None:
            self.console.print("[red]No trial finished; nothing to recommend.[/]")
            return c.EXIT_FAILED
        best_path = self.folder / "best.yaml"
        best_path.write_text((self.folder / f"{best.name}.yaml").read_text())
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in best.values.items())
        self.console.print(
            f"[green]best[/] {best.name}: {shown}, {spec.objective.objective_metric_name} {best.objective:.4f}"
            f" (checkpoint {best.best_checkpoint or 'final'}). Its manifest: {best_path}; an Evaluation or "
            f"ModelDeployment uses it as fineTuneJob: {{name: {best.name}}} in the same runs folder.",
            highlight=False,
            soft_wrap=True,
        )
        return c.EXIT_OK


def _suggest(trial: Any, p: SweepParameter) -> Any:
    fs = p.feasible_space
    log = fs.distribution == "logUniform"
    if p.parameter_type == "double":
        return trial.suggest_float(p.name, fs.min, fs.max, log=log, step=None if log else fs.step)
    if p.parameter_type == "int":
        return trial.suggest_int(p.name, int(fs.min or 0), int(fs.max or 0), log=log, step=int(fs.step or 1))
    return trial.suggest_categorical(p.name, list(fs.values or []))


def _grid(parameters: list[SweepParameter]) -> dict[str, list[Any]]:
    """The grid's points, Katib's rule: min, min+step, ... up to max (linear whatever the distribution); an
    int's step is 1 unless given; a double must have a step (FineTuneSweepSpec refuses a grid without)."""
    out: dict[str, list[Any]] = {}
    for p in parameters:
        fs = p.feasible_space
        if p.parameter_type in ("categorical", "discrete"):
            out[p.name] = list(fs.values or [])
            continue
        lo, hi = float(fs.min or 0), float(fs.max or 0)
        step = fs.step or 1.0
        n = math.floor((hi - lo) / step + 1e-9) + 1
        vals = [round(lo + i * step, 12) for i in range(n)]
        out[p.name] = [int(v) for v in vals] if p.parameter_type == "int" else vals
    return out


def _grid_sampler(optuna: Any) -> Any:
    """Optuna's GridSampler without its study.stop() on exhaustion, which only works inside study.optimize;
    this ask/tell loop runs at most the grid's size and stops when it is exhausted."""

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler


def _in_space(p: SweepParameter, value: Any) -> bool:
    fs = p.feasible_space
    if p.parameter_type in ("categorical", "discrete"):
        return value in (fs.values or [])
    return isinstance(value, int | float) and float(fs.min or 0) <= value <= float(fs.max or 0)


def _grid_done(study: Any) -> bool:
    sampler = study.sampler
    return hasattr(sampler, "is_exhausted") and sampler.is_exhausted(study)


def _absolute_uris(doc: Any, base: Path) -> Any:
    """Relative paths in `uri` fields made absolute: the trial's manifest lives in the runs folder, not beside
    the sweep file they are relative to."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k == "uri" and isinstance(v, str) and "://" not in v and not os.path.isabs(v):
                out[k] = str((base / v).resolve())
            else:
                out[k] = _absolute_uris(v, base)
        return out
    if isinstance(doc, list):
        return [_absolute_uris(v, base) for v in doc]
    return doc


def _status(rdir: Path) -> dict[str, Any]:
    try:
        return (json.loads((rdir / "resource.json").read_text()).get("status")) or {}
    except (OSError, ValueError):
        return {}


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
