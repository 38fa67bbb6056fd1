"""`kubetune operator` flags and settings, the Kubernetes client's paths, and metrics from a job's status."""

import datetime as dt

from prometheus_client import REGISTRY

from kubetune import k8s, metrics
from kubetune.controllers.config import OperatorConfig
from kubetune.controllers.main import flag_env, kopf_args, parser


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


def test_serving_and_resync_settings_come_from_the_same_reader():
    cfg = OperatorConfig.from_env(
        {
            "KUBETUNE_VLLM_IMAGE": "r/vllm:2",
            "KUBETUNE_MERGE_ADAPTERS": "False",
            "KUBETUNE_SERVE_STARTUP_SECONDS": "600",
            "KUBETUNE_RESYNC_SECONDS": "5",
        }
    )
    assert (cfg.serving.vllm_image, cfg.serving.merge_adapters, cfg.serving.startup_timeout_seconds) == (
        "r/vllm:2",
        False,
        600,
    )
    assert cfg.resync_seconds == 5
    defaults = OperatorConfig.from_env({"KUBETUNE_MERGE_ADAPTERS": ""})
    assert defaults == OperatorConfig()  # unset or empty: the built-in defaults
    assert defaults.serving.merge_adapters is True and defaults.resync_seconds == 60


def test_operator_flags_set_the_variables_the_settings_read():
    ours, rest = parser().parse_known_args(
        [
            "--vllm-image",
            "r/v:1",
            "--no-merge-adapters",
            "--resync-seconds",
            "7",
            "--serve-startup-seconds",
            "90",
            "-n",
            "a",
        ]
    )
    env = flag_env(ours)
    assert rest == ["-n", "a"]
    cfg = OperatorConfig.from_env(env)
    assert (cfg.serving.vllm_image, cfg.serving.merge_adapters, cfg.resync_seconds) == ("r/v:1", False, 7)
    assert cfg.serving.startup_timeout_seconds == 90
    assert flag_env(parser().parse_known_args(["--merge-adapters"])[0]) == {"KUBETUNE_MERGE_ADAPTERS": "true"}
    assert flag_env(parser().parse_known_args([])[0]) == {}  # no flag: the chart's env stays as it is


def test_client_paths_for_core_group_and_custom_kinds():
    assert k8s.kind_of("Pod").path("ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert k8s.kind_of("FineTuneJob").path("ns", "j", "status") == (
        "/apis/kubetune.dev/v1alpha1/namespaces/ns/finetunejobs/j/status"
    )
    assert k8s.label_selector({"b": "2", "a": "1"}) == "a=1,b=2"


def test_gpu_seconds_count_once_per_namespace():
    recorder = metrics.Recorder()
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    body = {
        "metadata": {"namespace": "gpu-team", "name": "m1"},
        "spec": {"resources": {"gpus": 2, "nodes": 1}},
        "status": {"phase": "Running", "startTime": "2025-01-01T00:00:00Z", "metrics": {"trainLoss": 0.5}},
    }
    recorder.observe_job(body, start + dt.timedelta(seconds=100))
    recorder.observe_job(body, start + dt.timedelta(seconds=150))
    assert REGISTRY.get_sample_value("kubetune_gpu_seconds_total", {"resource_namespace": "gpu-team"}) == 300
    assert (
        REGISTRY.get_sample_value("kubetune_finetunejobs", {"resource_namespace": "gpu-team", "phase": "Running"}) == 1
    )
    recorder.forget_job("gpu-team", "m1")
    assert (
        REGISTRY.get_sample_value("kubetune_finetunejobs", {"resource_namespace": "gpu-team", "phase": "Running"}) == 0
    )
    assert (
        REGISTRY.get_sample_value("kubetune_training_loss", {"resource_namespace": "gpu-team", "finetunejob": "m1"})
        is None
    )


def test_score_series_follow_the_status_and_go_with_the_object():
    recorder = metrics.Recorder()

    def score(model):
        labels = {"resource_namespace": "ns", "evaluation": "e", "model": model, "metric": "exact_match"}
        return REGISTRY.get_sample_value("kubetune_evaluation_score", labels)

    body = {
        "metadata": {"namespace": "ns", "name": "e"},
        "status": {
            "results": [{"model": "checkpoint-1", "metrics": {"exact_match": 0.5, "note": "n/a"}}],
            "baseline": {"metrics": {"exact_match": 0.25}},
        },
    }
    recorder.observe_evaluation(body)
    assert (score("checkpoint-1"), score("baseline")) == (0.5, 0.25)
    body["status"]["results"] = [{"model": "checkpoint-2", "metrics": {"exact_match": 0.75}}]
    recorder.observe_evaluation(body)
    assert (score("checkpoint-1"), score("checkpoint-2")) == (None, 0.75)  # a result gone: its series too
    recorder.forget_evaluation("ns", "e")
    assert (score("checkpoint-2"), score("baseline")) == (None, None)

    job = {
        "metadata": {"namespace": "ns", "name": "j"},
        "status": {"phase": "Running", "checkpoints": [{"name": "checkpoint-1", "metrics": {"eval_loss": 0.4}}]},
    }
    labels = {"resource_namespace": "ns", "finetunejob": "j", "checkpoint": "checkpoint-1", "metric": "eval_loss"}
    recorder.observe_job(job)
    assert REGISTRY.get_sample_value("kubetune_checkpoint_metric", labels) == 0.4
    job["status"]["checkpoints"] = []
    recorder.observe_job(job)
    assert REGISTRY.get_sample_value("kubetune_checkpoint_metric", labels) is None
    recorder.forget_job("ns", "j")
