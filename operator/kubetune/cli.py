"""The `kubetune` command: validate manifests and datasets, generate the CRDs, and the entry points
of the local runtime, the operator and the tiny-model helper.

Heavy dependencies (torch, kopf, the Kubernetes client) are imported only by the subcommand that
needs them, so `kubetune --help` and `kubetune validate` work with the base install.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubetune
from kubetune.constants import EXIT_FAILED, EXIT_OK, EXIT_USAGE

EXIT_INVALID = EXIT_FAILED  # `kubetune validate` found problems
MANIFEST_SUFFIXES = (".yaml", ".yml")
DATASET_SUFFIXES = (".jsonl",)


# --- validate -------------------------------------------------------------------------------------


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # dataset summaries etc.
    resources: int = 0
    datasets: int = 0
    files: int = 0
    datasets_seen: set[Path | str] = field(default_factory=set)  # a local path resolved, or an s3:// URI
    grouped: int = 0  # errors said once for several dataset lines, beyond one per entry of `errors`
    reports: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # dataset validations, by file and options
    admitted: list[tuple[str, Any]] = field(default_factory=list)  # (source, resource) for cross-resource checks


def _iter_files(paths: Sequence[Path]) -> Iterator[Path]:
    """Files named, and the manifests and datasets in folders named (not hidden ones, not Helm charts)."""
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix in MANIFEST_SUFFIXES + DATASET_SUFFIXES and not _skipped(f, p):
                    yield f
        else:
            yield p


def _skipped(f: Path, root: Path) -> bool:
    rel = f.relative_to(root)
    if any(part.startswith(".") for part in rel.parts):
        return True
    return any((root / d / "Chart.yaml").exists() for d in rel.parents)  # Helm templates are not manifests yet


def _local_path(uri: str, base: Path) -> Path | None:
    """The file a relative or file:// URI names; None for remote schemes (pvc://, hf://, s3://, http)."""
    from kubetune.api import StorageMap

    if uri.startswith("pvc://"):
        return None
    return StorageMap(base_dir=str(base)).local_path(uri)


def _get(node: Any, *keys: str) -> Any:
    """node[k1][k2]... where each level is a mapping; None otherwise (documents may be malformed)."""
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node


def _validate_dataset(
    path: Path | str,
    found: Findings,
    source: str,
    fmt: str | None = None,
    max_examples: int | None = None,
    prompts_only: bool = False,
    max_seq_length: int | None = None,
) -> Any:
    """Validate one JSONL file with kubetune.data (once per file): errors name the file and line.

    Returns the report (None when reading it crashed), so that a manifest can check the format fits its method.
    """
    from kubetune.data import validate_file

    resolved = path.resolve() if isinstance(path, Path) else path  # an s3:// URI is its own key
    key = (resolved, fmt if fmt and fmt != "auto" else "auto", max_examples, prompts_only, max_seq_length)
    if key in found.reports:
        return found.reports[key]
    first = resolved not in found.datasets_seen
    found.datasets_seen.add(resolved)
    found.datasets += first
    try:
        report = validate_file(
            path,
            format=fmt or "auto",
            max_examples=max_examples or None,
            prompts_only=prompts_only,
            max_seq_length=max_seq_length,
        )
    except Exception as err:  # a crash reading a dataset is still a finding about that file
        found.errors.append(f"{source}: {err}")
        found.reports[key] = None
        return None
    found.reports[key] = report
    if report.ok:
        if first:
            found.notes.append(report.render().rstrip())
        return report
    found.notes.append(report.summary())
    # the same file read again with other options (another manifest's format): new problems only
    for text, count in report.counted_errors():
        if text not in found.errors:
            found.errors.append(text)
            found.grouped += count - 1  # a line standing for several errors: the summary counts them all
    found.warnings += [
        f"{report.source}: {w}" for w in report.warnings if f"{report.source}: {w}" not in found.warnings
    ]
    return report


def _validate_manifest_file(path: Path, found: Findings, explicit: bool = True) -> None:
    """Admit every object of one manifest file; an empty file is an error when named, a warning in a folder."""
    import yaml

    from kubetune.api import iter_documents
    from kubetune.api.admission import admit
    from kubetune.api.manifests import NoObjectsError, is_ours

    try:
        docs = list(iter_documents(path, allow_empty=not explicit))
        if not docs and not explicit:
            found.warnings.append(f"{path}: no objects (an empty file); skipped")
    except NoObjectsError as err:
        found.errors.append(str(err))
        return
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        found.errors.append(f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}")
        return
    except (OSError, UnicodeDecodeError) as err:
        found.errors.append(f"{path}: cannot read it: {getattr(err, 'strerror', None) or err}")
        return
    for source, doc in docs:
        resource, errors = admit(doc, source)
        found.errors += [str(e) for e in errors]
        if resource is None and not (errors and is_ours(doc)):
            continue
        found.resources += 1
        if resource is not None:
            found.admitted.append((source, resource))
        _check_local_files(doc, resource, path.parent, found, source)
        _check_memory_plan(resource, path.parent, found, source)


def _formats() -> tuple[str, ...]:
    from kubetune.data import FORMATS

    return FORMATS


def _check_safety_prompts(doc: dict[str, Any], base: Path, found: Findings, source: str) -> None:
    """A local red-team prompt set (spec.safety.prompts.uri) checked by kubetune.data.safety, line by line."""
    from kubetune.api.references import safety_prompt_uris
    from kubetune.data.safety import check_safety_prompts

    for ref in safety_prompt_uris(doc):
        try:
            local = _local_path(ref.uri, base)
        except ValueError as err:
            found.errors.append(f"{source}: {ref.field}: {err}")
            continue
        if local is None:
            continue  # s3:// or a cluster URI: the evaluation pod checks it before loading a model
        _, errors = check_safety_prompts(local)
        found.errors += [f"{source}: {ref.field}: {e.render(str(local))}" for e in errors]


def _check_local_files(doc: dict[str, Any], resource: Any, base: Path, found: Findings, source: str) -> None:
    """The local datasets a manifest names (valid, and of a format its method trains on) and local models."""
    from kubetune.api import FineTuneJob
    from kubetune.api.references import dataset_uris, model_uris
    from kubetune.data import needs_of

    needs = needs_of(resource.spec) if isinstance(resource, FineTuneJob) else None
    for ref in dataset_uris(doc):
        fld, uri, fmt = ref.field, ref.uri, ref.format
        try:
            local = _local_path(uri, base)
        except ValueError as err:  # a URI that cannot name a local file (the schema names it too)
            found.errors.append(f"{source}: {fld}: {err}")
            continue
        if local is None and not uri.startswith("s3://"):
            continue
        if local is None and resource is None:
            # spec.s3 (endpoint, region) is known only once the manifest validates: reading now would go to
            # AWS's defaults with this shell's keys, not to the endpoint the manifest names
            found.warnings.append(f"{source}: {fld}: {uri} not read: fix the errors above first")
            continue
        if local is not None and not local.exists():
            found.errors.append(f"{source}: {fld}: {uri} does not exist (looked at {local})")
        elif local is None or local.is_file():
            max_examples = _get(doc, "spec", "dataset", "maxExamples") if fld.startswith("spec.dataset.train") else None
            max_examples = max_examples if isinstance(max_examples, int) and max_examples > 0 else None
            prompts_only = bool(needs and needs.prompts_only)
            fmt = fmt if fmt in _formats() else None
            from kubetune.objectstore import S3Options, configured

            # s3:// datasets stream from the endpoint and region of the manifest's spec.s3; credentials from
            # this shell's environment (AWS_ACCESS_KEY_ID ...), as for the AWS CLI: no cluster, no Secret
            with configured(S3Options.from_spec(getattr(getattr(resource, "spec", None), "s3", None))):
                msl = resource.spec.hyperparameters.max_seq_length if isinstance(resource, FineTuneJob) else None
                report = _validate_dataset(
                    local or uri, found, f"{source}: {fld}", fmt, max_examples, prompts_only, msl
                )
            mismatch = needs.mismatch(report.format) if needs and report is not None and report.ok else None
            if mismatch:
                found.errors.append(f"{source}: {fld}: {local}: {mismatch}")
            note = needs.chat_note(report.format) if needs and report is not None and report.ok else None
            if note and f"{source}: {fld}: {note}" not in found.notes:
                found.notes.append(f"{source}: {fld}: {note}")
    _check_safety_prompts(doc, base, found, source)
    for ref in model_uris(doc):
        try:
            local = _local_path(ref.uri, base)
        except ValueError:
            continue  # the schema or the trainer says what is wrong with it
        if local is not None and not local.exists():
            found.warnings.append(
                f"{source}: {ref.field}: {ref.uri} does not exist yet (looked at {local}); create it before running"
            )
        elif local is not None:
            from kubetune.local.preflight import model_problem

            problem = model_problem(local)
            if problem:
                found.warnings.append(f"{source}: {ref.field}: {ref.uri}: {problem}; `kubetune run` refuses it")


# --- memory plan ----------------------------------------------------------------------------------


def _train_tokens(resource: Any, base: Path, found: Findings | None = None) -> int | None:
    """Tokens of a FineTuneJob's local training data: from validate's report, else counted here."""
    try:
        local = _local_path(resource.spec.dataset.train.uri, base)
    except ValueError:
        return None
    if local is None or not local.is_file():
        return None
    resolved = local.resolve()
    for key, report in (found.reports if found else {}).items():
        if key[0] == resolved and report is not None and report.ok:
            return report.tokens
    from kubetune.data import validate_file

    try:
        report = validate_file(local, max_examples=resource.spec.dataset.max_examples)
    except Exception:  # validate says what is wrong with the data; the plan just has no token count
        return None
    return report.tokens if report.ok else None


def memory_plan_of(
    resource: Any,
    base: Path,
    *,
    found: Findings | None = None,
    hub: bool = False,
    model_config: Path | None = None,
    gpu_memory_gib: float | None = None,
    runs_dir: Path | None = None,
) -> Any:
    """The MemoryPlan of a FineTuneJob whose base model's config.json can be read from here.

    Raises ModelConfigUnavailable (why not) otherwise. `hub`: ask the Hub for an hf:// model's config.json
    (kubetune plan); without it only the local Hub cache is read (validate stays offline and fast).
    `runs_dir`: read pvc:// where `kubetune run` keeps the claims (RUNS/pvc/CLAIM, RUNS/namespaces/NS/pvc/CLAIM).
    """
    from kubetune.api import StorageMap
    from kubetune.api.memoryplan import plan
    from kubetune.api.modelconfig import ModelConfigUnavailable, read_model_config
    from kubetune.local.state import RunsDir

    spec = resource.spec
    uri = spec.base_model.uri
    if model_config is not None:
        from kubetune.api.modelconfig import parse_model_config

        try:
            text = model_config.read_text()
        except OSError as err:
            raise ModelConfigUnavailable(f"{model_config}: {err.strerror or err}") from err
        config = parse_model_config(text, str(model_config))
    elif uri is None:
        raise ModelConfigUnavailable("baseModel.fromJob: the model is another job's checkpoint, not read here")
    elif uri.startswith("pvc://") and runs_dir is None:
        raise ModelConfigUnavailable(f"{uri}: on a PVC, read by the training pod (or by kubetune run) only")
    else:
        storage = (
            RunsDir(runs_dir).storage(base, resource.metadata.namespace)
            if runs_dir is not None
            else StorageMap(base_dir=str(base))
        )
        config = read_model_config(uri, storage, revision=spec.base_model.revision, hub_cache_only=not hub)
    return plan(
        spec,
        config,
        train_tokens=_train_tokens(resource, base, found),
        gpu_memory_gib=gpu_memory_gib,
        model=uri or "baseModel.fromJob",
    )


def _check_memory_plan(resource: Any, base: Path, found: Findings, source: str) -> None:
    """validate: the plan's numbers as a note; a GPU run that cannot fit is refused, a CPU pod's is warned."""
    from kubetune.api import FineTuneJob
    from kubetune.api.memoryplan import ModelConfigError
    from kubetune.api.modelconfig import ModelConfigUnavailable

    if not isinstance(resource, FineTuneJob):
        return
    try:
        p = memory_plan_of(resource, base, found=found)
    except ModelConfigUnavailable:  # not readable from here (not cached, on a PVC): kubetune plan says why
        return
    except (ModelConfigError, ValueError) as err:  # a config.json or quantity the plan cannot read
        found.warnings.append(f"{source}: memory plan: {err}")
        return
    found.notes.append(f"{source}: memory plan: {p.summary()}")
    if p.fits:
        return
    message = (
        f"{source}: spec.resources: the run does not fit: {p.summary()}"
        f"; a layout that fits: {p.suggestion} (details: kubetune plan {source.split(':')[0]})"
    )
    (found.errors if p.device == "gpu" else found.warnings).append(message)


def _positive_gib(text: str) -> float:
    """argparse type of --gpu-memory: a positive, finite number of GiB (not nan, inf, 0 or negative)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GiB") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the GPU's memory in GiB must be a positive finite number")
    return value


def cmd_plan(args: argparse.Namespace) -> int:
    from kubetune.api import FineTuneJob, iter_documents
    from kubetune.api.admission import admit
    from kubetune.api.memoryplan import ModelConfigError
    from kubetune.api.modelconfig import ModelConfigUnavailable

    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        print(f"kubetune plan: {p}: no such file or directory", file=sys.stderr)
    if missing:
        return EXIT_USAGE
    jobs, rc = 0, EXIT_OK
    for f in _iter_files(paths):
        if f.suffix not in MANIFEST_SUFFIXES:
            continue
        try:
            docs = list(iter_documents(f))
        except Exception as err:  # validate says what is wrong with the file
            print(f"{f}: cannot read it ({err}); run kubetune validate", file=sys.stderr)
            rc = EXIT_FAILED
            continue
        for source, doc in docs:
            resource, errors = admit(doc, source)
            if not isinstance(resource, FineTuneJob):
                if errors:
                    print(f"{source}: not valid ({errors[0]}); run kubetune validate", file=sys.stderr)
                    rc = EXIT_FAILED
                continue
            jobs += 1
            print(f"{source}: FineTuneJob {resource.metadata.name}")
            try:
                p = memory_plan_of(
                    resource,
                    f.parent,
                    hub=True,
                    model_config=args.model_config,
                    gpu_memory_gib=args.gpu_memory,
                    runs_dir=args.runs_dir,
                )
            except (ModelConfigUnavailable, ModelConfigError) as err:
                print(f"  no plan: {err} (pass --model-config PATH to plan it from a config.json)")
                rc = EXIT_FAILED
                continue
            print(p.render())
            rc = rc if p.fits else EXIT_FAILED
    if jobs == 0:
        print(f"kubetune plan: no FineTuneJob in {', '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    return rc


def validate_paths(paths: Sequence[Path]) -> Findings:
    """Everything `kubetune validate` checks, without printing."""
    found = Findings()
    named = {p for p in paths if not p.is_dir()}
    for f in _iter_files(paths):
        found.files += 1
        if f.suffix in DATASET_SUFFIXES:
            _validate_dataset(f, found, str(f))
        else:
            _validate_manifest_file(f, found, explicit=f in named)
    if found.admitted:
        from kubetune.api.admission import cross_resource_errors

        found.errors += [str(e) for e in cross_resource_errors(found.admitted)]
    return found


class _Printer:
    """Plain lines, coloured with rich only when stdout is a terminal."""

    def __init__(self) -> None:
        self.console = None
        if sys.stdout.isatty():
            from rich.console import Console

            self.console = Console(highlight=False)

    def line(self, text: str, style: str = "") -> None:
        if self.console is not None and style:
            from rich.markup import escape

            self.console.print(f"[{style}]{escape(text)}[/]")
        else:
            print(text)


def cmd_validate(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        for p in missing:
            print(f"kubetune validate: {p}: no such file or directory", file=sys.stderr)
        return EXIT_USAGE
    found = validate_paths(paths)
    out = _Printer()
    if found.files == 0:
        print(f"kubetune validate: no *.yaml, *.yml or *.jsonl files in {', '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        for note in found.notes:
            out.line(note, "dim")
    for warning in found.warnings:
        out.line(f"warning: {warning}", "yellow")
    for error in found.errors:
        out.line(error, "red")
    summary = f"{found.files} file(s), {found.resources} resource(s), {found.datasets} dataset(s): " + (
        f"{len(found.errors) + found.grouped} error(s)" if found.errors else "all valid"
    )
    out.line(summary, "bold red" if found.errors else "bold green")
    return EXIT_INVALID if found.errors else EXIT_OK


# --- crds -----------------------------------------------------------------------------------------


def cmd_crds(args: argparse.Namespace) -> int:
    from kubetune import crdfiles

    out = Path(args.out)
    chart = Path(args.chart) if args.chart else None
    if chart is None and not args.no_chart and Path("helm/kubetune/Chart.yaml").exists():
        chart = Path("helm/kubetune")
    if args.check:
        stale = crdfiles.stale(out, chart)
        for p in stale:
            print(f"{p} differs from what the models generate: run `make crds`")
        return EXIT_INVALID if stale else EXIT_OK
    for p in crdfiles.write(out, chart):
        print(p)
    return EXIT_OK


# --- delegating entry points ----------------------------------------------------------------------


def _delegate(target: str, argv: list[str], what: str, extra: str) -> int:
    """Import `module:function` lazily and call it with argv; a clear message when it is missing."""
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            print(f"kubetune {what}: {module_name} is not part of this installation.", file=sys.stderr)
        else:
            print(
                f"kubetune {what} needs the Python package {err.name!r}: pip install 'kubetune[{extra}]'",
                file=sys.stderr,
            )
        return EXIT_USAGE
    func: Callable[[list[str]], int | None] = getattr(module, func_name)
    rc = func(argv)
    return int(rc or 0)


def cmd_run(args: argparse.Namespace) -> int:
    return _delegate("kubetune.local.runner:main", args.args, "run", "trainer")


def cmd_sweep(args: argparse.Namespace) -> int:
    return _delegate("kubetune.local.sweep:main", args.args, "sweep", "sweep")


def cmd_operator(args: argparse.Namespace) -> int:
    return _delegate("kubetune.controllers.main:main", args.args, "operator", "operator")


def cmd_api(args: argparse.Namespace) -> int:
    return _delegate("kubetune.openai.server:main", args.args, "api", "operator")


def cmd_model(args: argparse.Namespace) -> int:
    return _delegate("kubetune_trainer.tiny:main", args.args, f"model {args.action}", "trainer")


def cmd_version(args: argparse.Namespace) -> int:
    print(f"kubetune {kubetune.__version__}")
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetune",
        description="Fine-tune language models on Kubernetes, or on this machine with the same manifests.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "validate",
        help="check manifests (YAML) and datasets (JSONL)",
        description="Check FineTuneJob, Evaluation and ModelDeployment manifests (schema and CEL rules, as "
        "the API server would) and JSONL datasets, including the local datasets the manifests name. "
        "Exit status: 0 valid, 1 invalid, 2 usage error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (*.yaml, *.yml, *.jsonl)")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems and the summary only")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "plan",
        help="per-GPU memory and GPU-hours of FineTuneJobs, from the base model's config.json",
        description="Estimate, for each FineTuneJob, the per-GPU peak memory (weights, gradients, optimizer "
        "state, LoRA or 4-bit storage, activations with and without checkpointing, sharding over the GPUs) and "
        "the GPU-hours, from the base model's config.json alone (hf://, pvc:// of a local run, or a path; never "
        "the weights). Exit status: 0 every run fits, 1 one does not (or has no plan), 2 usage error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or folders")
    p.add_argument("--model-config", type=Path, help="plan with this config.json instead of the base model's")
    p.add_argument("--gpu-memory", type=_positive_gib, metavar="GIB", help="memory of one GPU (default: from the spec)")
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="where pvc://CLAIM/PATH is read, as kubetune run lays it out (default ./runs)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "crds",
        help="generate the CRDs from the API models",
        description="Write crds/*.yaml and the Helm chart's templates/crds/*.yaml from the pydantic models.",
    )
    p.add_argument("--out", default="crds", help="folder of the plain CRDs (default: crds)")
    p.add_argument("--chart", help="chart folder for the templated copies (default: helm/kubetune if present)")
    p.add_argument("--no-chart", action="store_true", help="do not write the chart's copies")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are stale")
    p.set_defaults(func=cmd_crds)

    passthrough = "arguments for that command (see its own --help)"
    p = sub.add_parser(
        "run", help="run manifests on this machine, no cluster needed", add_help=False, prefix_chars="\x00"
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help=passthrough)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "sweep",
        help="hyperparameter search: Optuna on this machine, or --katib for a Katib Experiment",
        add_help=False,
        prefix_chars="\x00",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help=passthrough)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("operator", help="run the operator (Kopf)", add_help=False, prefix_chars="\x00")
    p.add_argument("args", nargs=argparse.REMAINDER, help=passthrough)
    p.set_defaults(func=cmd_operator)

    p = sub.add_parser(
        "api", help="serve the OpenAI fine-tuning API over kubetune's resources", add_help=False, prefix_chars="\x00"
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help=passthrough)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("model", help="model helpers: init-tiny builds a tiny model for tests and demos")
    p.add_argument("action", choices=["init-tiny"], help="init-tiny OUT --from-data FILE... [--seed N] ...")
    p.add_argument("args", nargs=argparse.REMAINDER, help=passthrough)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
