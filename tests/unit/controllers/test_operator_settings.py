"""`kubetune operator` flags and settings, the Kubernetes client's paths, and metrics from a job's status."""

import datetime as dt

from prometheus_client import REGISTRY

from kubetune import k8s, metrics
from kubetune.controllers.config import OperatorConfig
from kubetune.controllers.main import kopf_args


def test_kopf_flags_pass_through_and_namespaces_default_from_env():
    assert kopf_args(["--standalone", "-n", "a", "--namespace=b"], env={}) == [
        "run",
        "-m",
        "kubetune.controllers.handlers",
        "--standalone",
        "-n",
        "a",
        "--namespace=b",
    ]
    assert kopf_args([], env={"KUBETUNE_NAMESPACES": "x, y"})[-2:] == ["--namespace=x", "--namespace=y"]
    assert kopf_args(["--verbose"], env={})[-1] == "--all-namespaces"


def test_settings_come_from_kubetune_env_vars():
    cfg = OperatorConfig.from_env(
        {"KUBETUNE_TRAINER_IMAGE": "r/t:1", "KUBETUNE_STORAGE_CLASS": "fast", "KUBETUNE_METRICS_PORT": "0"}
    )
    assert (cfg.pods.trainer_image, cfg.pods.storage_class_name, cfg.metrics_port) == ("r/t:1", "fast", 0)
    assert OperatorConfig.from_env({}).pods.storage_class_name is None


def test_client_paths_for_core_group_and_custom_kinds():
    assert k8s.kind_of("Pod").path("ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert k8s.kind_of("FineTuneJob").path("ns", "j", "status") == (
        "/apis/kubetune.dev/v1alpha1/namespaces/ns/finetunejobs/j/status"
    )
    assert k8s.label_selector({"b": "2", "a": "1"}) == "a=1,b=2"


def test_gpu_seconds_count_once_per_namespace():
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    body = {
        "metadata": {"namespace": "gpu-team", "name": "m1"},
        "spec": {"resources": {"gpus": 2, "nodes": 1}},
        "status": {"phase": "Running", "startTime": "2025-01-01T00:00:00Z", "metrics": {"trainLoss": 0.5}},
    }
    metrics.observe_job(body, start + dt.timedelta(seconds=100))
    metrics.observe_job(body, start + dt.timedelta(seconds=150))
    assert REGISTRY.get_sample_value("kubetune_gpu_seconds_total", {"namespace": "gpu-team"}) == 300
    assert REGISTRY.get_sample_value("kubetune_finetunejobs", {"namespace": "gpu-team", "phase": "Running"}) == 1
    metrics.forget_job("gpu-team", "m1")
    assert REGISTRY.get_sample_value("kubetune_finetunejobs", {"namespace": "gpu-team", "phase": "Running"}) == 0
    assert REGISTRY.get_sample_value("kubetune_training_loss", {"namespace": "gpu-team", "job": "m1"}) is None
