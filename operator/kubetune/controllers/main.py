"""`kubetune operator`: the Kopf operator with Kopf's own flags, plus kubetune's settings.

    kubetune operator [--trainer-image IMG] [--storage-class SC] [--metrics-port N] [--vllm-image IMG]
                      [--[no-]merge-adapters] [--serve-startup-seconds N] [--resync-seconds N]
                      [--source-poll-seconds N]
                      [--namespace NS ... | --all-namespaces] [--standalone] [--liveness URL] [--verbose]

kubetune's flags set the KUBETUNE_* environment variables (the Helm chart sets those directly);
everything else goes to `kopf run`. It reads the usual kubeconfig, or the in-cluster service account.
One replica with `strategy: Recreate`: Kopf's peering is not a lease, so the operator runs standalone.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from typing import Any

import kopf

from kubetune import constants as c
from kubetune import k8s, metrics
from kubetune.controllers import common, config
from kubetune.controllers.kopf_storage import FittingDiffBaseStorage

HANDLER_MODULE = "kubetune.controllers.handlers"
KOPF_FLAGS = (
    "Kopf flags (passed through): --namespace NS (repeatable) | --all-namespaces, --standalone, "
    "--liveness URL (e.g. http://0.0.0.0:8081/healthz), --verbose, --debug, --quiet, --log-format"
)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """All operator settings, in one place; the operator's state in Kopf's memo (`common.OperatorState`)."""
    cfg = config.OperatorConfig.from_env()
    memo.state = common.OperatorState(config=cfg)
    # Kopf's own state (handler progress, the last handled spec) lives in annotations under kubetune.dev.
    settings.persistence.finalizer = c.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = FittingDiffBaseStorage(
        prefix=c.KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # After it records a handler's outcome, Kopf waits for that version of the object in the watch before it
    # acts on older events; past this timeout it would run the handler again. 5 s (Kopf's default) is too
    # short for a busy API server with thousands of jobs (every create handler ran twice at 500 jobs), and so
    # was 30 s at 2,000 jobs on a loaded machine (a third ran twice). The wait blocks nothing: the object's
    # other events are processed meanwhile, and the echo of Kopf's own write normally comes in milliseconds.
    settings.persistence.consistency_timeout = 120
    # A watch that silently stalls is cut and re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 30
    # One replica (Deployment strategy Recreate): no peering.
    settings.peering.standalone = True
    settings.peering.mandatory = False
    # kubetune posts its own Events on transitions; Kopf only posts its warnings and errors.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = c.EVENT_COMPONENT
    metrics.start_server_once(cfg.metrics_port)
    logger.info(
        f"kubetune operator: trainer image {cfg.pods.trainer_image}, "
        f"storage class {cfg.pods.storage_class_name or '(cluster default)'}, metrics port {cfg.metrics_port}, "
        f"vLLM image {cfg.serving.vllm_image} (merge adapters: {cfg.serving.merge_adapters}), "
        f"resync every {cfg.resync_seconds:g}s"
    )


@kopf.on.startup()
async def discover_engines(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Which optional engines the cluster serves, once at start: JobSet (multi-node training). Startup handlers
    run before Kopf's login, so this logs in the same way for its one discovery call."""
    state = common.state(memo)
    if not state.config.jobset_allowed:
        logger.info(f"JobSet: not used ({config.ENV_JOBSET}=false); multi-node jobs run as Indexed Jobs")
        return
    try:
        if k8s.login(logger=logger, settings=settings) is None:
            raise RuntimeError("no credentials")
        state.jobset = await k8s.served("JobSet")
    except Exception as err:  # an unreachable API server at start must not stop the operator
        logger.warning(f"JobSet discovery failed ({err}); multi-node jobs run as Indexed Jobs")
        state.jobset = False
    finally:
        with contextlib.suppress(RuntimeError):
            await k8s.client().close()
    found = (
        "served: multi-node jobs run as JobSets"
        if state.jobset
        else "not installed: multi-node jobs run as Indexed Jobs"
    )
    logger.info(f"JobSet (jobset.x-k8s.io/v1alpha2) {found}")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Kopf and kubetune.k8s use the same credentials: in-cluster service account or kubeconfig."""
    return k8s.login(**kwargs)


@kopf.on.probe(id="trainerImage")
def probe_trainer_image(memo: kopf.Memo, **_: Any) -> str:
    return common.state(memo).config.pods.trainer_image


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    with contextlib.suppress(RuntimeError):
        await k8s.client().close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubetune operator", description=(__doc__ or "").split("\n")[0], epilog=KOPF_FLAGS)
    p.add_argument("--trainer-image", help=f"default trainer image (default {c.DEFAULT_TRAINER_IMAGE})")
    p.add_argument("--storage-class", help="StorageClass of the PVCs the operator creates (default: cluster's)")
    p.add_argument("--metrics-port", type=int, help=f"port of /metrics; 0 disables (default {c.METRICS_PORT})")
    p.add_argument("--source-poll-seconds", type=float, help="how often continued jobs check their source job")
    p.add_argument("--vllm-image", help="vLLM server image of GPU ModelDeployments")
    p.add_argument(
        "--merge-adapters",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve a single LoRA checkpoint merged into its base model with vLLM (default: merge)",
    )
    p.add_argument("--serve-startup-seconds", type=int, help="how long a serving pod may take to load its model")
    p.add_argument("--resync-seconds", type=float, help="how often every Evaluation and ModelDeployment is reconciled")
    return p


# `kubetune operator` flag -> the variable it sets (OperatorConfig.from_env reads them).
FLAG_ENV = {
    "trainer_image": config.ENV_TRAINER_IMAGE,
    "storage_class": config.ENV_STORAGE_CLASS,
    "metrics_port": config.ENV_METRICS_PORT,
    "source_poll_seconds": config.ENV_SOURCE_POLL_SECONDS,
    "vllm_image": config.ENV_VLLM_IMAGE,
    "merge_adapters": config.ENV_MERGE_ADAPTERS,
    "serve_startup_seconds": config.ENV_SERVE_STARTUP_SECONDS,
    "resync_seconds": config.ENV_RESYNC_SECONDS,
}


def flag_env(ours: argparse.Namespace) -> dict[str, str]:
    """The KUBETUNE_* variables the given flags set (flags left out set nothing)."""
    out = {}
    for flag, var in FLAG_ENV.items():
        value = getattr(ours, flag)
        if value is not None:
            out[var] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def kopf_args(rest: list[str], env: dict[str, str] | None = None) -> list[str]:
    """`kopf run` arguments: our handlers, the passed-through flags, namespaces from KUBETUNE_NAMESPACES."""
    env = dict(os.environ if env is None else env)
    args = ["run", "-m", HANDLER_MODULE, *rest]
    scoped = any(a in rest or a.split("=")[0] in rest for a in ("-n", "--namespace", "-A", "--all-namespaces")) or any(
        a.startswith(("--namespace=", "-n=")) for a in rest
    )
    if not scoped:
        namespaces = [ns for ns in (env.get(f"{c.ENV_OPERATOR_PREFIX}NAMESPACES") or "").split(",") if ns.strip()]
        args += [f"--namespace={ns.strip()}" for ns in namespaces] or ["--all-namespaces"]
    return args


def main(argv: list[str] | None = None) -> int:
    ours, rest = parser().parse_known_args(argv)
    os.environ.update(flag_env(ours))  # before Kopf imports the handlers (timers take their interval then)
    from kopf import cli as kopf_cli

    try:
        kopf_cli.main(args=kopf_args(rest), prog_name="kubetune operator", standalone_mode=True)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
